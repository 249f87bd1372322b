"""Adaptive discriminator augmentation (ADA; Karras et al. 2020, "Training Generative Adversarial
Networks with Limited Data", §3 and NVlabs/stylegan2-ada-pytorch training/training_loop.py).
[train.ada_target]

The augmentations of `train.ada_policy` (biggan/techniques/augment.py, shared with DiffAugment) are
applied to every image D scores, each operation to each sample with probability p. The overfitting
heuristic r_t = E[sign(D(real))] is collected over `ada_interval` train steps; then

    p ← max(0, p + sign(r_t − ada_target) · N / (ada_kimg · 1000))

with N the number of real images D scored in those steps (the authors' batch × interval; ours counts
every D step of a train step, paper table 1's 2 D steps per G step included), so p can move by 1 per
`ada_kimg` thousand real images. p is logged as `ada_p`, r_t as `ada_rt`.
"""

from __future__ import annotations

import jax.numpy as jnp

from biggan.techniques import augment
from biggan.techniques.base import Technique


class ADA(Technique):
    name = "ada"
    rng_tag = 7
    config_keys = {
        "train.ada_target": 0.0,  # target of E[sign(D(real))] (Karras et al.: 0.6; 0 = off) ...
        # ... the augmentations applied with probability p ...
        "train.ada_policy": "color,translation,cutout",
        "train.ada_interval": 4,
        "train.ada_kimg": 500.0,
        "train.ada_p_init": 0.0,  # ... p adjusted every 4 steps, by ≤ 1 per 500k reals
    }

    @staticmethod
    def enabled(config) -> bool:
        return bool(config.train.ada_target)

    def check(self) -> None:
        t = self.train
        self.ops = augment.parse_policy(t.ada_policy, "train.ada_policy")
        if not 0.0 < t.ada_target < 1.0:
            raise ValueError(
                f"train.ada_target={t.ada_target} is a target for E[sign(D(real))]: set it in (0, 1) "
                f"(Karras et al. use 0.6) or 0 to switch ADA off"
            )
        if t.diffaug_policy:
            raise ValueError(
                f"train.ada_target={t.ada_target} and train.diffaug_policy={t.diffaug_policy!r} both "
                f"augment D's inputs; use one (ADA's operations are set by train.ada_policy)"
            )
        if (
            int(t.ada_interval) != t.ada_interval
            or t.ada_interval < 1
            or t.ada_kimg <= 0
            or t.ada_p_init < 0
        ):
            raise ValueError(
                f"train.ada_interval={t.ada_interval} must be a whole number ≥ 1, train.ada_kimg="
                f"{t.ada_kimg} > 0 and train.ada_p_init={t.ada_p_init} ≥ 0 (defaults: 4, 500, 0)"
            )

    def init_state(self, g_params=None, d_params=None):
        # One array per entry: the trainer donates the state, and a buffer may be donated only once.
        return {
            "p": jnp.asarray(self.train.ada_p_init, jnp.float32),
            "sign_sum": jnp.zeros((), jnp.float32),
            "count": jnp.zeros((), jnp.float32),
            "rt": jnp.zeros((), jnp.float32),
        }

    def augment(self, x, rng, state):
        return augment.augment(x, rng, self.ops, p=state["p"])

    def d_terms(self, ctx, state):
        d_real = ctx.d_real.astype(jnp.float32)
        return {}, dict(
            state,
            sign_sum=state["sign_sum"] + jnp.sum(jnp.sign(d_real)),
            count=state["count"] + d_real.size,
        )

    def after_step(self, state, step):
        return ada_adjust(
            state, step, self.train.ada_interval, self.train.ada_target, self.train.ada_kimg
        )


def ada_adjust(state, step, interval: int, target: float, kimg: float):
    """Every `interval` steps: r_t from the collected signs, p moved towards the target, sums
    reset."""
    due = (step % interval) == 0
    rt = state["sign_sum"] / jnp.maximum(state["count"], 1.0)
    p = jnp.maximum(state["p"] + jnp.sign(rt - target) * state["count"] / (kimg * 1000.0), 0.0)
    zero = jnp.zeros((), jnp.float32)
    new = {
        "p": jnp.where(due, p, state["p"]),
        "sign_sum": jnp.where(due, zero, state["sign_sum"]),
        "count": jnp.where(due, zero, state["count"]),
        "rt": jnp.where(due, rt, state["rt"]),
    }
    return new, {"ada_p": new["p"], "ada_rt": new["rt"]}
