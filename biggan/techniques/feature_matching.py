"""Feature matching (Salimans et al. 2016 §3.1): G's loss += w·‖E f(x) − E f(G(z))‖² over D's pooled
features f, on the step's last real micro-batch (a constant for G). Both batches go through the
enabled D-input augmentation, as everything D scores. [train.feature_matching_weight]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from biggan.techniques.base import Technique, nonnegative


def feature_matching_loss(features_real: jax.Array, features_fake: jax.Array) -> jax.Array:
    """‖E f(x) − E f(G(z))‖²_2 over an intermediate D layer (Salimans et al. 2016 §3.1), features
    (B, ...) flattened. A G loss: the real term only depends on D, so no stop-gradient is needed
    when differentiating w.r.t. G."""
    mean_real = jnp.mean(
        features_real.reshape(features_real.shape[0], -1).astype(jnp.float32), axis=0
    )
    mean_fake = jnp.mean(
        features_fake.reshape(features_fake.shape[0], -1).astype(jnp.float32), axis=0
    )
    if mean_real.shape != mean_fake.shape:
        raise ValueError(
            f"feature shapes differ: real {features_real.shape[1:]} vs fake {features_fake.shape[1:]}."
        )
    return jnp.sum(jnp.square(mean_real - mean_fake))


class FeatureMatching(Technique):
    name = "feature_matching"
    rng_tag = 10
    needs_real_in_g = True
    # + w·‖E f(x) − E f(G(z))‖² on D's pooled features, in G's loss
    config_keys = {"train.feature_matching_weight": 0.0}

    @staticmethod
    def enabled(config) -> bool:
        return bool(config.train.feature_matching_weight)

    def check(self) -> None:
        nonnegative(self.train, "feature_matching_weight")

    def g_terms(self, ctx, state):
        real = ctx.augment(ctx.real, jax.random.fold_in(ctx.rng, 0))
        features_real = jax.lax.stop_gradient(ctx.d_features_fn(real, ctx.real_labels))
        fake = ctx.augment(ctx.fake.astype(real.dtype), jax.random.fold_in(ctx.rng, 1))
        distance = feature_matching_loss(features_real, ctx.d_features_fn(fake, ctx.labels))
        return {"feature_matching": self.train.feature_matching_weight * distance}
