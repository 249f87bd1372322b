"""TF Hub TF1 modules (deepmind/biggan-{128,256,512}/2, biggan-deep-{128,256,512}/1) into an
exported generator, read without TensorFlow (biggan/convert/tf_checkpoint.py)."""

from __future__ import annotations

import dataclasses
import functools
import math
import os

import ml_collections
import numpy as np

from biggan import config as cfg
from biggan.convert import tf_checkpoint
from biggan.convert.hf import HF_DEFAULTS, hf_model_config
from biggan.convert.tables import (
    ConversionError,
    Entry,
    Kind,
    build_generator,
    convert_layout,
    expected_shapes,
    listing,
    normalize,
)
from biggan.models import biggan as biggan_arch
from biggan.models import biggan_deep
from biggan.models import factory as models
from biggan.sampling import export, truncation_stats

# deepmind/biggan-{128,256,512}/2 ("biggan") and deepmind/biggan-deep-{128,256,512}/1
# ("biggan_deep"). Names: BigGAN-PyTorch's TFHub/converter.py (non-deep) and
# pytorch-pretrained-biggan 0.1.1's convert_tf_to_pytorch.py (deep). Checkpoint keys carry no
# `module/` prefix and no `:0` (those come from tf.global_variables()).

TFHUB_EMA = {"biggan": "/ema_b999900", "biggan_deep": "/ema_0.9999"}
TFHUB_BLOCKS = {
    "biggan": {len(v): k for k, v in biggan_arch.G_CHANNELS.items() if k >= 128},
    "biggan_deep": {len(v): k for k, v in biggan_deep.G_BLOCKS.items() if k >= 128},
}
# Non-deep: attention after G block 3/4/3 (BigGAN-PyTorch TFHub/converter.py convert_from_v1,
# attention_blocknum), i.e. at 64²/128²/64²; deep: before list position 8 of the layout
# (pytorch-pretrained-biggan configs).
TFHUB_ATTENTION = {128: 64, 256: 128, 512: 64}
# Per-truncation statistic tables, rows per BN: deep t = k/50, k = 0..50 (pytorch-pretrained-biggan,
# n_stats); non-deep t = 0.02·(k+1), k = 0..49 (ivclab/BigGAN-Generator-Pretrained-Pytorch,
# src/batch_normalization.py).
TFHUB_STAT_ROWS = {"biggan_deep": 51, "biggan": 50}


def _tfhub_vector(name):
    """Public converters squeeze these (u vectors, biases, BN affines, attention gamma): any shape
    of the right size is accepted."""
    leaf = name.rsplit("/", 2)
    return (
        leaf[-1] in ("u0", "u1")
        or leaf[-2] in ("b", "gamma", "beta", "offset", "scale")
        or name.endswith(("/gamma", "/beta"))
    )


def tfhub_family(variables: dict) -> tuple[str, int]:
    """(family, resolution) from the variable names; refuses anything that is not one of the six
    modules."""
    if "Generator/G_Z/G_linear/u0" in variables:
        family = "biggan"
    elif "Generator/GenZ/G_linear/u0" in variables:
        family = "biggan_deep"
    else:
        raise ConversionError(
            f"no Generator/G_Z/G_linear (BigGAN) or Generator/GenZ/G_linear (BigGAN-deep) "
            f"variables among the module's {len(variables)} (first: {sorted(variables)[:5]}); "
            f"expected a deepmind/biggan-* or biggan-deep-* TF Hub module"
        )
    blocks = {k.split("/")[1] for k in variables if k.startswith("Generator/GBlock")}
    if len(blocks) not in TFHUB_BLOCKS[family]:
        raise ConversionError(
            f"{len(blocks)} Generator/GBlock scopes: the released {family} modules have "
            f"{sorted(TFHUB_BLOCKS[family])} (resolutions {sorted(TFHUB_BLOCKS[family].values())})"
        )
    return family, TFHUB_BLOCKS[family][len(blocks)]


