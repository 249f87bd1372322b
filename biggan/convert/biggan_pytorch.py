"""BigGAN-PyTorch's BigGAN G / G_ema and D state dicts: their layouts (one table each) and the
exported generator converted from a G_ema.pth. A whole weights folder becomes a training workdir in
biggan/convert/biggan_pytorch_run.py."""

from __future__ import annotations

import ml_collections
import numpy as np

from biggan import config as cfg
from biggan.convert.tables import (
    ConversionError,
    Entry,
    Kind,
    build_generator,
    conv_kernel,
    convert_layout,
    expected_shapes,
    load_torch_state_dict,
    read_json,
    sn_keys,
    v_from_u,
)
from biggan.models import biggan as biggan_arch
from biggan.models import factory as models
from biggan.sampling import export


def _bp_sn(kernel, eps):
    """BigGAN-PyTorch SN layer (num_svs=1): weight, u0 (1, out) and sv0 (a logging buffer, not
    used). Only u is stored: v = normalize(Wᵀu), what its next power-iteration step computes.
    "linear_chw": the first linear, whose output BigGAN-PyTorch views channel-major (C, 4, 4) while
    ours is (4, 4, C): its output rows (weight, bias and u, which indexes rows) are permuted so our
    reshape sees the same tensor."""

    def convert(e, read, out):
        w, u = read(f"{e.theirs}.weight"), read(f"{e.theirs}.u0")[0]
        b = read(f"{e.theirs}.bias") if e.bias else None
        if kernel == "linear_chw":
            c0 = w.shape[0] // 16
            to_hwc = np.arange(w.shape[0]).reshape(c0, 4, 4).transpose(1, 2, 0).reshape(-1)
            w, u, b = w[to_hwc], u[to_hwc], b[to_hwc]
        if kernel == "conv":
            k = conv_kernel(w)
            out.flat[e.ours + ("kernel",)] = k
            w_mat = k.reshape(-1, k.shape[-1]).T
        elif (
            kernel == "embed"
        ):  # SNEmbedding: the (classes, dim) table itself is SN's matrix (layers.SNEmbed)
            out.flat[e.ours + ("embedding",)] = w
            w_mat = w
        else:
            out.flat[e.ours + ("kernel",)] = w.T
            w_mat = w
        out.flat[e.ours + ("sn", "u")] = u
        out.flat[e.ours + ("sn", "v")] = v_from_u(w_mat, u, eps)
        if e.bias:
            out.flat[e.ours + ("bias",)] = b

    return Kind(
        sn_keys("weight", ("u0", lambda s: (1, s[0])), None, extra=(("sv0", (1,)),)), convert
    )


def _bp_bn(e, read, out):
    out.flat[e.ours + ("mean",)] = read(f"{e.theirs}.stored_mean")
    out.flat[e.ours + ("var",)] = read(f"{e.theirs}.stored_var")


def _bp_output_bn(e, read, out):
    _bp_bn(e, read, out)
    out.flat[e.ours + ("scale",)] = read(f"{e.theirs}.gain")
    out.flat[e.ours + ("offset",)] = read(f"{e.theirs}.bias")


def biggan_pytorch_kinds(eps: float) -> dict[str, Kind]:
    return {
        "embed": Kind(
            lambda e: {f"{e.theirs}.weight": e.shape},
            lambda e, read, out: out.flat.__setitem__(
                e.ours + ("embedding",), read(f"{e.theirs}.weight")
            ),
        ),
        "sn_linear_chw": _bp_sn("linear_chw", eps),
        "sn_linear": _bp_sn("linear", eps),
        "sn_conv": _bp_sn("conv", eps),
        "sn_embed": _bp_sn("embed", eps),
        "bn": Kind(
            lambda e: {f"{e.theirs}.stored_mean": e.shape, f"{e.theirs}.stored_var": e.shape},
            _bp_bn,
        ),
        "output_bn": Kind(
            lambda e: {
                f"{e.theirs}.{k}": e.shape for k in ("gain", "bias", "stored_mean", "stored_var")
            },
            _bp_output_bn,
        ),
        "gamma": Kind(
            lambda e: {f"{e.theirs}.gamma": ()},
            lambda e, read, out: out.flat.__setitem__(
                e.ours + ("gamma",), read(f"{e.theirs}.gamma").reshape(())
            ),
        ),
    }


