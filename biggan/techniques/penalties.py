"""Gradient penalties on D, terms of D's loss, with their definitions:

  R1 (Mescheder et al. 2018; paper §4.2)   γ/2·E‖∇_x D(x)‖² on reals [train.r1_gamma]
  DRAGAN (Kodali et al. 2017)              around perturbed reals [train.dragan_weight]
  WGAN-GP (Gulrajani et al. 2017)          on real/fake interpolates, scored under the real label [train.gp_weight]

D is a fresh copy from the same parameters and state (its SN power iteration gives the main pass's
normalised weights; its state is dropped). Under PacGAN the penalised input is the pack. With
minibatch discrimination D's output for one sample depends on the others of its batch, so ∇_x Σ D
holds those cross terms too. With a D-input augmentation D scores T(x) and the gradient is taken
w.r.t. x (as stylegan2-ada-pytorch's R1).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from biggan.techniques.base import Technique, nonnegative

PENALTY_TAG = 3  # the three share one key, and fold 0 (DRAGAN) and 1 (WGAN-GP) into it


def penalised_d(ctx, labels):
    """x ↦ D(T(x), labels) on an already viewed batch, T the enabled augmentation."""
    return lambda x: ctx.d_viewed_fn(ctx.augment(x, ctx.rng), labels)


def _per_sample_input_grads(d_fn: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    """∇_x Σ_i D(x)_i: the per-sample input gradients when D treats samples independently
    (true for BigGAN's D, which has no batch norm; not for a D with batch statistics)."""
    out, vjp = jax.vjp(d_fn, x)
    if out.ndim != 1 or out.shape[0] != x.shape[0]:
        raise ValueError(
            f"d_fn must map a batch {x.shape} to logits of shape ({x.shape[0]},), got {out.shape}."
        )
    (g,) = vjp(jnp.ones_like(out))
    return g


def _sq_norms(g: jax.Array) -> jax.Array:
    return jnp.sum(jnp.square(g.astype(jnp.float32)).reshape(g.shape[0], -1), axis=1)


def r1_penalty(
    d_fn: Callable[[jax.Array], jax.Array], x_real: jax.Array, gamma: float
) -> jax.Array:
    """R1 zero-centred gradient penalty γ/2 · E_x ‖∇_x D(x)‖² on real data (Mescheder et al. 2018;
    the paper (§4.2) sweeps γ 1e-3…10). `d_fn(x) -> (B,)` closes over D's params and labels;
    differentiate the result w.r.t. D's params (double backprop works under jax.grad)."""
    return 0.5 * gamma * jnp.mean(_sq_norms(_per_sample_input_grads(d_fn, x_real)))


def gradient_norm_penalty(
    d_fn: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    weight: float = 10.0,
    center: float = 1.0,
    eps: float = 1e-12,
) -> jax.Array:
    """weight · E (‖∇_x D(x)‖ − center)² at the given points (shared by WGAN-GP and DRAGAN).
    `eps` inside the sqrt keeps the gradient finite where ∇D = 0."""
    norms = jnp.sqrt(_sq_norms(_per_sample_input_grads(d_fn, x)) + eps)
    return weight * jnp.mean((norms - center) ** 2)


def _per_sample_uniform(rng: jax.Array, x: jax.Array) -> jax.Array:
    return jax.random.uniform(rng, (x.shape[0],) + (1,) * (x.ndim - 1), jnp.float32)


def wgan_gp_interpolates(rng: jax.Array, x_real: jax.Array, x_fake: jax.Array) -> jax.Array:
    """x̂ = ε x_real + (1 − ε) x_fake with ε ~ U[0, 1] per sample (Gulrajani et al. 2017)."""
    if x_real.shape != x_fake.shape:
        raise ValueError(
            f"WGAN-GP needs real and fake batches of one shape, got {x_real.shape} and {x_fake.shape}."
        )
    eps = _per_sample_uniform(rng, x_real)
    return (eps * x_real + (1.0 - eps) * x_fake).astype(x_real.dtype)


def wgan_gp_penalty(
    d_fn: Callable[[jax.Array], jax.Array],
    rng: jax.Array,
    x_real: jax.Array,
    x_fake: jax.Array,
    weight: float = 10.0,
) -> jax.Array:
    """WGAN-GP: λ · E (‖∇D(x̂)‖ − 1)² at random interpolates of real and fake (stop-gradient on both
    inputs so only D's params get this penalty's gradient)."""
    x_hat = wgan_gp_interpolates(rng, jax.lax.stop_gradient(x_real), jax.lax.stop_gradient(x_fake))
    return gradient_norm_penalty(d_fn, x_hat, weight, center=1.0)


def dragan_perturb(rng: jax.Array, x_real: jax.Array, scale: float = 0.5) -> jax.Array:
    """DRAGAN points (Kodali et al. 2017): x̂ = x + α·δ, δ = scale·std(x)·U[0, 1] noise, α ~ U[0, 1]
    per sample — an interpolate between x and its perturbation x + δ."""
    k_noise, k_alpha = jax.random.split(rng)
    std = jnp.std(x_real.astype(jnp.float32))
    delta = scale * std * jax.random.uniform(k_noise, x_real.shape, jnp.float32)
    alpha = _per_sample_uniform(k_alpha, x_real)
    return (x_real + alpha * delta).astype(x_real.dtype)


def dragan_penalty(
    d_fn: Callable[[jax.Array], jax.Array],
    rng: jax.Array,
    x_real: jax.Array,
    weight: float = 10.0,
    scale: float = 0.5,
) -> jax.Array:
    """DRAGAN: λ · E (‖∇D(x̂)‖ − 1)² at noisy points around the real data."""
    x_hat = dragan_perturb(rng, jax.lax.stop_gradient(x_real), scale)
    return gradient_norm_penalty(d_fn, x_hat, weight, center=1.0)


class R1(Technique):
    name = "r1"
    rng_tag = PENALTY_TAG
    config_keys = {"train.r1_gamma": 0.0}  # γ/2·E‖∇D(x_real)‖²

    @staticmethod
    def enabled(config) -> bool:
        return bool(config.train.r1_gamma)

    def check(self) -> None:
        nonnegative(self.train, "r1_gamma")

    def d_terms(self, ctx, state):
        real, labels = ctx.view(ctx.real, ctx.labels)
        return {
            "r1_penalty": r1_penalty(penalised_d(ctx, labels), real, self.train.r1_gamma)
        }, state


class DRAGAN(Technique):
    name = "dragan"
    rng_tag = PENALTY_TAG
    config_keys = {"train.dragan_weight": 0.0}

    @staticmethod
    def enabled(config) -> bool:
        return bool(config.train.dragan_weight)

    def check(self) -> None:
        nonnegative(self.train, "dragan_weight")

    def d_terms(self, ctx, state):
        real, labels = ctx.view(ctx.real, ctx.labels)
        penalty = dragan_penalty(
            penalised_d(ctx, labels), jax.random.fold_in(ctx.rng, 0), real, self.train.dragan_weight
        )
        return {"dragan_penalty": penalty}, state


class WGANGP(Technique):
    name = "gp"
    rng_tag = PENALTY_TAG
    config_keys = {"train.gp_weight": 0.0}  # WGAN-GP λ

    @staticmethod
    def enabled(config) -> bool:
        return bool(config.train.gp_weight)

    def check(self) -> None:
        nonnegative(self.train, "gp_weight")

    def d_terms(self, ctx, state):
        real, labels = ctx.view(ctx.real, ctx.labels)
        fake = ctx.view(ctx.fake, ctx.labels)[
            0
        ]  # interpolates of (real_i, fake_i) under the real label
        penalty = wgan_gp_penalty(
            penalised_d(ctx, labels),
            jax.random.fold_in(ctx.rng, 1),
            real,
            fake.astype(real.dtype),
            self.train.gp_weight,
        )
        return {"gp_penalty": penalty}, state