def tfhub_model_config(variables: dict) -> ml_collections.ConfigDict:
    """Our config for a TF Hub module: family and resolution from the names, widths from the
    shapes."""
    family, res = tfhub_family(variables)
    ema = TFHUB_EMA[family]
    embed = variables.get("linear/w" + ema)
    if embed is None or embed.ndim != 2:
        raise ConversionError(
            f"linear/w{ema} (the class embedding, (num_classes, dim)) is missing or not 2-D"
        )
    num_classes, shared_dim = embed.shape
    if family == "biggan_deep":
        linear = variables.get("Generator/GenZ/G_linear/w" + ema)
        if linear is None or linear.ndim != 2 or linear.shape[1] % (4 * 4 * 16):
            raise ConversionError(
                f"Generator/GenZ/G_linear/w{ema} is missing or not (2·z_dim, 4·4·16·ch)"
            )
        hc = dict(
            HF_DEFAULTS,
            output_dim=res,
            layers=[list(b) for b in biggan_deep.G_BLOCKS[res]],
            channel_width=linear.shape[1] // 256,
            z_dim=linear.shape[0] // 2,
            class_embed_dim=shared_dim,
            num_classes=num_classes,
            n_stats=TFHUB_STAT_ROWS[family],
        )
        config = hf_model_config(hc)
    else:
        linear = variables.get("Generator/G_Z/G_linear/w" + ema)
        plan = biggan_arch.G_CHANNELS[res]
        if linear is None or linear.ndim != 2 or linear.shape[1] % (4 * 4 * plan[0][0]):
            raise ConversionError(
                f"Generator/G_Z/G_linear/w{ema} is missing or not (z_chunk, 4·4·16·ch)"
            )
        config = cfg.base_config()
        config.model.update(
            arch="biggan",
            resolution=res,
            ch_g=linear.shape[1] // (16 * plan[0][0]),
            dim_z=linear.shape[0] * (len(plan) + 1),
            shared_dim=shared_dim,
            num_classes=num_classes,
            hier=True,
            shared=True,
            g_attn=(TFHUB_ATTENTION[res],),
            bn_eps=1e-4,
            sn_eps=1e-4,
            sn_eval_mode="stored",  # u, v prepared at conversion by one power step from u0 (below)
            rgb_channels=3,
        )
        config.model.ch_d = config.model.ch_g
    config.sample.update(
        latents="tfhub",
        bn_stats="truncation_table",
        truncation_table="pytorch_pretrained_biggan" if family == "biggan_deep" else "tfhub_biggan",
    )
    return config


def _tfhub_sn(e, read, out, eps, cond_swap=0):
    """A TF SN layer: w (in, out) or HWIO = our kernel layout; only u0 counts (u1, where present, is
    a second tracked singular vector). u and v are prepared as pytorch-pretrained-biggan's
    conversion does (load_tf_weights_in_biggan): v = normalize(Wᵀu0), u = normalize(Wv); evaluation
    then uses σ = uᵀWv ('stored'), which equals BigGAN-PyTorch's one power step from u0 at
    evaluation. `cond_swap`: non-deep cBN projections take [z_chunk, embed] (TF Hub) while our
    BigGAN G concatenates [embed, z_chunk] (BigGAN-PyTorch): their input rows are rotated
    (BigGAN-PyTorch convert_from_v1 does the same)."""
    w = read(f"{e.theirs}/w{e.ema}")
    if cond_swap:
        w = np.concatenate([w[cond_swap:], w[:cond_swap]], axis=0)
    out.flat[e.ours + ("kernel",)] = w
    w_mat = w.reshape(-1, w.shape[-1]).T.astype(np.float64)
    u0 = read(f"{e.theirs}/u0").reshape(-1).astype(np.float64)
    v = normalize(w_mat.T @ u0, eps)
    out.flat[e.ours + ("sn", "u")] = normalize(w_mat @ v, eps).astype(np.float32)
    out.flat[e.ours + ("sn", "v")] = v.astype(np.float32)
    if e.bias:
        out.flat[e.ours + ("bias",)] = read(f"{e.theirs}/b{e.ema}").reshape(-1)


@dataclasses.dataclass(frozen=True)
class TfEntry(Entry):
    ema: str = ""
    extra: tuple = ()  # names of known variables the conversion does not read (u1, BN accumulators)
    cond_swap: int = 0


