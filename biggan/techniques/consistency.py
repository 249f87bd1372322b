"""Consistency regularisation of D.

CR (Zhang et al. 2020, "Consistency Regularization for Generative Adversarial Networks", eq. 1) and
bCR (Zhao et al. 2021, "Improved Consistency Regularization for GANs", §3.1): D's loss
    += λ_real·E[(D(x) − D(T(x)))²] (+ λ_fake·E[(D(G(z)) − D(T(G(z))))²] for bCR)
with T a random flip and translation (`train.cr_augment`); CR is bCR with λ_fake = 0.
[train.cr_real_weight, train.cr_fake_weight]

zCR (Zhao et al. 2021 §3.2): z' = z + N(0, σ²I); D's loss += λ_dis·E[(D(G(z)) − D(G(z')))²] and G's
loss −= λ_gen·E[(G(z) − G(z'))²]. [train.zcr_d_weight, train.zcr_g_weight, train.zcr_sigma]

The squares are means over the batch (D's logits) and over every pixel (G's images), as in
PyTorch-StudioGAN src/worker.py (torch.nn.MSELoss), whose weights (10, 10; 5, 0.5, σ = 0.03) they
match. D(x) and D(G(z)) are the main pass's logits (augmented inputs when DiffAugment or ADA is on,
as in StudioGAN).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from biggan.techniques import augment
from biggan.techniques.base import Technique


def squared_difference(a, b):
    return jnp.mean(jnp.square(a.astype(jnp.float32) - b.astype(jnp.float32)))


class ConsistencyRegularisation(Technique):
    name = "cr"
    rng_tag = 8
    config_keys = {
        # λ·E[(D(x) − D(T(x)))²] on reals (Zhang et al.: 10; 0 = off) ...
        "train.cr_real_weight": 0.0,
        "train.cr_fake_weight": 0.0,  # ... and on fakes (bCR: both 10)
        "train.cr_augment": "flip,reflect_translation",  # T
    }

    @staticmethod
    def enabled(config) -> bool:
        return bool(config.train.cr_real_weight or config.train.cr_fake_weight)

    def check(self) -> None:
        t = self.train
        self.ops = augment.parse_policy(t.cr_augment, "train.cr_augment")
        if t.cr_real_weight < 0 or t.cr_fake_weight < 0:
            raise ValueError(
                f"train.cr_real_weight={t.cr_real_weight} and train.cr_fake_weight={t.cr_fake_weight} "
                f"must be ≥ 0 (CR: real 10, fake 0; bCR: both 10)"
            )

    def d_terms(self, ctx, state):
        t, terms = self.train, {}
        key_real, key_fake = jax.random.split(ctx.rng)
        if t.cr_real_weight:
            transformed = ctx.d_fn(augment.augment(ctx.real, key_real, self.ops), ctx.labels)
            terms["cr_real_penalty"] = t.cr_real_weight * squared_difference(
                ctx.d_real, transformed
            )
        if t.cr_fake_weight:
            transformed = ctx.d_fn(augment.augment(ctx.fake, key_fake, self.ops), ctx.fake_labels)
            terms["cr_fake_penalty"] = t.cr_fake_weight * squared_difference(
                ctx.d_fake, transformed
            )
        return terms, state


def perturbed(z, rng, sigma):
    return z + sigma * jax.random.normal(rng, z.shape, z.dtype)


class LatentConsistency(Technique):
    name = "zcr"
    rng_tag = 9
    config_keys = {
        "train.zcr_d_weight": 0.0,
        "train.zcr_g_weight": 0.0,  # λ_dis (5), λ_gen (0.5); 0 = off
        "train.zcr_sigma": 0.03,  # z' = z + N(0, σ²I)
    }

    @staticmethod
    def enabled(config) -> bool:
        return bool(config.train.zcr_d_weight or config.train.zcr_g_weight)

    def check(self) -> None:
        t = self.train
        if t.zcr_d_weight < 0 or t.zcr_g_weight < 0 or t.zcr_sigma <= 0:
            raise ValueError(
                f"train.zcr_d_weight={t.zcr_d_weight} and train.zcr_g_weight={t.zcr_g_weight} must be "
                f"≥ 0 and train.zcr_sigma={t.zcr_sigma} > 0 (Zhao et al.: 5, 0.5, 0.03)"
            )
        if t.replay_capacity:
            raise ValueError(
                f"zCR compares each fake with G at its own latent, but experience replay "
                f"(train.replay_capacity={t.replay_capacity}) mixes in fakes of earlier latents; "
                f"switch one of them off"
            )

    def d_terms(self, ctx, state):
        if not self.train.zcr_d_weight:
            return {}, state
        nearby = ctx.g_fn(perturbed(ctx.z, ctx.rng, self.train.zcr_sigma), ctx.fake_labels)
        d_nearby = ctx.d_fn(nearby.astype(ctx.real.dtype), ctx.fake_labels)
        return {
            "zcr_d_penalty": self.train.zcr_d_weight * squared_difference(ctx.d_fake, d_nearby)
        }, state

    def g_terms(self, ctx, state):
        if not self.train.zcr_g_weight:
            return {}
        nearby = ctx.g_fn(perturbed(ctx.z, ctx.rng, self.train.zcr_sigma), ctx.labels)
        return {"zcr_g_penalty": -self.train.zcr_g_weight * squared_difference(ctx.fake, nearby)}
