"""Dropout on D's pooled features before its head (paper §4.2: keep probability 0.5…0.95), inverted,
in D's main pass (the penalties and the other techniques' D passes see no dropout).
[model.d_dropout_keep]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from biggan.techniques.base import Technique


def feature_dropout(
    rng: jax.Array | None, h: jax.Array, keep_prob: float, train: bool
) -> jax.Array:
    """Inverted dropout on D's final features (paper §4.2, keep 0.5…0.95): each unit kept with
    probability keep_prob and scaled by 1/keep_prob in training; identity in evaluation."""
    if not 0.0 < keep_prob <= 1.0:
        raise ValueError(f"keep_prob must be in (0, 1], got {keep_prob}.")
    if not train or keep_prob == 1.0:
        return h
    if rng is None:
        raise ValueError("feature_dropout in training needs a PRNG key.")
    mask = jax.random.bernoulli(rng, keep_prob, h.shape)
    return jnp.where(mask, h / keep_prob, jnp.zeros_like(h))


class FeatureDropout(Technique):
    name = "d_dropout"
    rng_tag = 2
    config_keys = {"model.d_dropout_keep": 1.0}  # keep probability (paper §4.2; 1.0 = off)

    @staticmethod
    def enabled(config) -> bool:
        return config.model.d_dropout_keep != 1.0

    def check(self) -> None:
        keep = self.config.model.d_dropout_keep
        if not 0.0 < keep <= 1.0:
            raise ValueError(f"model.d_dropout_keep={keep} must be in (0, 1] (1.0 = no dropout)")

    def d_features(self, h, rng):
        return feature_dropout(rng, h, self.config.model.d_dropout_keep, True)
