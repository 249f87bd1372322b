"""What every converter shares: reading state dicts, the layout tables (`Entry`, `Kind`), the checks
of keys and shapes against them, and the generator they fill."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable

import jax
import numpy as np
from flax import nnx, traverse_util

from biggan.models import factory as models


class ConversionError(ValueError):
    """The file or its config does not describe a model this converter knows."""


def load_torch_state_dict(path) -> dict:
    """{key: float32 numpy array} from a torch.save'd state dict, read safely (weights_only)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} not found; expected a PyTorch state dict file (pytorch_model.bin / G_ema.pth)"
        )
    import torch  # lazy: torch is only needed to read PyTorch files (never by the core library)

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for truncated/corrupt/non-zip files
        raise ConversionError(
            f"{path} could not be read as a PyTorch state dict ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); expected the file written by "
            f"torch.save(model.state_dict()) — re-download it if it is truncated"
        ) from e
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConversionError(
            f"{path} holds a {type(obj).__name__}, not a state dict of tensors; expected the "
            f"file written by torch.save(model.state_dict())"
        )
    return {k: v.detach().to(torch.float32).numpy() for k, v in obj.items()}


def read_json(path, expected: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ConversionError(
            f"{path} is not a readable JSON file ({e}); expected {expected}"
        ) from e


def listing(items, limit=4) -> str:
    """'a, b, c, d … and 7 more': a bounded list for one-line messages."""
    items = list(items)
    shown = ", ".join(map(str, items[:limit]))
    return shown + (f" … and {len(items) - limit} more" if len(items) > limit else "")


def check_state_dict(state_dict: dict, expected: dict, what: str):
    """Raise (one line) naming the missing keys, unexpected keys and wrong shapes; `expected` maps
    key → shape."""
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = [
        f"{k}: {tuple(state_dict[k].shape)}, expected {tuple(expected[k])}"
        for k in sorted(expected)
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k])
    ]
    if missing or unexpected or wrong:
        parts = [
            f"{title} ({len(items)}): {listing(items)}"
            for title, items in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("wrong shapes", wrong),
            )
            if items
        ]
        hint = other_format_hint(state_dict) or (
            "is the config the one that belongs to this file? a different "
            "resolution or channel width changes the key set and shapes"
        )
        raise ConversionError(f"the weights do not match {what}: {'; '.join(parts)} — {hint}")


def other_format_hint(state_dict) -> str:
    """The converter to use when the keys are another known format's."""
    keys = set(state_dict)
    if any(k.startswith("generator.layers.") for k in keys):
        return "these are pytorch-pretrained-biggan (BigGAN-deep) weights: use `python -m biggan.convert hf`"
    if any(k.startswith("blocks.") and ".0.bn1." in k for k in keys) and "shared.weight" in keys:
        return (
            "these are BigGAN-PyTorch BigGAN weights: use `python -m biggan.convert biggan-pytorch`"
        )
    return ""


def normalize(x, eps):
    return x / max(float(np.linalg.norm(x)), eps)


def conv_kernel(w):
    """PyTorch OIHW → our HWIO."""
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def conv_v(v, w_shape):
    """Permute a PyTorch conv SN v (in, kh, kw order) to our (kh, kw, in) column order, so that
    σ = uᵀ W v is unchanged with our W view (layers.SNConv)."""
    out_ch, in_ch, kh, kw = w_shape
    return np.ascontiguousarray(v.reshape(in_ch, kh, kw).transpose(1, 2, 0).reshape(-1))


def v_from_u(w_mat, u, eps):
    """v = normalize(Wᵀu): the value the next power-iteration step computes (used for 'iterate'
    mode, where the stored v is never read but is kept consistent)."""
    return normalize(w_mat.T @ u, eps).astype(np.float32)


# Each format describes its checkpoint once, as a list of `Entry` rows (one per module); each
# entry's kind says which state-dict keys it owns (with their shapes) and how they become our
# leaves. The expected key set (checked before anything is converted) and the mapping are both read
# off that one table.


@dataclasses.dataclass(frozen=True)
class Entry:
    kind: str  # a key of the format's kind table
    theirs: str  # state-dict key prefix
    ours: tuple = ()  # path of the module in our generator
    shape: tuple = ()  # their weight shape (out, in) / OIHW; BN: channels
    bias: bool = False  # the layer has a bias


@dataclasses.dataclass(frozen=True)
class Kind:
    keys: Callable  # entry -> {state-dict key: shape}
    convert: Callable  # (entry, read(key) -> array, converted: Converted) -> None


@dataclasses.dataclass
class Converted:
    flat: dict = dataclasses.field(default_factory=dict)  # {our leaf path: array}
    stats: dict = dataclasses.field(default_factory=dict)  # {'<bn path>/mean'|'/var': (rows, C)}


def expected_shapes(layout: list[Entry], kinds: dict[str, Kind]) -> dict:
    """{state-dict key: shape} that `layout` implies."""
    shapes = {}
    for entry in layout:
        shapes.update(kinds[entry.kind].keys(entry))
    return shapes


def convert_layout(
    state_dict: dict, layout: list[Entry], kinds: dict[str, Kind], what: str
) -> Converted:
    """Check `state_dict` against the layout's keys and shapes, then map every entry."""
    check_state_dict(state_dict, expected_shapes(layout, kinds), what)
    converted = Converted()
    for entry in layout:
        kinds[entry.kind].convert(entry, state_dict.__getitem__, converted)
    return converted


def sn_keys(weight, u_shape, v_shape, extra=()):
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


def build_generator(config, flat: dict):
    """Generator from `config.model` with every state leaf taken from `flat` ({path tuple:
    array})."""
    return build_module(models.abstract_generator(config.model), flat, "generator")


def build_discriminator(config, flat: dict):
    """Discriminator from `config.model` with every state leaf taken from `flat`."""
    return build_module(models.abstract_discriminator(config.model), flat, "discriminator")


def build_module(abstract: nnx.Module, flat: dict, what: str):
    """`abstract` (nnx.eval_shape's) with every state leaf taken from `flat` ({path tuple:
    array})."""
    graphdef, state = nnx.split(abstract)
    target = traverse_util.flatten_dict(nnx.to_pure_dict(state))
    # Internal consistency: the mapping must fill every leaf, with the right shape, and nothing
    # else.
    missing = sorted(map(str, set(target) - set(flat)))
    extra = sorted(map(str, set(flat) - set(target)))
    wrong = [
        f"{k}: {flat[k].shape} vs {target[k].shape}"
        for k in target
        if k in flat and tuple(flat[k].shape) != tuple(target[k].shape)
    ]
    if missing or extra or wrong:
        raise AssertionError(
            f"converter mapping does not cover the {what}: missing {missing}, "
            f"extra {extra}, wrong shapes {wrong}"
        )
    pure = traverse_util.unflatten_dict(
        {k: jax.numpy.asarray(np.asarray(v, np.float32)) for k, v in flat.items()}
    )
    nnx.replace_by_pure_dict(state, pure)
    return nnx.merge(graphdef, state)
