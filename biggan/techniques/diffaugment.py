"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"):
the same random differentiable augmentation T on every image D scores, real and fake, in D's and G's
step, so D never sees an un-augmented image and G's gradient flows through T (§3 of the paper).
[train.diffaug_policy]
"""

from __future__ import annotations

from biggan.techniques import augment
from biggan.techniques.base import Technique


class DiffAugment(Technique):
    name = "diffaug"
    rng_tag = 7  # one key per batch: the parameters are drawn per sample
    # on every D input, e.g. "color,translation,cutout" ('' = off)
    config_keys = {"train.diffaug_policy": ""}

    @staticmethod
    def enabled(config) -> bool:
        return bool(config.train.diffaug_policy)

    def check(self) -> None:
        self.ops = augment.parse_policy(self.train.diffaug_policy, "train.diffaug_policy")

    def augment(self, x, rng, state):
        return augment.augment(x, rng, self.ops)
