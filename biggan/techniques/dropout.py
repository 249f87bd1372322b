"""Dropout on D's pooled features before its head (paper §4.2: keep probability 0.5…0.95), inverted, in D's
main pass (the penalties and the other techniques' D passes see no dropout). [model.d_dropout_keep]
"""
from __future__ import annotations

from biggan.techniques import catalogue
from biggan.techniques.base import Technique


class FeatureDropout(Technique):
    name = "d_dropout"
    rng_tag = 2

    @staticmethod
    def enabled(config) -> bool:
        return config.model.get("d_dropout_keep", 1.0) != 1.0

    def check(self) -> None:
        keep = self.config.model.d_dropout_keep
        if not 0.0 < keep <= 1.0:
            raise ValueError(f"model.d_dropout_keep={keep} must be in (0, 1] (1.0 = no dropout)")

    def d_features(self, h, rng):
        return catalogue.feature_dropout(rng, h, self.config.model.d_dropout_keep, True)
