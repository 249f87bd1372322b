"""Convert released generator weights into an exported generator (biggan.export).

  python -m biggan.convert tfhub MODULE_DIR --out DIR [--standing_stats]
      an unpacked TF Hub module: deepmind/biggan-{128,256,512}/2 or biggan-deep-{128,256,512}/1, read without
      TensorFlow (biggan/tf_checkpoint.py); family, resolution and widths from the variables; the per-truncation
      BN statistics from the graph (--standing_stats: without them, sampling accumulates standing statistics).

  python -m biggan.convert hf PYTORCH_MODEL_BIN [CONFIG_JSON] --out DIR
      pytorch-pretrained-biggan 0.1.1 BigGAN-deep 128/256/512; CONFIG_JSON defaults to the
      config.json beside the .bin. Writes the 51-row per-truncation BN statistics (biggan/truncation_stats.py).
  python -m biggan.convert biggan-pytorch G_EMA_PTH [--config CONFIG] --out DIR
      BigGAN-PyTorch's BigGAN G / G_ema state dict; CONFIG is a configs/*.py file (path[:arg]) or a JSON
      of config.model keys (default: the paper's 128² model, which is the released one).

Every key and shape is checked against what the config implies; missing, unexpected and wrongly shaped
entries are reported on one line, and nothing is ever left randomly initialised. Errors exit with status 2.
torch is imported lazily, only to read PyTorch files.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import sys
from collections.abc import Callable

import jax
import ml_collections
import numpy as np
from flax import nnx, traverse_util

from biggan import biggan as biggan_arch
from biggan import biggan_deep, export, models, storage, tf_checkpoint, truncation_stats
from biggan import config as cfg


class ConversionError(ValueError):
    """The file or its config does not describe a model this converter knows."""


# ----------------------------------------------------------------------------------------------- reading

def load_torch_state_dict(path) -> dict:
    """{key: float32 numpy array} from a torch.save'd state dict, read safely (weights_only)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found; expected a PyTorch state dict file (pytorch_model.bin / G_ema.pth)")
    import torch  # lazy: torch is only needed to read PyTorch files (never by the core library)

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for truncated/corrupt/non-zip files
        raise ConversionError(f"{path} could not be read as a PyTorch state dict ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}); expected the file written by "
                              f"torch.save(model.state_dict()) — re-download it if it is truncated") from e
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConversionError(f"{path} holds a {type(obj).__name__}, not a state dict of tensors; expected the "
                              f"file written by torch.save(model.state_dict())")
    return {k: v.detach().to(torch.float32).numpy() for k, v in obj.items()}


def _read_json(path, expected: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ConversionError(f"{path} is not a readable JSON file ({e}); expected {expected}") from e


def _listing(items, limit=4) -> str:
    """'a, b, c, d … and 7 more': a bounded list for one-line messages."""
    items = list(items)
    shown = ", ".join(map(str, items[:limit]))
    return shown + (f" … and {len(items) - limit} more" if len(items) > limit else "")


def check_state_dict(state_dict: dict, expected: dict, what: str):
    """Raise (one line) naming the missing keys, unexpected keys and wrong shapes; `expected` maps key → shape."""
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = [f"{k}: {tuple(state_dict[k].shape)}, expected {tuple(expected[k])}" for k in sorted(expected)
             if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k])]
    if missing or unexpected or wrong:
        parts = [f"{title} ({len(items)}): {_listing(items)}" for title, items in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)) if items]
        hint = _other_format_hint(state_dict) or ("is the config the one that belongs to this file? a different "
                                                  "resolution or channel width changes the key set and shapes")
        raise ConversionError(f"the weights do not match {what}: {'; '.join(parts)} — {hint}")


def _other_format_hint(state_dict) -> str:
    """The converter to use when the keys are another known format's."""
    keys = set(state_dict)
    if any(k.startswith("generator.layers.") for k in keys):
        return "these are pytorch-pretrained-biggan (BigGAN-deep) weights: use `python -m biggan.convert hf`"
    if any(k.startswith("blocks.") and ".0.bn1." in k for k in keys) and "shared.weight" in keys:
        return "these are BigGAN-PyTorch BigGAN weights: use `python -m biggan.convert biggan-pytorch`"
    return ""


# ------------------------------------------------------------------------------------- layout helpers

def _normalize(x, eps):
    return x / max(float(np.linalg.norm(x)), eps)


def _conv_kernel(w):
    """PyTorch OIHW → our HWIO."""
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def _conv_v(v, w_shape):
    """Permute a PyTorch conv SN v (in, kh, kw order) to our (kh, kw, in) column order, so that
    σ = uᵀ W v is unchanged with our W view (layers.SNConv)."""
    out_ch, in_ch, kh, kw = w_shape
    return np.ascontiguousarray(v.reshape(in_ch, kh, kw).transpose(1, 2, 0).reshape(-1))


def _v_from_u(w_mat, u, eps):
    """v = normalize(Wᵀu): the value the next power-iteration step computes (used for 'iterate' mode,
    where the stored v is never read but is kept consistent)."""
    return _normalize(w_mat.T @ u, eps).astype(np.float32)


# ------------------------------------------------------------------------------------- layout tables
# Each format describes its checkpoint once, as a list of `Entry` rows (one per module); each entry's kind
# says which state-dict keys it owns (with their shapes) and how they become our leaves. The expected key
# set (checked before anything is converted) and the mapping are both read off that one table.

@dataclasses.dataclass(frozen=True)
class Entry:
    kind: str            # a key of the format's kind table
    theirs: str          # state-dict key prefix
    ours: tuple = ()     # path of the module in our generator
    shape: tuple = ()    # their weight shape (out, in) / OIHW; BN: channels
    bias: bool = False   # the layer has a bias


@dataclasses.dataclass(frozen=True)
class Kind:
    keys: Callable       # entry -> {state-dict key: shape}
    convert: Callable    # (entry, read(key) -> array, converted: Converted) -> None


