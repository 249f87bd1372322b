"""Gradient penalties on D, terms of D's loss (biggan/regularisers.py has their definitions):

  R1 (Mescheder et al. 2018; paper §4.2)   γ/2·E‖∇_x D(x)‖² on reals [train.r1_gamma]
  DRAGAN (Kodali et al. 2017)              around perturbed reals [train.dragan_weight]
  WGAN-GP (Gulrajani et al. 2017)          on real/fake interpolates, scored under the real label [train.gp_weight]

D is a fresh copy from the same parameters and state (its SN power iteration gives the main pass's
normalised weights; its state is dropped). Under PacGAN the penalised input is the pack. With minibatch
discrimination D's output for one sample depends on the others of its batch, so ∇_x Σ D holds those cross
terms too. With a D-input augmentation D scores T(x) and the gradient is taken w.r.t. x (as
stylegan2-ada-pytorch's R1).
"""
from __future__ import annotations

import jax

from biggan import regularisers
from biggan.techniques.base import Technique, nonnegative

PENALTY_TAG = 3  # the three share one key, and fold 0 (DRAGAN) and 1 (WGAN-GP) into it


def penalised_d(ctx, labels):
    """x ↦ D(T(x), labels) on an already viewed batch, T the enabled augmentation."""
    return lambda x: ctx.d_viewed_fn(ctx.augment(x, ctx.rng), labels)


class R1(Technique):
    name = "r1"
    rng_tag = PENALTY_TAG

    @staticmethod
    def enabled(config) -> bool:
        return bool(config.train.get("r1_gamma", 0.0))

    def check(self) -> None:
        nonnegative(self.train, "r1_gamma")

    def d_terms(self, ctx, state):
        real, labels = ctx.view(ctx.real, ctx.labels)
        return {"r1_penalty": regularisers.r1_penalty(penalised_d(ctx, labels), real, self.train.r1_gamma)}, state


class DRAGAN(Technique):
    name = "dragan"
    rng_tag = PENALTY_TAG

    @staticmethod
    def enabled(config) -> bool:
        return bool(config.train.get("dragan_weight", 0.0))

    def check(self) -> None:
        nonnegative(self.train, "dragan_weight")

    def d_terms(self, ctx, state):
        real, labels = ctx.view(ctx.real, ctx.labels)
        penalty = regularisers.dragan_penalty(penalised_d(ctx, labels), jax.random.fold_in(ctx.rng, 0), real,
                                              self.train.dragan_weight)
        return {"dragan_penalty": penalty}, state


class WGANGP(Technique):
    name = "gp"
    rng_tag = PENALTY_TAG

    @staticmethod
    def enabled(config) -> bool:
        return bool(config.train.get("gp_weight", 0.0))

    def check(self) -> None:
        nonnegative(self.train, "gp_weight")

    def d_terms(self, ctx, state):
        real, labels = ctx.view(ctx.real, ctx.labels)
        fake = ctx.view(ctx.fake, ctx.labels)[0]  # interpolates of (real_i, fake_i) under the real label
        penalty = regularisers.wgan_gp_penalty(penalised_d(ctx, labels), jax.random.fold_in(ctx.rng, 1), real,
                                               fake.astype(real.dtype), self.train.gp_weight)
        return {"gp_penalty": penalty}, state
