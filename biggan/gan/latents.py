"""Latent distributions: the truncation trick (paper §3.1) and the paper's appendix-E latents.

Every sampler is `f(rng, shape, ..., dtype=float32) -> Array` and jit-able (keyword options are
static Python values, except `step` of variance annealing, which may be a traced int).
`sample_latent(name, rng, shape, **kw)` dispatches by name; `LATENT_NAMES` lists them.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


# --------------------------------------------------------------------------- truncation (paper §3.1)


def truncated_normal(
    rng: Array, shape: tuple[int, ...], threshold: float | None, dtype=jnp.float32
) -> Array:
    """N(0, 1) restricted to |z| ≤ threshold; `threshold=None` (or inf) is the plain normal.

    The paper (§3.1) re-samples values above the threshold; it does not clip.
    `jax.random.truncated_normal` samples by inverse CDF (u ~ U[Φ(−t), Φ(t)], z = Φ⁻¹(u)), which has
    exactly the density of rejection re-sampling, φ(z)/(Φ(t) − Φ(−t)) on [−t, t] — no mass piles up
    at ±t as clipping would do. Verified by a KS test against scipy.stats.truncnorm in
    tests/gan/test_latents.py for t = 2, 1, 0.5, 0.04.
    """
    if threshold is None or math.isinf(threshold):
        return jax.random.normal(rng, shape, dtype)
    if not threshold > 0:
        raise ValueError(
            f"truncation threshold must be > 0, got {threshold}; use None for no truncation."
        )
    return jax.random.truncated_normal(rng, -threshold, threshold, shape, dtype)


def tfhub_truncated_latent(
    rng: Array, shape: tuple[int, ...], truncation: float, dtype=jnp.float32
) -> Array:
    """TF Hub / pytorch-pretrained-biggan convention (pytorch_pretrained_biggan/utils.py,
    truncated_noise_sample): z = t · truncnorm(−2, 2), 0 < t ≤ 1. The same t must also be given to
    those generators (it selects their BN statistics)."""
    if not 0.0 < truncation <= 1.0:
        raise ValueError(f"TF Hub truncation must be in (0, 1], got {truncation}.")
    return truncation * jax.random.truncated_normal(rng, -2.0, 2.0, shape, dtype)


# --------------------------------------------------------------------------- appendix E latents


def normal(rng, shape, dtype=jnp.float32):
    """N(0, I), the default."""
    return jax.random.normal(rng, shape, dtype)


def uniform(rng, shape, dtype=jnp.float32):
    """U[−1, 1]."""
    return jax.random.uniform(rng, shape, dtype, -1.0, 1.0)


def bernoulli01(rng, shape, dtype=jnp.float32):
    """Bernoulli {0, 1}, p = 1/2."""
    return jax.random.bernoulli(rng, 0.5, shape).astype(dtype)


def bernoulli_pm1(rng, shape, dtype=jnp.float32):
    """Bernoulli {−1, 1} (random signs), p = 1/2."""
    return 2.0 * jax.random.bernoulli(rng, 0.5, shape).astype(dtype) - 1.0


def censored_normal(rng, shape, dtype=jnp.float32):
    """max(N(0, I), 0)."""
    return jax.nn.relu(jax.random.normal(rng, shape, dtype))


def categorical3(rng, shape, dtype=jnp.float32):
    """Independent categorical over {−1, 0, 1}, equal probabilities."""
    return jax.random.randint(rng, shape, -1, 2).astype(dtype)


def normal_times_bernoulli(rng, shape, dtype=jnp.float32):
    """N(0, I) ⊙ Bernoulli {0, 1}: each coordinate is zeroed with probability 1/2."""
    k_n, k_b = jax.random.split(rng)
    return jax.random.normal(k_n, shape, dtype) * jax.random.bernoulli(k_b, 0.5, shape).astype(
        dtype
    )


def normal_bernoulli_half(rng, shape, dtype=jnp.float32):
    """Concatenation along the last axis: the first ⌈d/2⌉ coordinates N(0, 1), the rest Bernoulli
    {0, 1}."""
    d = shape[-1]
    d_normal = (d + 1) // 2
    k_n, k_b = jax.random.split(rng)
    z_n = jax.random.normal(k_n, tuple(shape[:-1]) + (d_normal,), dtype)
    z_b = jax.random.bernoulli(k_b, 0.5, tuple(shape[:-1]) + (d - d_normal,)).astype(dtype)
    return jnp.concatenate([z_n, z_b], axis=-1)


def annealed_sigma(
    step, anneal_steps: int, sigma_start: float = 2.0, sigma_end: float = 1.0
) -> Array:
    """σ(step): linear from sigma_start at step 0 to sigma_end at anneal_steps, constant after. (The
    paper compared piecewise schedules from 2 to 1 without giving one; linear is our choice.)"""
    if anneal_steps <= 0:
        raise ValueError(f"anneal_steps must be > 0, got {anneal_steps}.")
    frac = jnp.clip(jnp.asarray(step, jnp.float32) / anneal_steps, 0.0, 1.0)
    return sigma_start + (sigma_end - sigma_start) * frac


def variance_annealing(
    rng,
    shape,
    step,
    anneal_steps: int,
    sigma_start: float = 2.0,
    sigma_end: float = 1.0,
    dtype=jnp.float32,
):
    """N(0, σ(step)² I) with σ annealed from 2 to 1 (σ is a standard deviation; the paper writes
    N(0, σI))."""
    sigma = annealed_sigma(step, anneal_steps, sigma_start, sigma_end)
    return (sigma * jax.random.normal(rng, shape, jnp.float32)).astype(dtype)


def per_sample_variance(
    rng, shape, sigma_low: float = 0.5, sigma_high: float = 2.0, dtype=jnp.float32
):
    """z_i ~ N(0, σ_i² I), σ_i ~ U[σ_l, σ_h] drawn once per sample (axis 0); σ is a standard
    deviation."""
    if not 0 <= sigma_low <= sigma_high:
        raise ValueError(f"need 0 ≤ sigma_low ≤ sigma_high, got ({sigma_low}, {sigma_high}).")
    k_s, k_n = jax.random.split(rng)
    sigma = jax.random.uniform(
        k_s, (shape[0],) + (1,) * (len(shape) - 1), jnp.float32, sigma_low, sigma_high
    )
    return (sigma * jax.random.normal(k_n, shape, jnp.float32)).astype(dtype)


# --------------------------------------------------------------------------- registry

_SAMPLERS: dict[str, Callable[..., Array]] = {
    "normal": normal,
    "uniform": uniform,
    "bernoulli01": bernoulli01,
    "bernoulli_pm1": bernoulli_pm1,
    "censored_normal": censored_normal,
    "categorical3": categorical3,
    "normal_times_bernoulli": normal_times_bernoulli,
    "normal_bernoulli_half": normal_bernoulli_half,
    "variance_annealing": variance_annealing,
    "per_sample_variance": per_sample_variance,
    "truncated_normal": truncated_normal,
    "tfhub_truncated": tfhub_truncated_latent,
}
LATENT_NAMES = tuple(_SAMPLERS)


def sample_latent(name: str, rng: Array, shape: tuple[int, ...], **kw) -> Array:
    """Draw latents from the named distribution, e.g. sample_latent('variance_annealing', key, (B,
    120), step=s, anneal_steps=100_000) or sample_latent('truncated_normal', key, (B, 120),
    threshold=0.5)."""
    try:
        sampler = _SAMPLERS[name]
    except KeyError:
        raise ValueError(
            f"unknown latent distribution {name!r}; valid names: {', '.join(LATENT_NAMES)}."
        ) from None
    return sampler(rng, tuple(shape), **kw)
