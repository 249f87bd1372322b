"""Differentiable image augmentations, one module for DiffAugment, ADA and consistency
regularisation.

Each operation draws per-sample parameters (`draw`) and applies them (`apply`); both are pure and
differentiable in the image, so G's gradient flows through an augmented D input. Images are NHWC in
the model's range [-1, 1]. The operations follow DiffAugment (Zhao et al. 2020,
mit-han-lab/data-efficient-gans DiffAugment_pytorch.py), written channels-last:

  brightness            x + (u − 0.5), u ~ U[0, 1) per sample
  saturation            (x − m)·2u + m, m the mean over channels
  contrast              (x − m)·(u + 0.5) + m, m the mean over H, W and channels
  translation           out[i, j] = x[i + a, j + b], integers |a| ≤ round(H/8), |b| ≤ round(W/8), zero fill
  cutout                zero a round(H/2) × round(W/2) square centred at a random pixel (clipped at the border)

and the two of consistency regularisation's T (Zhang et al. 2020, as PyTorch-StudioGAN
src/utils/cr.py):

  flip                  horizontal flip with probability 1/2
  reflect_translation   as translation with |a| ≤ ⌊H/8⌋, |b| ≤ ⌊W/8⌋ and reflection at the border

A policy is a comma-separated list of groups: "color" (brightness, saturation, contrast in this
order), "translation", "cutout", "flip", "reflect_translation". `augment(x, rng, ops, p)` applies
each operation of the policy in order; with `p` (ADA, Karras et al. 2020) each one is applied to
each sample with probability p, independently.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

POLICY_GROUPS = {
    "color": ("brightness", "saturation", "contrast"),
    "translation": ("translation",),
    "cutout": ("cutout",),
    "flip": ("flip",),
    "reflect_translation": ("reflect_translation",),
}


def parse_policy(text: str, key: str) -> tuple[str, ...]:
    """ "color,translation" → the operations in order; `key` names the config key in the error."""
    groups = [g.strip() for g in text.split(",") if g.strip()]
    unknown = [g for g in groups if g not in POLICY_GROUPS]
    if unknown or not groups:
        raise ValueError(
            f"{key}={text!r}: expected comma-separated augmentations from "
            f"{', '.join(POLICY_GROUPS)} (e.g. 'color,translation,cutout')"
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
        )
    return tuple(op for g in groups for op in POLICY_GROUPS[g])


def translation_limits(op: str, height: int, width: int) -> tuple[int, int]:
    # DiffAugment rounds 1/8 of the size (int(0.125·H + 0.5)); StudioGAN's CR truncates (int(H/8)).
    if op == "translation":
        return int(height * 0.125 + 0.5), int(width * 0.125 + 0.5)
    return int(height * 0.125), int(width * 0.125)


def cutout_size(height: int, width: int) -> tuple[int, int]:
    return int(height * 0.5 + 0.5), int(width * 0.5 + 0.5)


def draw(op: str, rng: jax.Array, n: int, height: int, width: int) -> dict[str, jax.Array]:
    """Per-sample parameters of `op` for a batch of n images of height × width."""
    if op in ("brightness", "saturation", "contrast"):
        return {"u": jax.random.uniform(rng, (n,), jnp.float32)}
    if op == "flip":
        return {"flip": jax.random.uniform(rng, (n,), jnp.float32) < 0.5}
    k_h, k_w = jax.random.split(rng)
    if op in ("translation", "reflect_translation"):
        lim_h, lim_w = translation_limits(op, height, width)
        return {
            "shift_h": jax.random.randint(k_h, (n,), -lim_h, lim_h + 1),
            "shift_w": jax.random.randint(k_w, (n,), -lim_w, lim_w + 1),
        }
    if op == "cutout":
        size_h, size_w = cutout_size(height, width)
        # Centres as in DiffAugment: 0 … H (an even-sized square may hang one row off either edge).
        return {
            "centre_h": jax.random.randint(k_h, (n,), 0, height + (1 - size_h % 2)),
            "centre_w": jax.random.randint(k_w, (n,), 0, width + (1 - size_w % 2)),
        }
    raise ValueError(
        f"unknown augmentation {op!r}; valid: {', '.join(o for g in POLICY_GROUPS.values() for o in g)}"
    )


def _per_sample(value, x):
    return value.astype(x.dtype).reshape((-1,) + (1,) * (x.ndim - 1))


def _translate(x, shift_h, shift_w, limits, mode):
    """out[i, j] = padded x at (i + shift_h, j + shift_w): pad by the limits, then slice each
    sample."""
    lim_h, lim_w = limits
    padded = jnp.pad(x, ((0, 0), (lim_h, lim_h), (lim_w, lim_w), (0, 0)), mode=mode)
    height, width, channels = x.shape[1:]

    def one(image, dh, dw):
        return jax.lax.dynamic_slice(image, (lim_h + dh, lim_w + dw, 0), (height, width, channels))

    return jax.vmap(one)(padded, shift_h, shift_w)


def apply(op: str, x: jax.Array, params: dict[str, jax.Array]) -> jax.Array:
    """`op` with the given per-sample parameters on NHWC images x."""
    if op == "brightness":
        return x + (_per_sample(params["u"], x) - 0.5)
    if op == "saturation":
        mean = jnp.mean(x, axis=3, keepdims=True)
        return (x - mean) * (_per_sample(params["u"], x) * 2) + mean
    if op == "contrast":
        mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
        return (x - mean) * (_per_sample(params["u"], x) + 0.5) + mean
    if op == "flip":
        return jnp.where(params["flip"][:, None, None, None], x[:, :, ::-1], x)
    if op in ("translation", "reflect_translation"):
        limits = translation_limits(op, x.shape[1], x.shape[2])
        mode = "constant" if op == "translation" else "reflect"
        return _translate(x, params["shift_h"], params["shift_w"], limits, mode)
    if op == "cutout":
        size_h, size_w = cutout_size(x.shape[1], x.shape[2])
        low_h = params["centre_h"][:, None] - size_h // 2  # (N, 1)
        low_w = params["centre_w"][:, None] - size_w // 2
        rows, cols = jnp.arange(x.shape[1])[None], jnp.arange(x.shape[2])[None]
        in_h = (rows >= low_h) & (rows < low_h + size_h)  # (N, H)
        in_w = (cols >= low_w) & (cols < low_w + size_w)  # (N, W)
        keep = ~(in_h[:, :, None] & in_w[:, None, :])
        return x * keep[..., None].astype(x.dtype)
    raise ValueError(f"unknown augmentation {op!r}")


def augment(x: jax.Array, rng: jax.Array, ops: tuple[str, ...], p=None) -> jax.Array:
    """Apply `ops` in order with fresh per-sample parameters; with `p`, each op to each sample with
    probability p (ADA; p ≥ 1 applies it always, as in stylegan2-ada-pytorch where p is only floored
    at 0)."""
    n, height, width = x.shape[:3]
    for index, op in enumerate(ops):
        k_params, k_gate = jax.random.split(jax.random.fold_in(rng, index))
        out = apply(op, x, draw(op, k_params, n, height, width))
        if p is None:
            x = out
        else:
            gate = jax.random.uniform(k_gate, (n,), jnp.float32) < p
            x = jnp.where(gate[:, None, None, None], out, x)
    return x