def tfhub_kinds(eps: float) -> dict[str, Kind]:
    def sn_keys(e):
        keys = {f"{e.theirs}/w{e.ema}": e.shape, f"{e.theirs}/u0": (e.shape[-1],)}
        if e.bias:
            keys[f"{e.theirs}/b{e.ema}"] = (e.shape[-1],)
        return keys

    def affine(scale, offset):
        def convert(e, read, out):
            out.flat[e.ours + ("scale",)] = read(f"{e.theirs}/{scale}{e.ema}")
            out.flat[e.ours + ("offset",)] = read(f"{e.theirs}/{offset}{e.ema}")

        return Kind(
            lambda e: {
                f"{e.theirs}/{scale}{e.ema}": e.shape,
                f"{e.theirs}/{offset}{e.ema}": e.shape,
            },
            convert,
        )

    return {
        "embed": Kind(
            lambda e: {f"{e.theirs}/w{e.ema}": e.shape},
            lambda e, read, out: out.flat.__setitem__(
                e.ours + ("embedding",), read(f"{e.theirs}/w{e.ema}")
            ),
        ),
        "sn": Kind(sn_keys, lambda e, read, out: _tfhub_sn(e, read, out, eps, e.cond_swap)),
        "gamma": Kind(
            lambda e: {f"{e.theirs}/gamma{e.ema}": ()},
            lambda e, read, out: out.flat.__setitem__(
                e.ours + ("gamma",), read(f"{e.theirs}/gamma{e.ema}")
            ),
        ),
        "affine_gamma_beta": affine("gamma", "beta"),
        "affine_scale_offset": affine("scale", "offset"),
        "bn": Kind(
            lambda e: {}, lambda e, read, out: None
        ),  # statistics come from the graph (tfhub_stat_tables)
    }


