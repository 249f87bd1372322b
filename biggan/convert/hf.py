"""pytorch-pretrained-biggan 0.1.1 (BigGAN-deep 128/256/512) into an exported generator."""

from __future__ import annotations

import math
import os

import ml_collections

from biggan import config as cfg
from biggan.convert.tables import (
    ConversionError,
    Entry,
    Kind,
    build_generator,
    conv_kernel,
    conv_v,
    convert_layout,
    expected_shapes,
    load_torch_state_dict,
    other_format_hint,
    read_json,
    sn_keys,
)
from biggan.models import biggan_deep
from biggan.models import factory as models
from biggan.sampling import export, truncation_stats

HF_DEFAULTS = dict(
    z_dim=128,
    class_embed_dim=128,
    channel_width=128,
    num_classes=1000,
    attention_layer_position=8,
    eps=1e-4,
    n_stats=51,
)
HF_RESOLUTION_BY_BLOCKS = {len(v): k for k, v in biggan_deep.G_BLOCKS.items() if k >= 128}


def hf_config_from_state_dict(state_dict) -> dict:
    """The released config implied by a state dict (used when no config.json is at hand)."""
    n_layers = len({k.split(".")[2] for k in state_dict if k.startswith("generator.layers.")})
    n_blocks = n_layers - 1
    if n_blocks not in HF_RESOLUTION_BY_BLOCKS:
        hint = other_format_hint(state_dict) or "pass its config.json"
        raise ConversionError(
            f"the state dict has {n_layers} generator.layers entries; the released BigGAN-deep "
            f"models have {sorted(n + 1 for n in HF_RESOLUTION_BY_BLOCKS)} — {hint}"
        )
    res = HF_RESOLUTION_BY_BLOCKS[n_blocks]
    hc = dict(HF_DEFAULTS, output_dim=res, layers=[list(b) for b in biggan_deep.G_BLOCKS[res]])
    if "generator.conv_to_rgb.weight_orig" in state_dict:
        hc["channel_width"] = int(state_dict["generator.conv_to_rgb.weight_orig"].shape[1])
    if "generator.bn.running_means" in state_dict:
        hc["n_stats"] = int(state_dict["generator.bn.running_means"].shape[0])
    return hc


def _hf_get(hc, key):
    return hc.get(key, HF_DEFAULTS.get(key))


def _check_hf_config(hc):
    res = hc.get("output_dim")
    if res not in biggan_deep.G_BLOCKS:
        raise ConversionError(
            f"config output_dim={res!r}: expected one of {sorted(biggan_deep.G_BLOCKS)}"
        )
    layers = [tuple(x) for x in hc.get("layers", biggan_deep.G_BLOCKS.get(128))]
    if layers != [tuple(x) for x in biggan_deep.G_BLOCKS[res]]:
        raise ConversionError(
            f"config layers={layers} is not the BigGAN-deep {res}² layout "
            f"{biggan_deep.G_BLOCKS[res]} this converter maps"
        )
    if layers[0][1] != 16 or layers[-1][2] != 1:
        # The reference hard-wires its first linear to 4·4·16·ch outputs and its output BN/conv to
        # ch channels.
        raise ConversionError(
            f"config layers run from {layers[0][1]}·ch to {layers[-1][2]}·ch channels; "
            f"pytorch-pretrained-biggan needs 16·ch → 1·ch"
        )
    pos = _hf_get(hc, "attention_layer_position")
    # The reference inserts attention before block `pos` only while enumerating blocks, so pos must
    # lie in [1, len(layers)); our G places it after the upsampling block reaching a resolution.
    if not 1 <= pos < len(layers) or not layers[pos - 1][0]:
        raise ConversionError(
            f"attention_layer_position={pos}: attention must follow an upsampling block "
            f"and precede another block (position 8 in the released models)"
        )
    if _hf_get(hc, "class_embed_dim") != _hf_get(hc, "z_dim"):
        # pytorch-pretrained-biggan builds the embedding as Linear(num_classes, z_dim) whatever
        # class_embed_dim.
        raise ConversionError(
            f"class_embed_dim={_hf_get(hc, 'class_embed_dim')} != z_dim={_hf_get(hc, 'z_dim')}: "
            f"pytorch-pretrained-biggan only builds models with equal widths"
        )
    return layers, pos