def biggan_pytorch_layout(m: ml_collections.ConfigDict) -> list[Entry]:
    """BigGAN-PyTorch's BigGAN.Generator state dict (num_G_SVs=1, G_shared), entry by entry."""
    _check_biggan_pytorch_model(m)
    ch, plan = m.ch_g, biggan_arch.G_CHANNELS[m.resolution]
    num_slots = len(plan) + 1 if m.hier else 1
    z_chunk = m.dim_z // num_slots
    cond = m.shared_dim + (z_chunk if m.hier else 0)
    layout = [
        Entry("embed", "shared", ("shared_embed",), (m.num_classes, m.shared_dim)),
        Entry(
            "sn_linear_chw",
            "linear",
            ("linear",),
            (plan[0][0] * ch * 16, z_chunk if m.hier else m.dim_z),
            bias=True,
        ),
    ]
    for i, (cin, cout) in enumerate(plan):
        p, cin, cout = f"blocks.{i}.0", cin * ch, cout * ch
        for bn, c in (("bn1", cin), ("bn2", cout)):
            layout += [
                Entry("bn", f"{p}.{bn}", ("blocks", i, bn, "bn"), (c,)),
                Entry("sn_linear", f"{p}.{bn}.gain", ("blocks", i, bn, "gain"), (c, cond)),
                Entry("sn_linear", f"{p}.{bn}.bias", ("blocks", i, bn, "bias"), (c, cond)),
            ]
        for conv, shape in (
            ("conv1", (cout, cin, 3, 3)),
            ("conv2", (cout, cout, 3, 3)),
            ("conv_sc", (cout, cin, 1, 1)),
        ):
            layout.append(Entry("sn_conv", f"{p}.{conv}", ("blocks", i, conv), shape, bias=True))
        if 8 * 2**i in m.g_attn:
            layout += _attention_layout(f"blocks.{i}.1", ("attention", i), cout)
    c = plan[-1][1] * ch
    layout += [
        Entry("output_bn", "output_layer.0", ("output_bn",), (c,)),
        Entry("sn_conv", "output_layer.2", ("output_conv",), (3, c, 3, 3), bias=True),
    ]
    return layout


