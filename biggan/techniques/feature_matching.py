"""Feature matching (Salimans et al. 2016 §3.1): G's loss += w·‖E f(x) − E f(G(z))‖² over D's pooled
features f, on the step's last real micro-batch (a constant for G). Both batches go through the enabled
D-input augmentation, as everything D scores. [train.feature_matching_weight]
"""
from __future__ import annotations

import jax

from biggan.techniques import catalogue
from biggan.techniques.base import Technique, nonnegative


class FeatureMatching(Technique):
    name = "feature_matching"
    rng_tag = 10
    needs_real_in_g = True

    @staticmethod
    def enabled(config) -> bool:
        return bool(config.train.get("feature_matching_weight", 0.0))

    def check(self) -> None:
        nonnegative(self.train, "feature_matching_weight")

    def g_terms(self, ctx, state):
        real = ctx.augment(ctx.real, jax.random.fold_in(ctx.rng, 0))
        features_real = jax.lax.stop_gradient(ctx.d_features_fn(real, ctx.real_labels))
        fake = ctx.augment(ctx.fake.astype(real.dtype), jax.random.fold_in(ctx.rng, 1))
        distance = catalogue.feature_matching_loss(features_real, ctx.d_features_fn(fake, ctx.labels))
        return {"feature_matching": self.train.feature_matching_weight * distance}