@dataclasses.dataclass
class Converted:
    flat: dict = dataclasses.field(default_factory=dict)    # {our leaf path: array}
    stats: dict = dataclasses.field(default_factory=dict)   # {'<bn path>/mean'|'/var': (rows, C)}


def expected_shapes(layout: list[Entry], kinds: dict[str, Kind]) -> dict:
    """{state-dict key: shape} that `layout` implies."""
    shapes = {}
    for entry in layout:
        shapes.update(kinds[entry.kind].keys(entry))
    return shapes


def convert_layout(state_dict: dict, layout: list[Entry], kinds: dict[str, Kind], what: str) -> Converted:
    """Check `state_dict` against the layout's keys and shapes, then map every entry."""
    check_state_dict(state_dict, expected_shapes(layout, kinds), what)
    converted = Converted()
    for entry in layout:
        kinds[entry.kind].convert(entry, state_dict.__getitem__, converted)
    return converted


def _sn_keys(weight, u_shape, v_shape, extra=()):
    """Keys of a spectrally normalised layer: weight, SN vectors, optional extras and bias."""
    def keys(e):
        out = {f"{e.theirs}.{weight}": e.shape, f"{e.theirs}.{u_shape[0]}": u_shape[1](e.shape)}
        if v_shape:
            out[f"{e.theirs}.{v_shape[0]}"] = v_shape[1](e.shape)
        out.update({f"{e.theirs}.{name}": shape for name, shape in extra})
        if e.bias:
            out[f"{e.theirs}.bias"] = (e.shape[0],)
        return out
    return keys