def tfhub_layout(config) -> list[TfEntry]:
    """Every variable a TF Hub module of this config holds that the conversion reads, entry by entry
    in forward order (the order of the BN statistic tables)."""
    m = config.model
    family = m.arch
    ema, ch = TFHUB_EMA[family], m.ch_g
    E = functools.partial(TfEntry, ema=ema)

    def sn(theirs, ours, shape, bias=False, cond_swap=0):
        extra = (f"{theirs}/u1",) if family == "biggan" else ()
        return E("sn", theirs, ours, shape, bias, extra=extra, cond_swap=cond_swap)

    def attention(ours, c):
        return [
            sn(f"Generator/attention/{name}", ours + (mine,), shape)
            for name, mine, shape in (
                ("theta", "theta", (1, 1, c, c // 8)),
                ("phi", "phi", (1, 1, c, c // 8)),
                ("g", "g", (1, 1, c, c // 2)),
                ("o_conv", "o", (1, 1, c // 2, c)),
            )
        ] + [E("gamma", "Generator/attention", ours)]

    def scope(i):
        return "Generator/GBlock" + (f"_{i}" if i else "")

    layout = [E("embed", "linear", ("shared_embed",), (m.num_classes, m.shared_dim))]
    if family == "biggan":
        plan = biggan_arch.G_CHANNELS[m.resolution]
        chunk = m.dim_z // (len(plan) + 1)
        cond = chunk + m.shared_dim
        layout.append(
            sn("Generator/G_Z/G_linear", ("linear",), (chunk, 4 * 4 * plan[0][0] * ch), bias=True)
        )
        for i, (cin, cout) in enumerate(plan):
            p, cin, cout = scope(i), cin * ch, cout * ch
            for hyper, cross, bn, c in (
                ("HyperBN", "CrossReplicaBN", "bn1", cin),
                ("HyperBN_1", "CrossReplicaBN_1", "bn2", cout),
            ):
                accumulators = tuple(
                    f"{p}/{cross}/{k}"
                    for k in ("accumulated_mean", "accumulated_var", "accumulation_counter")
                )
                layout += [
                    E("bn", f"{p}/{cross}", ("blocks", i, bn, "bn"), (c,), extra=accumulators),
                    sn(f"{p}/{hyper}/gamma", ("blocks", i, bn, "gain"), (cond, c), cond_swap=chunk),
                    sn(f"{p}/{hyper}/beta", ("blocks", i, bn, "bias"), (cond, c), cond_swap=chunk),
                ]
            for theirs, ours, k, c_in in (
                ("conv0", "conv1", 3, cin),
                ("conv1", "conv2", 3, cout),
                ("conv_sc", "conv_sc", 1, cin),
            ):
                layout.append(
                    sn(f"{p}/{theirs}", ("blocks", i, ours), (k, k, c_in, cout), bias=True)
                )
            if 8 * 2**i in m.g_attn:
                layout += attention(("attention", i), cout)
        c = plan[-1][1] * ch
        layout += [
            E("affine_gamma_beta", "Generator/ScaledCrossReplicaBN", ("output_bn",), (c,)),
            E(
                "bn",
                "Generator/ScaledCrossReplicaBNbn",
                ("output_bn",),
                (c,),
                extra=tuple(
                    f"Generator/ScaledCrossReplicaBNbn/{k}"
                    for k in ("accumulated_mean", "accumulated_var", "accumulation_counter")
                ),
            ),
            sn("Generator/conv_2d", ("output_conv",), (3, 3, c, 3), bias=True),
        ]
        return layout
    plan, cond = biggan_deep.G_BLOCKS[m.resolution], 2 * m.dim_z
    position = 1 + biggan_deep.g_block_resolutions(m.resolution).index(m.g_attn[0])
    layout.append(sn("Generator/GenZ/G_linear", ("linear",), (cond, 4 * 4 * 16 * ch), bias=True))
    for i, (_, cin, cout) in enumerate(plan):
        # attention before list position `position` = after our block position − 1
        if i == position:
            layout += attention(("attention", i - 1), cin * ch)
        p, cin, cout = scope(i), cin * ch, cout * ch
        mid = cin // biggan_deep.BOTTLENECK
        for k, (c_bn, conv) in enumerate(
            [
                (cin, (1, 1, cin, mid)),
                (mid, (3, 3, mid, mid)),
                (mid, (3, 3, mid, mid)),
                (mid, (1, 1, mid, cout)),
            ]
        ):
            b, bn = f"{p}/BatchNorm" + (f"_{k}" if k else ""), ("blocks", i, f"bn{k + 1}")
            layout += [
                E("bn", b, bn + ("bn",), (c_bn,)),
                sn(f"{b}/scale", bn + ("gain",), (cond, c_bn)),
                sn(f"{b}/offset", bn + ("bias",), (cond, c_bn)),
                sn(f"{p}/conv{k}", ("blocks", i, f"conv{k + 1}"), conv, bias=True),
            ]
    layout += [
        E("affine_scale_offset", "Generator/BatchNorm", ("output_bn",), (ch,)),
        E("bn", "Generator/BatchNorm", ("output_bn",), (ch,)),
        sn("Generator/conv_to_rgb", ("output_conv",), (3, 3, ch, ch), bias=True),
    ]
    return layout


def tfhub_stat_tables(constants: dict, layout: list[TfEntry], rows: int) -> list[tuple]:
    """The per-truncation (mean, var) tables of every BN, found by shape and order among the graph's
    constants: float (rows, C) tables, in graph order, a mean then a var per BN in forward order.
    For the deep modules these are the nodes pytorch-pretrained-biggan's extract_batch_norm_stats
    names (stack_{10i+1}, stack_{10i+3}, stack_{10i+6}, stack_{10i+8}); no public code names the
    non-deep ones."""
    channels = [e.shape[0] for e in layout if e.kind == "bn"]
    tables = [
        (name, v)
        for name, v in constants.items()
        if v.ndim == 2 and v.shape[0] == rows and np.issubdtype(v.dtype, np.floating)
    ]
    found = [v.shape[1] for _, v in tables]
    expected = [c for c in channels for _ in (0, 1)]
    if found != expected:
        raise ConversionError(
            f"the module's saved_model.pb does not hold the per-truncation BN statistics this converter expects "
            f"({len(expected)} float constant tables of {rows} rows, a mean and a var for each of the "
            f"{len(channels)} batch norms in forward order; found {len(found)}"
            f"{' with other channel counts' if len(found) == len(expected) else ''}); convert with "
            f"--standing_stats to sample with standing statistics instead (paper appendix C.1)"
        )
    pairs = [(tables[2 * i][1], tables[2 * i + 1][1]) for i in range(len(channels))]
    if any((var < 0).any() for _, var in pairs):
        raise ConversionError(
            "a variance table of the module's graph has negative entries: the statistics "
            "are not in mean/var order; convert with --standing_stats instead"
        )
    return pairs


def convert_tfhub(variables: dict, constants: dict | None):
    """(config, generator, per-truncation stats or None) from a TF Hub module's variables and graph
    constants (None: no tables; the export samples with standing statistics)."""
    config = tfhub_model_config(variables)
    m = config.model
    layout = tfhub_layout(config)
    family = m.arch
    expected = expected_shapes(layout, tfhub_kinds(m.sn_eps))
    known = set(expected) | {x for e in layout for x in e.extra}
    known |= {
        k.rsplit("/", 1)[0] for k in expected if k.endswith(TFHUB_EMA[family])
    }  # non-EMA weights: unused
    unexpected = sorted(set(variables) - known)
    normalised = {
        k: (
            v.reshape(expected[k])
            if k in expected and _tfhub_vector(k) and v.size == math.prod(expected[k])
            else v
        )
        for k, v in variables.items()
        if k in expected
    }
    what = f"TF Hub {family.replace('_', '-')}-{m.resolution} (ch {m.ch_g}, dim_z {m.dim_z})"
    if unexpected:
        raise ConversionError(
            f"the module holds {len(unexpected)} variable(s) that {what} does not have: "
            f"{listing(unexpected)}; expected an unmodified deepmind/biggan(-deep) module"
        )
    converted = convert_layout(normalised, layout, tfhub_kinds(m.sn_eps), what)
    bns = [e for e in layout if e.kind == "bn"]
    if constants is None:
        config.sample.update(bn_stats="standing", truncation_table="")
        for e in bns:  # replaced by standing statistics before any evaluation-mode forward
            converted.flat[e.ours + ("mean",)] = np.zeros(e.shape, np.float32)
            converted.flat[e.ours + ("var",)] = np.ones(e.shape, np.float32)
        stats = None
    else:
        stats = {}
        for e, (mean, var) in zip(
            bns, tfhub_stat_tables(constants, layout, TFHUB_STAT_ROWS[family])
        ):
            key = "/".join(map(str, e.ours))
            stats[f"{key}/mean"], stats[f"{key}/var"] = (
                mean.astype(np.float32),
                var.astype(np.float32),
            )
            converted.flat[e.ours + ("mean",)] = stats[f"{key}/mean"][
                -1
            ]  # t = 1 row; sampling selects per t
            converted.flat[e.ours + ("var",)] = stats[f"{key}/var"][-1]
    generator = build_generator(config, converted.flat)
    if stats is not None:
        truncation_stats.check_stats_match(generator, stats)
    return config, generator, stats


def read_tfhub_module(module_dir, *, with_constants=True):
    """(variables, graph constants or None) of an unpacked TF Hub module directory, without
    TensorFlow."""
    if not os.path.isdir(module_dir):
        raise FileNotFoundError(
            f"{module_dir} is not a directory; expected an unpacked TF Hub module (saved_model.pb, "
            f"tfhub_module.pb, variables/) — extract the downloaded .tar.gz first"
        )
    try:
        variables = tf_checkpoint.read_variables(os.path.join(module_dir, "variables", "variables"))
        constants = None
        if with_constants:
            graph = tf_checkpoint.read_graph_def(os.path.join(module_dir, "saved_model.pb"))
            constants = tf_checkpoint.graph_constants(graph)
    except tf_checkpoint.FormatError as e:
        raise ConversionError(f"{module_dir}: {e}") from e
    return variables, constants


def convert_tfhub_module(module_dir, out_dir, *, standing_stats=False):
    variables, constants = read_tfhub_module(module_dir, with_constants=not standing_stats)
    config, generator, stats = convert_tfhub(variables, constants)
    export.save_generator(out_dir, config, generator, truncation_stats=stats)
    m = config.model
    kind = (
        f"{len(stats) // 2} per-truncation BN statistic tables"
        if stats
        else "no per-truncation statistics: sampling accumulates standing statistics"
    )
    print(
        f"[convert] wrote {out_dir}: TF Hub {m.arch.replace('_', '-')}-{m.resolution}, "
        f"{models.count_params(generator):,} parameters, {kind}",
        flush=True,
    )
    return out_dir