def _hf_sn(kernel):
    """pytorch-pretrained-biggan SN layer: weight_orig, weight_u and the stored, already iterated
    weight_v."""

    def convert(e, read, out):
        w = read(f"{e.theirs}.weight_orig")
        out.flat[e.ours + ("kernel",)] = w.T if kernel == "linear" else conv_kernel(w)
        out.flat[e.ours + ("sn", "u")] = read(f"{e.theirs}.weight_u")
        v = read(f"{e.theirs}.weight_v")
        out.flat[e.ours + ("sn", "v")] = v if kernel == "linear" else conv_v(v, w.shape)
        if e.bias:
            out.flat[e.ours + ("bias",)] = read(f"{e.theirs}.bias")

    return Kind(
        sn_keys(
            "weight_orig",
            ("weight_u", lambda s: (s[0],)),
            ("weight_v", lambda s: (math.prod(s[1:]),)),
        ),
        convert,
    )


def _hf_bn_stats(e, read, out):
    key = "/".join(map(str, e.ours))
    out.stats[f"{key}/mean"] = read(f"{e.theirs}.running_means")
    out.stats[f"{key}/var"] = read(f"{e.theirs}.running_vars")
    # Default BN state = the t = 1 row (untruncated); sampling overwrites it per truncation.
    out.flat[e.ours + ("mean",)] = out.stats[f"{key}/mean"][-1]
    out.flat[e.ours + ("var",)] = out.stats[f"{key}/var"][-1]


def _hf_affine(e, read, out):
    out.flat[e.ours + ("scale",)] = read(f"{e.theirs}.weight")
    out.flat[e.ours + ("offset",)] = read(f"{e.theirs}.bias")


HF_KINDS = {
    # Linear(num_classes → z_dim) weight (z_dim, num_classes): our embedding table is its transpose.
    "embed": Kind(
        lambda e: {f"{e.theirs}.weight": e.shape},
        lambda e, read, out: out.flat.__setitem__(
            e.ours + ("embedding",), read(f"{e.theirs}.weight").T
        ),
    ),
    "sn_linear": _hf_sn("linear"),
    "sn_conv": _hf_sn("conv"),
    "bn_stats": Kind(
        lambda e: {f"{e.theirs}.running_means": e.shape, f"{e.theirs}.running_vars": e.shape},
        _hf_bn_stats,
    ),
    "affine": Kind(
        lambda e: {f"{e.theirs}.weight": e.shape, f"{e.theirs}.bias": e.shape}, _hf_affine
    ),
    "gamma": Kind(
        lambda e: {f"{e.theirs}.gamma": (1,)},
        lambda e, read, out: out.flat.__setitem__(
            e.ours + ("gamma",), read(f"{e.theirs}.gamma").reshape(())
        ),
    ),
}