def _attention_layout(theirs: str, ours: tuple, channels: int) -> list[Entry]:
    """layers.Attention: SN 1×1 convolutions without bias, and the scalar gain gamma."""
    convs = (
        ("theta", (channels // 8, channels, 1, 1)),
        ("phi", (channels // 8, channels, 1, 1)),
        ("g", (channels // 2, channels, 1, 1)),
        ("o", (channels, channels // 2, 1, 1)),
    )
    return [
        Entry("sn_conv", f"{theirs}.{name}", ours + (name,), shape) for name, shape in convs
    ] + [Entry("gamma", theirs, ours)]


def biggan_pytorch_d_layout(m: ml_collections.ConfigDict) -> list[Entry]:
    """BigGAN-PyTorch's BigGAN.Discriminator state dict (num_D_SVs=1, D_wide), entry by entry. Its D
    attaches attention to every block whose D_arch 'resolution' label is an attention resolution,
    ours after the first block whose output has it: a model where the two differ is refused."""
    _check_biggan_pytorch_model(m)
    if m.resolution == 512:
        raise ConversionError("BigGAN-PyTorch has no 512² D (its BigGAN.py D_arch stops at 256²)")
    ch, plan = m.ch_d, biggan_arch.D_CHANNELS[m.resolution]
    resolutions, res = [], m.resolution
    for _, _, down in plan:
        res = res // 2 if down else res
        resolutions.append(res)
    # BigGAN.py's D_arch labels every 32² block '16' (its outputs are 16, 8, 8, 8).
    labels = [16] * len(plan) if m.resolution == 32 else resolutions

    def attended(attn):  # (BigGAN-PyTorch's blocks, ours) that attention at `attn` follows
        return [i for i, r in enumerate(labels) if r in attn], sorted(map(resolutions.index, attn))

    theirs, ours = attended(m.d_attn)
    if theirs != ours:
        valid = [r for r in sorted(set(resolutions)) if attended((r,))[0] == attended((r,))[1]]
        raise ConversionError(
            f"model.d_attn={tuple(m.d_attn)}: BigGAN-PyTorch's D attends after its blocks {theirs}, "
            f"ours after {ours}; use resolutions from {valid} (or none)"
        )
    layout = []
    for i, (cin, cout, down) in enumerate(plan):
        p, cin, cout = f"blocks.{i}.0", cin * ch if cin else 3, cout * ch
        layout += [
            Entry("sn_conv", f"{p}.conv1", ("blocks", i, "conv1"), (cout, cin, 3, 3), bias=True),
            Entry("sn_conv", f"{p}.conv2", ("blocks", i, "conv2"), (cout, cout, 3, 3), bias=True),
        ]
        if cin != cout or down:  # layers.DBlock's learnable shortcut
            layout.append(
                Entry(
                    "sn_conv",
                    f"{p}.conv_sc",
                    ("blocks", i, "conv_sc"),
                    (cout, cin, 1, 1),
                    bias=True,
                )
            )
        if i in theirs:
            layout += _attention_layout(f"blocks.{i}.1", ("attention", i), cout)
    c = plan[-1][1] * ch
    return layout + [
        Entry("sn_linear", "linear", ("linear",), (1, c), bias=True),
        Entry("sn_embed", "embed", ("embed",), (m.num_classes, c)),
    ]


def biggan_pytorch_expected_shapes(m: ml_collections.ConfigDict) -> dict:
    """Every key → shape of BigGAN-PyTorch's BigGAN.Generator state dict (num_G_SVs=1, G_shared)."""
    return expected_shapes(biggan_pytorch_layout(m), biggan_pytorch_kinds(m.sn_eps))


def _check_biggan_pytorch_model(m):
    if m.arch != "biggan":
        raise ConversionError(
            f"model.arch={m.arch!r}: the biggan-pytorch converter maps BigGAN-PyTorch's BigGAN "
            f"G (arch 'biggan'); for BigGAN-deep released weights use `convert hf`"
        )
    if not m.num_classes:
        raise ConversionError(
            "model.num_classes=0: BigGAN-PyTorch's BigGAN is class-conditional; convert it with its class count"
        )
    if not m.shared:
        raise ConversionError(
            "model.shared=False: BigGAN-PyTorch's non-shared G has no z conditioning in its "
            "BNs and is not supported; the released models use the shared embedding"
        )
    biggan_arch.check_resolution(m.resolution)
    if m.d_minibatch_kernels:
        raise ConversionError(
            f"model.d_minibatch_kernels={m.d_minibatch_kernels}: BigGAN-PyTorch's D has no minibatch "
            "discrimination; set it to 0"
        )
    plan = biggan_arch.G_CHANNELS[m.resolution]
    if m.hier and m.dim_z % (len(plan) + 1):
        raise ConversionError(
            f"model.dim_z={m.dim_z} does not split into {len(plan) + 1} skip-z chunks"
        )


def biggan_pytorch_config(
    config_spec=None, *, bn_eps=1e-5, sn_eps=1e-6
) -> ml_collections.ConfigDict:
    """Our config for a BigGAN-PyTorch G: a configs/*.py file (path[:arg]), a JSON file (a full
    config with a 'model' section, or just config.model keys), or None for the defaults (the
    released 128² model). BigGAN-PyTorch evaluates SN by one power step from the stored u
    ('iterate'); its scripts use BN eps 1e-5 and SN eps 1e-6 (their train_fns/launch scripts),
    recorded here."""
    if config_spec is None:
        c = cfg.base_config()
    elif config_spec.split(":")[0].endswith(".py"):
        c = cfg.load_config_file(config_spec)
    else:
        data = read_json(config_spec, "a configs/*.py file or a JSON file of config.model keys")
        c = cfg.base_config()
        model = data.get("model", data) if isinstance(data, dict) else None
        if not isinstance(model, dict):
            raise ConversionError(
                f"--config {config_spec}: expected a JSON object of config.model keys"
            )
        cfg.check_keys(ml_collections.ConfigDict(model), c.model, prefix="model.")
        c.model.update(model)
    c.model.update(
        sn_eval_mode="iterate", bn_eps=float(bn_eps), sn_eps=float(sn_eps), rgb_channels=3
    )
    c.sample.bn_stats = "stored"  # the stored_mean/stored_var its eval mode (G_ema sampling) uses
    c.model.g_attn = tuple(c.model.g_attn)
    _check_biggan_pytorch_model(c.model)
    return c


def convert_biggan_pytorch(state_dict: dict, config: ml_collections.ConfigDict):
    """(config, generator) from a BigGAN-PyTorch BigGAN G state dict; its stored BN statistics are
    used."""
    m = config.model
    converted = convert_layout(
        state_dict,
        biggan_pytorch_layout(m),
        biggan_pytorch_kinds(m.sn_eps),
        f"BigGAN-PyTorch BigGAN G ({m.resolution}², ch {m.ch_g}, dim_z {m.dim_z}, "
        f"attention {tuple(m.g_attn)})",
    )
    return config, build_generator(config, converted.flat)


def convert_biggan_pytorch_file(
    pth_path, config_spec=None, out_dir=None, *, bn_eps=1e-5, sn_eps=1e-6
):
    config = biggan_pytorch_config(config_spec, bn_eps=bn_eps, sn_eps=sn_eps)
    sd = load_torch_state_dict(pth_path)
    config, generator = convert_biggan_pytorch(sd, config)
    export.save_generator(out_dir, config, generator)
    print(
        f"[convert] wrote {out_dir}: {models.count_params(generator):,} parameters "
        f"(BigGAN {config.model.resolution}², ch {config.model.ch_g}; stored BN statistics)",
        flush=True,
    )
    return out_dir