def _build_generator(config, flat: dict):
    """Generator from `config.model` with every state leaf taken from `flat` ({path tuple: array})."""
    abstract = nnx.eval_shape(lambda: models.make_generator(config.model, nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    target = traverse_util.flatten_dict(nnx.to_pure_dict(state))
    # Internal consistency: the mapping must fill every leaf, with the right shape, and nothing else.
    missing = sorted(map(str, set(target) - set(flat)))
    extra = sorted(map(str, set(flat) - set(target)))
    wrong = [f"{k}: {flat[k].shape} vs {target[k].shape}" for k in target if k in flat
             and tuple(flat[k].shape) != tuple(target[k].shape)]
    if missing or extra or wrong:
        raise AssertionError(f"converter mapping does not cover the generator: missing {missing}, "
                             f"extra {extra}, wrong shapes {wrong}")
    pure = traverse_util.unflatten_dict({k: jax.numpy.asarray(np.asarray(v, np.float32)) for k, v in flat.items()})
    nnx.replace_by_pure_dict(state, pure)
    return nnx.merge(graphdef, state)


# ------------------------------------------------------------------ pytorch-pretrained-biggan (BigGAN-deep)

HF_DEFAULTS = dict(z_dim=128, class_embed_dim=128, channel_width=128, num_classes=1000,
                   attention_layer_position=8, eps=1e-4, n_stats=51)
HF_RESOLUTION_BY_BLOCKS = {len(v): k for k, v in biggan_deep.G_BLOCKS.items() if k >= 128}


def hf_config_from_state_dict(state_dict) -> dict:
    """The released config implied by a state dict (used when no config.json is at hand)."""
    n_layers = len({k.split(".")[2] for k in state_dict if k.startswith("generator.layers.")})
    n_blocks = n_layers - 1
    if n_blocks not in HF_RESOLUTION_BY_BLOCKS:
        hint = _other_format_hint(state_dict) or "pass its config.json"
        raise ConversionError(f"the state dict has {n_layers} generator.layers entries; the released BigGAN-deep "
                              f"models have {sorted(n + 1 for n in HF_RESOLUTION_BY_BLOCKS)} — {hint}")
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
        raise ConversionError(f"config output_dim={res!r}: expected one of {sorted(biggan_deep.G_BLOCKS)}")
    layers = [tuple(x) for x in hc.get("layers", biggan_deep.G_BLOCKS.get(128))]
    if layers != [tuple(x) for x in biggan_deep.G_BLOCKS[res]]:
        raise ConversionError(f"config layers={layers} is not the BigGAN-deep {res}² layout "
                              f"{biggan_deep.G_BLOCKS[res]} this converter maps")
    if layers[0][1] != 16 or layers[-1][2] != 1:
        # The reference hard-wires its first linear to 4·4·16·ch outputs and its output BN/conv to ch channels.
        raise ConversionError(f"config layers run from {layers[0][1]}·ch to {layers[-1][2]}·ch channels; "
                              f"pytorch-pretrained-biggan needs 16·ch → 1·ch")
    pos = _hf_get(hc, "attention_layer_position")
    # The reference inserts attention before block `pos` only while enumerating blocks, so pos must lie in
    # [1, len(layers)); our G places it after the upsampling block reaching a resolution.
    if not 1 <= pos < len(layers) or not layers[pos - 1][0]:
        raise ConversionError(f"attention_layer_position={pos}: attention must follow an upsampling block "
                              f"and precede another block (position 8 in the released models)")
    if _hf_get(hc, "class_embed_dim") != _hf_get(hc, "z_dim"):
        # pytorch-pretrained-biggan builds the embedding as Linear(num_classes, z_dim) whatever class_embed_dim.
        raise ConversionError(f"class_embed_dim={_hf_get(hc, 'class_embed_dim')} != z_dim={_hf_get(hc, 'z_dim')}: "
                              f"pytorch-pretrained-biggan only builds models with equal widths")
    return layers, pos


def _hf_sn(kernel):
    """pytorch-pretrained-biggan SN layer: weight_orig, weight_u and the stored, already iterated weight_v."""
    def convert(e, read, out):
        w = read(f"{e.theirs}.weight_orig")
        out.flat[e.ours + ("kernel",)] = w.T if kernel == "linear" else _conv_kernel(w)
        out.flat[e.ours + ("sn", "u")] = read(f"{e.theirs}.weight_u")
        v = read(f"{e.theirs}.weight_v")
        out.flat[e.ours + ("sn", "v")] = v if kernel == "linear" else _conv_v(v, w.shape)
        if e.bias:
            out.flat[e.ours + ("bias",)] = read(f"{e.theirs}.bias")
    return Kind(_sn_keys("weight_orig", ("weight_u", lambda s: (s[0],)),
                         ("weight_v", lambda s: (math.prod(s[1:]),))), convert)


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
    "embed": Kind(lambda e: {f"{e.theirs}.weight": e.shape},
                  lambda e, read, out: out.flat.__setitem__(e.ours + ("embedding",), read(f"{e.theirs}.weight").T)),
    "sn_linear": _hf_sn("linear"),
    "sn_conv": _hf_sn("conv"),
    "bn_stats": Kind(lambda e: {f"{e.theirs}.running_means": e.shape, f"{e.theirs}.running_vars": e.shape},
                     _hf_bn_stats),
    "affine": Kind(lambda e: {f"{e.theirs}.weight": e.shape, f"{e.theirs}.bias": e.shape}, _hf_affine),
    "gamma": Kind(lambda e: {f"{e.theirs}.gamma": (1,)},
                  lambda e, read, out: out.flat.__setitem__(e.ours + ("gamma",), read(f"{e.theirs}.gamma").reshape(()))),
}


def hf_layout(hc: dict) -> list[Entry]:
    """pytorch-pretrained-biggan 0.1.1's BigGAN state dict for config `hc`, entry by entry."""
    layers, pos = _check_hf_config(hc)
    ch, zd, ncls, n = (_hf_get(hc, k) for k in ("channel_width", "z_dim", "num_classes", "n_stats"))
    cond = 2 * zd
    # The first linear's output is already viewed as (4, 4, C): our HWC order, no permutation.
    layout = [Entry("embed", "embeddings", ("shared_embed",), (zd, ncls)),
              Entry("sn_linear", "generator.gen_z", ("linear",), (4 * 4 * 16 * ch, cond), bias=True)]
    j = 0  # their layer index: the attention layer at list position `pos` shifts the blocks after it
    for i, (_, cin, cout) in enumerate(layers):
        if i == pos:  # their attention at position `pos` follows our block pos − 1
            c, p = ch * cin, f"generator.layers.{j}"
            for ours, theirs, shape in (("theta", "theta", (c // 8, c, 1, 1)), ("phi", "phi", (c // 8, c, 1, 1)),
                                        ("g", "g", (c // 2, c, 1, 1)), ("o", "o_conv", (c, c // 2, 1, 1))):
                layout.append(Entry("sn_conv", f"{p}.snconv1x1_{theirs}", ("attention", i - 1, ours), shape))
            layout.append(Entry("gamma", p, ("attention", i - 1)))
            j += 1
        p, cin, cout = f"generator.layers.{j}", ch * cin, ch * cout
        mid = cin // 4
        for k, (c_bn, conv_shape) in enumerate([(cin, (mid, cin, 1, 1)), (mid, (mid, mid, 3, 3)),
                                                (mid, (mid, mid, 3, 3)), (mid, (cout, mid, 1, 1))]):
            bn = ("blocks", i, f"bn{k + 1}")
            layout += [Entry("bn_stats", f"{p}.bn_{k}", bn + ("bn",), (n, c_bn)),
                       Entry("sn_linear", f"{p}.bn_{k}.scale", bn + ("gain",), (c_bn, cond)),
                       Entry("sn_linear", f"{p}.bn_{k}.offset", bn + ("bias",), (c_bn, cond)),
                       Entry("sn_conv", f"{p}.conv_{k}", ("blocks", i, f"conv{k + 1}"), conv_shape, bias=True)]
        j += 1
    layout += [Entry("affine", "generator.bn", ("output_bn",), (ch,)),
               Entry("bn_stats", "generator.bn", ("output_bn",), (n, ch)),
               Entry("sn_conv", "generator.conv_to_rgb", ("output_conv",), (ch, ch, 3, 3), bias=True)]
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
    c.model.update(
        arch="biggan_deep", resolution=res, ch_g=ch, ch_d=ch, dim_z=_hf_get(hc, "z_dim"),
        shared_dim=_hf_get(hc, "z_dim"), num_classes=_hf_get(hc, "num_classes"),
        g_attn=(biggan_deep.g_block_resolutions(res)[pos - 1],), hier=False,
        bn_eps=float(_hf_get(hc, "eps")), sn_eps=float(_hf_get(hc, "eps")),
        sn_eval_mode="stored",       # TF Hub weights: σ = uᵀWv with the stored, already iterated u and v (pytorch-pretrained-biggan, model.py)
        rgb_channels=ch)             # the released 128-channel rgb conv, first 3 channels kept (model.py, conv_to_rgb)
    c.sample.update(latents="tfhub", bn_stats="truncation_table", truncation_table="pytorch_pretrained_biggan")
    return c


def convert_hf(state_dict: dict, hc: dict):
    """(config, generator, truncation stats) from a pytorch-pretrained-biggan state dict and its config."""
    converted = convert_layout(state_dict, hf_layout(hc), HF_KINDS,
                               f"pytorch-pretrained-biggan biggan-deep-{hc['output_dim']}")
    config = hf_model_config(hc)
    generator = _build_generator(config, converted.flat)
    truncation_stats.check_stats_match(generator, converted.stats)
    return config, generator, converted.stats


def convert_hf_files(model_path, config_path=None, out_dir=None):
    """Read pytorch_model.bin (+ config.json), convert, write an export to `out_dir`. Returns out_dir."""
    sd = load_torch_state_dict(model_path)
    if config_path is None:
        beside = os.path.join(os.path.dirname(os.path.abspath(model_path)), "config.json")
        config_path = beside if os.path.exists(beside) else None
    if config_path is not None:
        hc = _read_json(config_path, "pytorch-pretrained-biggan's config.json")
        print(f"[convert] config {config_path}: biggan-deep-{hc.get('output_dim')}", flush=True)
    else:
        hc = hf_config_from_state_dict(sd)
        print(f"[convert] no config.json given or beside {model_path}; using the released "
              f"biggan-deep-{hc['output_dim']} layout", flush=True)
    config, generator, stats = convert_hf(sd, hc)
    export.save_generator(out_dir, config, generator, truncation_stats=stats)
    print(f"[convert] wrote {out_dir}: {models.count_params(generator):,} parameters, "
          f"{len(stats) // 2} BN statistic tables ({next(iter(stats.values())).shape[0]} truncations)", flush=True)
    return out_dir


# ------------------------------------------------------------------------------- BigGAN-PyTorch (BigGAN)

def _bp_sn(kernel, eps):
    """BigGAN-PyTorch SN layer (num_svs=1): weight, u0 (1, out) and sv0 (a logging buffer, not used).
    Only u is stored: v = normalize(Wᵀu), what its next power-iteration step computes. "linear_chw": the
    first linear, whose output BigGAN-PyTorch views channel-major (C, 4, 4) while ours is (4, 4, C): its
    output rows (weight, bias and u, which indexes rows) are permuted so our reshape sees the same tensor."""
    def convert(e, read, out):
        w, u = read(f"{e.theirs}.weight"), read(f"{e.theirs}.u0")[0]
        b = read(f"{e.theirs}.bias") if e.bias else None
        if kernel == "linear_chw":
            c0 = w.shape[0] // 16
            to_hwc = np.arange(w.shape[0]).reshape(c0, 4, 4).transpose(1, 2, 0).reshape(-1)
            w, u, b = w[to_hwc], u[to_hwc], b[to_hwc]
        if kernel == "conv":
            k = _conv_kernel(w)
            out.flat[e.ours + ("kernel",)] = k
            w_mat = k.reshape(-1, k.shape[-1]).T
        else:
            out.flat[e.ours + ("kernel",)] = w.T
            w_mat = w
        out.flat[e.ours + ("sn", "u")] = u
        out.flat[e.ours + ("sn", "v")] = _v_from_u(w_mat, u, eps)
        if e.bias:
            out.flat[e.ours + ("bias",)] = b
    return Kind(_sn_keys("weight", ("u0", lambda s: (1, s[0])), None, extra=(("sv0", (1,)),)), convert)


def _bp_bn(e, read, out):
    out.flat[e.ours + ("mean",)] = read(f"{e.theirs}.stored_mean")
    out.flat[e.ours + ("var",)] = read(f"{e.theirs}.stored_var")


def _bp_output_bn(e, read, out):
    _bp_bn(e, read, out)
    out.flat[e.ours + ("scale",)] = read(f"{e.theirs}.gain")
    out.flat[e.ours + ("offset",)] = read(f"{e.theirs}.bias")


def biggan_pytorch_kinds(eps: float) -> dict[str, Kind]:
    return {
        "embed": Kind(lambda e: {f"{e.theirs}.weight": e.shape},
                      lambda e, read, out: out.flat.__setitem__(e.ours + ("embedding",), read(f"{e.theirs}.weight"))),
        "sn_linear_chw": _bp_sn("linear_chw", eps),
        "sn_linear": _bp_sn("linear", eps),
        "sn_conv": _bp_sn("conv", eps),
        "bn": Kind(lambda e: {f"{e.theirs}.stored_mean": e.shape, f"{e.theirs}.stored_var": e.shape}, _bp_bn),
        "output_bn": Kind(lambda e: {f"{e.theirs}.{k}": e.shape for k in ("gain", "bias", "stored_mean", "stored_var")},
                          _bp_output_bn),
        "gamma": Kind(lambda e: {f"{e.theirs}.gamma": ()},
                      lambda e, read, out: out.flat.__setitem__(e.ours + ("gamma",), read(f"{e.theirs}.gamma").reshape(()))),
    }


def biggan_pytorch_layout(m: ml_collections.ConfigDict) -> list[Entry]:
    """BigGAN-PyTorch's BigGAN.Generator state dict (num_G_SVs=1, G_shared), entry by entry."""
    _check_biggan_pytorch_model(m)
    ch, plan = m.ch_g, biggan_arch.G_CHANNELS[m.resolution]
    num_slots = len(plan) + 1 if m.hier else 1
    z_chunk = m.dim_z // num_slots
    cond = m.shared_dim + (z_chunk if m.hier else 0)
    layout = [Entry("embed", "shared", ("shared_embed",), (m.num_classes, m.shared_dim)),
              Entry("sn_linear_chw", "linear", ("linear",), (plan[0][0] * ch * 16, z_chunk if m.hier else m.dim_z),
                    bias=True)]
    for i, (cin, cout) in enumerate(plan):
        p, cin, cout = f"blocks.{i}.0", cin * ch, cout * ch
        for bn, c in (("bn1", cin), ("bn2", cout)):
            layout += [Entry("bn", f"{p}.{bn}", ("blocks", i, bn, "bn"), (c,)),
                       Entry("sn_linear", f"{p}.{bn}.gain", ("blocks", i, bn, "gain"), (c, cond)),
                       Entry("sn_linear", f"{p}.{bn}.bias", ("blocks", i, bn, "bias"), (c, cond))]
        for conv, shape in (("conv1", (cout, cin, 3, 3)), ("conv2", (cout, cout, 3, 3)), ("conv_sc", (cout, cin, 1, 1))):
            layout.append(Entry("sn_conv", f"{p}.{conv}", ("blocks", i, conv), shape, bias=True))
        if 8 * 2 ** i in m.g_attn:
            p = f"blocks.{i}.1"
            for name, shape in (("theta", (cout // 8, cout, 1, 1)), ("phi", (cout // 8, cout, 1, 1)),
                                ("g", (cout // 2, cout, 1, 1)), ("o", (cout, cout // 2, 1, 1))):
                layout.append(Entry("sn_conv", f"{p}.{name}", ("attention", i, name), shape))
            layout.append(Entry("gamma", p, ("attention", i)))
    c = plan[-1][1] * ch
    layout += [Entry("output_bn", "output_layer.0", ("output_bn",), (c,)),
               Entry("sn_conv", "output_layer.2", ("output_conv",), (3, c, 3, 3), bias=True)]
    return layout


def biggan_pytorch_expected_shapes(m: ml_collections.ConfigDict) -> dict:
    """Every key → shape of BigGAN-PyTorch's BigGAN.Generator state dict (num_G_SVs=1, G_shared)."""
    return expected_shapes(biggan_pytorch_layout(m), biggan_pytorch_kinds(m.sn_eps))


def _check_biggan_pytorch_model(m):
    if m.arch != "biggan":
        raise ConversionError(f"model.arch={m.arch!r}: the biggan-pytorch converter maps BigGAN-PyTorch's BigGAN "
                              f"G (arch 'biggan'); for BigGAN-deep released weights use `convert hf`")
    if not m.shared:
        raise ConversionError("model.shared=False: BigGAN-PyTorch's non-shared G has no z conditioning in its "
                              "BNs and is not supported; the released models use the shared embedding")
    biggan_arch.check_resolution(m.resolution)
    plan = biggan_arch.G_CHANNELS[m.resolution]
    if m.hier and m.dim_z % (len(plan) + 1):
        raise ConversionError(f"model.dim_z={m.dim_z} does not split into {len(plan) + 1} skip-z chunks")


def biggan_pytorch_config(config_spec=None, *, bn_eps=1e-5, sn_eps=1e-6) -> ml_collections.ConfigDict:
    """Our config for a BigGAN-PyTorch G: a configs/*.py file (path[:arg]), a JSON file (a full config with a
    'model' section, or just config.model keys), or None for the defaults (the released 128² model).
    BigGAN-PyTorch evaluates SN by one power step from the stored u ('iterate'); its scripts use BN eps
    1e-5 and SN eps 1e-6 (their train_fns/launch scripts), recorded here."""
    if config_spec is None:
        c = cfg.base_config()
    elif config_spec.split(":")[0].endswith(".py"):
        c = cfg.load_config_file(config_spec)
    else:
        data = _read_json(config_spec, "a configs/*.py file or a JSON file of config.model keys")
        c = cfg.base_config()
        model = data.get("model", data) if isinstance(data, dict) else None
        if not isinstance(model, dict):
            raise ConversionError(f"--config {config_spec}: expected a JSON object of config.model keys")
        cfg.check_keys(ml_collections.ConfigDict(model), c.model, prefix="model.")
        c.model.update(model)
    c.model.update(sn_eval_mode="iterate", bn_eps=float(bn_eps), sn_eps=float(sn_eps), rgb_channels=3)
    c.sample.bn_stats = "stored"  # the stored_mean/stored_var its eval mode (G_ema sampling) uses
    c.model.g_attn = tuple(c.model.g_attn)
    _check_biggan_pytorch_model(c.model)
    return c


def convert_biggan_pytorch(state_dict: dict, config: ml_collections.ConfigDict):
    """(config, generator) from a BigGAN-PyTorch BigGAN G state dict; its stored BN statistics are used."""
    m = config.model
    converted = convert_layout(state_dict, biggan_pytorch_layout(m), biggan_pytorch_kinds(m.sn_eps),
                               f"BigGAN-PyTorch BigGAN G ({m.resolution}², ch {m.ch_g}, dim_z {m.dim_z}, "
                               f"attention {tuple(m.g_attn)})")
    return config, _build_generator(config, converted.flat)


def convert_biggan_pytorch_file(pth_path, config_spec=None, out_dir=None, *, bn_eps=1e-5, sn_eps=1e-6):
    config = biggan_pytorch_config(config_spec, bn_eps=bn_eps, sn_eps=sn_eps)
    sd = load_torch_state_dict(pth_path)
    config, generator = convert_biggan_pytorch(sd, config)
    export.save_generator(out_dir, config, generator)
    print(f"[convert] wrote {out_dir}: {models.count_params(generator):,} parameters "
          f"(BigGAN {config.model.resolution}², ch {config.model.ch_g}; stored BN statistics)", flush=True)
    return out_dir


# --------------------------------------------------------------------------------- TF Hub (TF1 modules)
# deepmind/biggan-{128,256,512}/2 ("biggan") and deepmind/biggan-deep-{128,256,512}/1 ("biggan_deep"). Names:
# BigGAN-PyTorch's TFHub/converter.py (non-deep) and pytorch-pretrained-biggan 0.1.1's convert_tf_to_pytorch.py
# (deep). Checkpoint keys carry no `module/` prefix and no `:0` (those come from tf.global_variables()).

TFHUB_EMA = {"biggan": "/ema_b999900", "biggan_deep": "/ema_0.9999"}
TFHUB_BLOCKS = {"biggan": {len(v): k for k, v in biggan_arch.G_CHANNELS.items() if k >= 128},
                "biggan_deep": {len(v): k for k, v in biggan_deep.G_BLOCKS.items() if k >= 128}}
# Non-deep: attention after G block 3/4/3 (BigGAN-PyTorch TFHub/converter.py convert_from_v1, attention_blocknum),
# i.e. at 64²/128²/64²; deep: before list position 8 of the layout (pytorch-pretrained-biggan configs).
TFHUB_ATTENTION = {128: 64, 256: 128, 512: 64}
# Per-truncation statistic tables, rows per BN: deep t = k/50, k = 0..50 (pytorch-pretrained-biggan, n_stats);
# non-deep t = 0.02·(k+1), k = 0..49 (ivclab/BigGAN-Generator-Pretrained-Pytorch, src/batch_normalization.py).
TFHUB_STAT_ROWS = {"biggan_deep": 51, "biggan": 50}


def _tfhub_vector(name):
    """Public converters squeeze these (u vectors, biases, BN affines, attention gamma): any shape of the
    right size is accepted."""
    leaf = name.rsplit("/", 2)
    return (leaf[-1] in ("u0", "u1") or leaf[-2] in ("b", "gamma", "beta", "offset", "scale")
            or name.endswith(("/gamma", "/beta")))


def tfhub_family(variables: dict) -> tuple[str, int]:
    """(family, resolution) from the variable names; refuses anything that is not one of the six modules."""
    if "Generator/G_Z/G_linear/u0" in variables:
        family = "biggan"
    elif "Generator/GenZ/G_linear/u0" in variables:
        family = "biggan_deep"
    else:
        raise ConversionError(f"no Generator/G_Z/G_linear (BigGAN) or Generator/GenZ/G_linear (BigGAN-deep) "
                              f"variables among the module's {len(variables)} (first: {sorted(variables)[:5]}); "
                              f"expected a deepmind/biggan-* or biggan-deep-* TF Hub module")
    blocks = {k.split("/")[1] for k in variables if k.startswith("Generator/GBlock")}
    if len(blocks) not in TFHUB_BLOCKS[family]:
        raise ConversionError(f"{len(blocks)} Generator/GBlock scopes: the released {family} modules have "
                              f"{sorted(TFHUB_BLOCKS[family])} (resolutions {sorted(TFHUB_BLOCKS[family].values())})")
    return family, TFHUB_BLOCKS[family][len(blocks)]


def tfhub_model_config(variables: dict) -> ml_collections.ConfigDict:
    """Our config for a TF Hub module: family and resolution from the names, widths from the shapes."""
    family, res = tfhub_family(variables)
    ema = TFHUB_EMA[family]
    embed = variables.get("linear/w" + ema)
    if embed is None or embed.ndim != 2:
        raise ConversionError(f"linear/w{ema} (the class embedding, (num_classes, dim)) is missing or not 2-D")
    num_classes, shared_dim = embed.shape
    if family == "biggan_deep":
        linear = variables.get("Generator/GenZ/G_linear/w" + ema)
        if linear is None or linear.ndim != 2 or linear.shape[1] % (4 * 4 * 16):
            raise ConversionError(f"Generator/GenZ/G_linear/w{ema} is missing or not (2·z_dim, 4·4·16·ch)")
        hc = dict(HF_DEFAULTS, output_dim=res, layers=[list(b) for b in biggan_deep.G_BLOCKS[res]],
                  channel_width=linear.shape[1] // 256, z_dim=linear.shape[0] // 2, class_embed_dim=shared_dim,
                  num_classes=num_classes, n_stats=TFHUB_STAT_ROWS[family])
        config = hf_model_config(hc)
    else:
        linear = variables.get("Generator/G_Z/G_linear/w" + ema)
        plan = biggan_arch.G_CHANNELS[res]
        if linear is None or linear.ndim != 2 or linear.shape[1] % (4 * 4 * plan[0][0]):
            raise ConversionError(f"Generator/G_Z/G_linear/w{ema} is missing or not (z_chunk, 4·4·16·ch)")
        config = cfg.base_config()
        config.model.update(
            arch="biggan", resolution=res, ch_g=linear.shape[1] // (16 * plan[0][0]), dim_z=linear.shape[0] * (len(plan) + 1),
            shared_dim=shared_dim, num_classes=num_classes, hier=True, shared=True,
            g_attn=(TFHUB_ATTENTION[res],), bn_eps=1e-4, sn_eps=1e-4,
            sn_eval_mode="stored",  # u, v prepared at conversion by one power step from u0 (below)
            rgb_channels=3)
        config.model.ch_d = config.model.ch_g
    config.sample.update(latents="tfhub", bn_stats="truncation_table",
                         truncation_table="pytorch_pretrained_biggan" if family == "biggan_deep" else "tfhub_biggan")
    return config


def _tfhub_sn(e, read, out, eps, cond_swap=0):
    """A TF SN layer: w (in, out) or HWIO = our kernel layout; only u0 counts (u1, where present, is a second
    tracked singular vector). u and v are prepared as pytorch-pretrained-biggan's conversion does
    (load_tf_weights_in_biggan): v = normalize(Wᵀu0), u = normalize(Wv); evaluation then uses σ = uᵀWv
    ('stored'), which equals BigGAN-PyTorch's one power step from u0 at evaluation.
    `cond_swap`: non-deep cBN projections take [z_chunk, embed] (TF Hub) while our BigGAN G concatenates
    [embed, z_chunk] (BigGAN-PyTorch): their input rows are rotated (BigGAN-PyTorch convert_from_v1 does the same)."""
    w = read(f"{e.theirs}/w{e.ema}")
    if cond_swap:
        w = np.concatenate([w[cond_swap:], w[:cond_swap]], axis=0)
    out.flat[e.ours + ("kernel",)] = w
    w_mat = w.reshape(-1, w.shape[-1]).T.astype(np.float64)
    u0 = read(f"{e.theirs}/u0").reshape(-1).astype(np.float64)
    v = _normalize(w_mat.T @ u0, eps)
    out.flat[e.ours + ("sn", "u")] = _normalize(w_mat @ v, eps).astype(np.float32)
    out.flat[e.ours + ("sn", "v")] = v.astype(np.float32)
    if e.bias:
        out.flat[e.ours + ("bias",)] = read(f"{e.theirs}/b{e.ema}").reshape(-1)


@dataclasses.dataclass(frozen=True)
class TfEntry(Entry):
    ema: str = ""
    extra: tuple = ()        # names of known variables the conversion does not read (u1, BN accumulators)
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
        return Kind(lambda e: {f"{e.theirs}/{scale}{e.ema}": e.shape, f"{e.theirs}/{offset}{e.ema}": e.shape}, convert)

    return {
        "embed": Kind(lambda e: {f"{e.theirs}/w{e.ema}": e.shape},
                      lambda e, read, out: out.flat.__setitem__(e.ours + ("embedding",), read(f"{e.theirs}/w{e.ema}"))),
        "sn": Kind(sn_keys, lambda e, read, out: _tfhub_sn(e, read, out, eps, e.cond_swap)),
        "gamma": Kind(lambda e: {f"{e.theirs}/gamma{e.ema}": ()},
                      lambda e, read, out: out.flat.__setitem__(e.ours + ("gamma",), read(f"{e.theirs}/gamma{e.ema}"))),
        "affine_gamma_beta": affine("gamma", "beta"),
        "affine_scale_offset": affine("scale", "offset"),
        "bn": Kind(lambda e: {}, lambda e, read, out: None),  # statistics come from the graph (tfhub_stat_tables)
    }


def tfhub_layout(config) -> list[TfEntry]:
    """Every variable a TF Hub module of this config holds that the conversion reads, entry by entry in
    forward order (the order of the BN statistic tables)."""
    m = config.model
    family = m.arch
    ema, ch = TFHUB_EMA[family], m.ch_g
    E = functools.partial(TfEntry, ema=ema)

    def sn(theirs, ours, shape, bias=False, cond_swap=0):
        extra = (f"{theirs}/u1",) if family == "biggan" else ()
        return E("sn", theirs, ours, shape, bias, extra=extra, cond_swap=cond_swap)

    def attention(ours, c):
        return [sn(f"Generator/attention/{name}", ours + (mine,), shape) for name, mine, shape in
                (("theta", "theta", (1, 1, c, c // 8)), ("phi", "phi", (1, 1, c, c // 8)),
                 ("g", "g", (1, 1, c, c // 2)), ("o_conv", "o", (1, 1, c // 2, c)))] + [
            E("gamma", "Generator/attention", ours)]

    def scope(i):
        return "Generator/GBlock" + (f"_{i}" if i else "")

    layout = [E("embed", "linear", ("shared_embed",), (m.num_classes, m.shared_dim))]
    if family == "biggan":
        plan = biggan_arch.G_CHANNELS[m.resolution]
        chunk = m.dim_z // (len(plan) + 1)
        cond = chunk + m.shared_dim
        layout.append(sn("Generator/G_Z/G_linear", ("linear",), (chunk, 4 * 4 * plan[0][0] * ch), bias=True))
        for i, (cin, cout) in enumerate(plan):
            p, cin, cout = scope(i), cin * ch, cout * ch
            for hyper, cross, bn, c in (("HyperBN", "CrossReplicaBN", "bn1", cin),
                                        ("HyperBN_1", "CrossReplicaBN_1", "bn2", cout)):
                accumulators = tuple(f"{p}/{cross}/{k}" for k in ("accumulated_mean", "accumulated_var",
                                                                  "accumulation_counter"))
                layout += [E("bn", f"{p}/{cross}", ("blocks", i, bn, "bn"), (c,), extra=accumulators),
                           sn(f"{p}/{hyper}/gamma", ("blocks", i, bn, "gain"), (cond, c), cond_swap=chunk),
                           sn(f"{p}/{hyper}/beta", ("blocks", i, bn, "bias"), (cond, c), cond_swap=chunk)]
            for theirs, ours, k, c_in in (("conv0", "conv1", 3, cin), ("conv1", "conv2", 3, cout),
                                          ("conv_sc", "conv_sc", 1, cin)):
                layout.append(sn(f"{p}/{theirs}", ("blocks", i, ours), (k, k, c_in, cout), bias=True))
            if 8 * 2 ** i in m.g_attn:
                layout += attention(("attention", i), cout)
        c = plan[-1][1] * ch
        layout += [E("affine_gamma_beta", "Generator/ScaledCrossReplicaBN", ("output_bn",), (c,)),
                   E("bn", "Generator/ScaledCrossReplicaBNbn", ("output_bn",), (c,),
                     extra=tuple(f"Generator/ScaledCrossReplicaBNbn/{k}" for k in
                                 ("accumulated_mean", "accumulated_var", "accumulation_counter"))),
                   sn("Generator/conv_2d", ("output_conv",), (3, 3, c, 3), bias=True)]
        return layout
    plan, cond = biggan_deep.G_BLOCKS[m.resolution], 2 * m.dim_z
    position = 1 + biggan_deep.g_block_resolutions(m.resolution).index(m.g_attn[0])
    layout.append(sn("Generator/GenZ/G_linear", ("linear",), (cond, 4 * 4 * 16 * ch), bias=True))
    for i, (_, cin, cout) in enumerate(plan):
        if i == position:  # attention before list position `position` = after our block position − 1
            layout += attention(("attention", i - 1), cin * ch)
        p, cin, cout = scope(i), cin * ch, cout * ch
        mid = cin // biggan_deep.BOTTLENECK
        for k, (c_bn, conv) in enumerate([(cin, (1, 1, cin, mid)), (mid, (3, 3, mid, mid)), (mid, (3, 3, mid, mid)),
                                          (mid, (1, 1, mid, cout))]):
            b, bn = f"{p}/BatchNorm" + (f"_{k}" if k else ""), ("blocks", i, f"bn{k + 1}")
            layout += [E("bn", b, bn + ("bn",), (c_bn,)),
                       sn(f"{b}/scale", bn + ("gain",), (cond, c_bn)),
                       sn(f"{b}/offset", bn + ("bias",), (cond, c_bn)),
                       sn(f"{p}/conv{k}", ("blocks", i, f"conv{k + 1}"), conv, bias=True)]
    layout += [E("affine_scale_offset", "Generator/BatchNorm", ("output_bn",), (ch,)),
               E("bn", "Generator/BatchNorm", ("output_bn",), (ch,)),
               sn("Generator/conv_to_rgb", ("output_conv",), (3, 3, ch, ch), bias=True)]
    return layout


def tfhub_stat_tables(constants: dict, layout: list[TfEntry], rows: int) -> list[tuple]:
    """The per-truncation (mean, var) tables of every BN, found by shape and order among the graph's
    constants: float (rows, C) tables, in graph order, a mean then a var per BN in forward order. For the
    deep modules these are the nodes pytorch-pretrained-biggan's extract_batch_norm_stats names
    (stack_{10i+1}, stack_{10i+3}, stack_{10i+6}, stack_{10i+8}); no public code names the non-deep ones."""
    channels = [e.shape[0] for e in layout if e.kind == "bn"]
    tables = [(name, v) for name, v in constants.items()
              if v.ndim == 2 and v.shape[0] == rows and np.issubdtype(v.dtype, np.floating)]
    found = [v.shape[1] for _, v in tables]
    expected = [c for c in channels for _ in (0, 1)]
    if found != expected:
        raise ConversionError(
            f"the module's saved_model.pb does not hold the per-truncation BN statistics this converter expects "
            f"({len(expected)} float constant tables of {rows} rows, a mean and a var for each of the "
            f"{len(channels)} batch norms in forward order; found {len(found)}"
            f"{' with other channel counts' if len(found) == len(expected) else ''}); convert with "
            f"--standing_stats to sample with standing statistics instead (paper appendix C.1)")
    pairs = [(tables[2 * i][1], tables[2 * i + 1][1]) for i in range(len(channels))]
    if any((var < 0).any() for _, var in pairs):
        raise ConversionError("a variance table of the module's graph has negative entries: the statistics "
                              "are not in mean/var order; convert with --standing_stats instead")
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
    known |= {k.rsplit("/", 1)[0] for k in expected if k.endswith(TFHUB_EMA[family])}  # non-EMA weights: unused
    unexpected = sorted(set(variables) - known)
    normalised = {k: (v.reshape(expected[k]) if k in expected and _tfhub_vector(k) and v.size == math.prod(expected[k])
                      else v) for k, v in variables.items() if k in expected}
    what = f"TF Hub {family.replace('_', '-')}-{m.resolution} (ch {m.ch_g}, dim_z {m.dim_z})"
    if unexpected:
        raise ConversionError(f"the module holds {len(unexpected)} variable(s) that {what} does not have: "
                              f"{_listing(unexpected)}; expected an unmodified deepmind/biggan(-deep) module")
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
        for e, (mean, var) in zip(bns, tfhub_stat_tables(constants, layout, TFHUB_STAT_ROWS[family])):
            key = "/".join(map(str, e.ours))
            stats[f"{key}/mean"], stats[f"{key}/var"] = mean.astype(np.float32), var.astype(np.float32)
            converted.flat[e.ours + ("mean",)] = stats[f"{key}/mean"][-1]  # t = 1 row; sampling selects per t
            converted.flat[e.ours + ("var",)] = stats[f"{key}/var"][-1]
    generator = _build_generator(config, converted.flat)
    if stats is not None:
        truncation_stats.check_stats_match(generator, stats)
    return config, generator, stats


def read_tfhub_module(module_dir, *, with_constants=True):
    """(variables, graph constants or None) of an unpacked TF Hub module directory, without TensorFlow."""
    if not os.path.isdir(module_dir):
        raise FileNotFoundError(f"{module_dir} is not a directory; expected an unpacked TF Hub module (saved_model.pb, "
                                f"tfhub_module.pb, variables/) — extract the downloaded .tar.gz first")
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
    kind = (f"{len(stats) // 2} per-truncation BN statistic tables" if stats else
            "no per-truncation statistics: sampling accumulates standing statistics")
    print(f"[convert] wrote {out_dir}: TF Hub {m.arch.replace('_', '-')}-{m.resolution}, "
          f"{models.count_params(generator):,} parameters, {kind}", flush=True)
    return out_dir


# ------------------------------------------------------------------------------------------------- CLI

def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m biggan.convert", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="source", required=True)
    hf = sub.add_parser("hf", help="pytorch-pretrained-biggan 0.1.1 BigGAN-deep pytorch_model.bin")
    hf.add_argument("model_bin")
    hf.add_argument("config_json", nargs="?", default=None)
    hf.add_argument("--out", required=True, help="export directory to create")
    bp = sub.add_parser("biggan-pytorch", help="BigGAN-PyTorch BigGAN G / G_ema state dict (.pth)")
    bp.add_argument("pth")
    bp.add_argument("--config", default=None, help="configs/*.py[:arg] or a JSON of config.model keys "
                                                   "(default: the released 128² model)")
    bp.add_argument("--out", required=True)
    bp.add_argument("--bn-eps", type=float, default=1e-5, help="BN eps of the training run (its scripts: 1e-5)")
    bp.add_argument("--sn-eps", type=float, default=1e-6, help="SN eps of the training run (its scripts: 1e-6)")
    th = sub.add_parser("tfhub", help="an unpacked TF Hub module: deepmind/biggan-{128,256,512}/2 or "
                                      "biggan-deep-{128,256,512}/1")
    th.add_argument("module_dir")
    th.add_argument("--out", required=True)
    th.add_argument("--standing_stats", action="store_true",
                    help="do not read the per-truncation BN statistics from saved_model.pb; sampling then "
                         "accumulates standing statistics (paper appendix C.1)")
    args = parser.parse_args(argv)
    try:
        storage.check_bucket(args.out)
    except storage.StorageError as e:
        parser.exit(2, f"error: {e}\n")
    if export.is_exported_generator(args.out):
        parser.exit(2, f"error: --out {args.out} already holds an exported generator; choose a new directory\n")
    try:
        if args.source == "hf":
            convert_hf_files(args.model_bin, args.config_json, args.out)
        elif args.source == "tfhub":
            convert_tfhub_module(args.module_dir, args.out, standing_stats=args.standing_stats)
        else:
            convert_biggan_pytorch_file(args.pth, args.config, args.out, bn_eps=args.bn_eps, sn_eps=args.sn_eps)
    except (ConversionError, FileNotFoundError, FileExistsError, KeyError, ValueError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        parser.exit(2, f"error: {message}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