def hf_layout(hc: dict) -> list[Entry]:
    """pytorch-pretrained-biggan 0.1.1's BigGAN state dict for config `hc`, entry by entry."""
    layers, pos = _check_hf_config(hc)
    ch, zd, ncls, n = (_hf_get(hc, k) for k in ("channel_width", "z_dim", "num_classes", "n_stats"))
    cond = 2 * zd
    # The first linear's output is already viewed as (4, 4, C): our HWC order, no permutation.
    layout = [
        Entry("embed", "embeddings", ("shared_embed",), (zd, ncls)),
        Entry("sn_linear", "generator.gen_z", ("linear",), (4 * 4 * 16 * ch, cond), bias=True),
    ]
    # their layer index: the attention layer at list position `pos` shifts the blocks after it
    j = 0
    for i, (_, cin, cout) in enumerate(layers):
        if i == pos:  # their attention at position `pos` follows our block pos − 1
            c, p = ch * cin, f"generator.layers.{j}"
            for ours, theirs, shape in (
                ("theta", "theta", (c // 8, c, 1, 1)),
                ("phi", "phi", (c // 8, c, 1, 1)),
                ("g", "g", (c // 2, c, 1, 1)),
                ("o", "o_conv", (c, c // 2, 1, 1)),
            ):
                layout.append(
                    Entry("sn_conv", f"{p}.snconv1x1_{theirs}", ("attention", i - 1, ours), shape)
                )
            layout.append(Entry("gamma", p, ("attention", i - 1)))
            j += 1
        p, cin, cout = f"generator.layers.{j}", ch * cin, ch * cout
        mid = cin // 4
        for k, (c_bn, conv_shape) in enumerate(
            [
                (cin, (mid, cin, 1, 1)),
                (mid, (mid, mid, 3, 3)),
                (mid, (mid, mid, 3, 3)),
                (mid, (cout, mid, 1, 1)),
            ]
        ):
            bn = ("blocks", i, f"bn{k + 1}")
            layout += [
                Entry("bn_stats", f"{p}.bn_{k}", bn + ("bn",), (n, c_bn)),
                Entry("sn_linear", f"{p}.bn_{k}.scale", bn + ("gain",), (c_bn, cond)),
                Entry("sn_linear", f"{p}.bn_{k}.offset", bn + ("bias",), (c_bn, cond)),
                Entry(
                    "sn_conv", f"{p}.conv_{k}", ("blocks", i, f"conv{k + 1}"), conv_shape, bias=True
                ),
            ]
        j += 1
    layout += [
        Entry("affine", "generator.bn", ("output_bn",), (ch,)),
        Entry("bn_stats", "generator.bn", ("output_bn",), (n, ch)),
        Entry("sn_conv", "generator.conv_to_rgb", ("output_conv",), (ch, ch, 3, 3), bias=True),
    ]
    return layout


def hf_expected_shapes(hc: dict) -> dict:
    """Every key → shape of pytorch-pretrained-biggan 0.1.1's BigGAN state dict for config `hc`."""
    return expected_shapes(hf_layout(hc), HF_KINDS)


def hf_model_config(hc: dict) -> ml_collections.ConfigDict:
    """Our experiment config for a released BigGAN-deep model."""
    layers, pos = _check_hf_config(hc)
    res = hc["output_dim"]
    ch = _hf_get(hc, "channel_width")
    c = cfg.base_config()
    # the released 128-channel rgb conv, first 3 channels kept (model.py, conv_to_rgb)
    c.model.update(
        arch="biggan_deep",
        resolution=res,
        ch_g=ch,
        ch_d=ch,
        dim_z=_hf_get(hc, "z_dim"),
        shared_dim=_hf_get(hc, "z_dim"),
        num_classes=_hf_get(hc, "num_classes"),
        g_attn=(biggan_deep.g_block_resolutions(res)[pos - 1],),
        hier=False,
        bn_eps=float(_hf_get(hc, "eps")),
        sn_eps=float(_hf_get(hc, "eps")),
        # TF Hub weights: σ = uᵀWv with the stored, already iterated u and v
        # (pytorch-pretrained-biggan, model.py)
        sn_eval_mode="stored",
        rgb_channels=ch,
    )
    c.sample.update(
        latents="tfhub", bn_stats="truncation_table", truncation_table="pytorch_pretrained_biggan"
    )
    return c


def convert_hf(state_dict: dict, hc: dict):
    """(config, generator, truncation stats) from a pytorch-pretrained-biggan state dict and its
    config."""
    converted = convert_layout(
        state_dict,
        hf_layout(hc),
        HF_KINDS,
        f"pytorch-pretrained-biggan biggan-deep-{hc['output_dim']}",
    )
    config = hf_model_config(hc)
    generator = build_generator(config, converted.flat)
    truncation_stats.check_stats_match(generator, converted.stats)
    return config, generator, converted.stats


def convert_hf_files(model_path, config_path=None, out_dir=None):
    """Read pytorch_model.bin (+ config.json), convert, write an export to `out_dir`. Returns
    out_dir."""
    sd = load_torch_state_dict(model_path)
    if config_path is None:
        beside = os.path.join(os.path.dirname(os.path.abspath(model_path)), "config.json")
        config_path = beside if os.path.exists(beside) else None
    if config_path is not None:
        hc = read_json(config_path, "pytorch-pretrained-biggan's config.json")
        print(f"[convert] config {config_path}: biggan-deep-{hc.get('output_dim')}", flush=True)
    else:
        hc = hf_config_from_state_dict(sd)
        print(
            f"[convert] no config.json given or beside {model_path}; using the released "
            f"biggan-deep-{hc['output_dim']} layout",
            flush=True,
        )
    config, generator, stats = convert_hf(sd, hc)
    export.save_generator(out_dir, config, generator, truncation_stats=stats)
    print(
        f"[convert] wrote {out_dir}: {models.count_params(generator):,} parameters, "
        f"{len(stats) // 2} BN statistic tables ({next(iter(stats.values())).shape[0]} truncations)",
        flush=True,
    )
    return out_dir
