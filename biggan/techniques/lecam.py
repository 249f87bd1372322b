"""LeCam regularisation (Tseng et al. 2021, "Regularizing Generative Adversarial Networks under
Limited Data", eq. 3; google/lecam-gan biggan_cifar/losses.py). [train.lecam_weight]

    R = E[relu(D(x) − α_F)²] + E[relu(α_R − D(G(z)))²],   D's loss += λ·R

α_R and α_F are exponential moving averages (decay `lecam_decay`) of D's mean output on real and on
fake images, updated with each micro-batch's means before R is computed (as the authors' code does);
they are constants for the gradient. Before `lecam_start` steps the averages follow the current
means exactly and R is off (the authors' BigGAN-CIFAR code: ema_losses(start_itr=1000)); the first
update always starts the averages at the current means.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from biggan.techniques.base import Technique


def lecam_penalty(d_real, d_fake, anchor_real, anchor_fake):
    """R of eq. 3 for D's logits on real and fake images and the anchors α_R, α_F."""
    d_real, d_fake = d_real.astype(jnp.float32), d_fake.astype(jnp.float32)
    return jnp.mean(jnp.square(jax.nn.relu(d_real - anchor_fake))) + jnp.mean(
        jnp.square(jax.nn.relu(anchor_real - d_fake))
    )


class LeCam(Technique):
    name = "lecam"
    config_keys = {
        "train.lecam_weight": 0.0,  # λ (Tseng et al.: 0.3 with DiffAugment on CIFAR; 0 = off) ...
        "train.lecam_decay": 0.99,
        "train.lecam_start": 0,  # ... anchors' EMA decay; steps before the term starts
    }

    @staticmethod
    def enabled(config) -> bool:
        return bool(config.train.lecam_weight)

    def check(self) -> None:
        t = self.train
        if t.lecam_weight < 0 or not 0.0 <= t.lecam_decay < 1.0 or t.lecam_start < 0:
            raise ValueError(
                f"train.lecam_weight={t.lecam_weight} must be ≥ 0 (0 = off), train.lecam_decay="
                f"{t.lecam_decay} in [0, 1) and train.lecam_start={t.lecam_start} ≥ 0 "
                f"(Tseng et al.: weight 0.3 on CIFAR with DiffAugment, decay 0.99)"
            )

    def init_state(self, g_params=None, d_params=None):
        # One array per entry: the trainer donates the state, and a buffer may be donated only once.
        return {
            name: jnp.zeros((), jnp.float32) for name in ("anchor_real", "anchor_fake", "count")
        }

    def d_terms(self, ctx, state):
        t = self.train
        decay = jnp.where((state["count"] == 0) | (ctx.step < t.lecam_start), 0.0, t.lecam_decay)
        mean_real = jax.lax.stop_gradient(jnp.mean(ctx.d_real.astype(jnp.float32)))
        mean_fake = jax.lax.stop_gradient(jnp.mean(ctx.d_fake.astype(jnp.float32)))
        state = {
            "anchor_real": decay * state["anchor_real"] + (1 - decay) * mean_real,
            "anchor_fake": decay * state["anchor_fake"] + (1 - decay) * mean_fake,
            "count": state["count"] + 1,
        }
        on = (ctx.step >= t.lecam_start).astype(jnp.float32)
        penalty = lecam_penalty(ctx.d_real, ctx.d_fake, state["anchor_real"], state["anchor_fake"])
        return {"lecam_penalty": on * t.lecam_weight * penalty}, state
