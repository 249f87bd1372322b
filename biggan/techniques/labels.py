"""D's target labels (Salimans et al. 2016 §3.4; ganhacks), as options of the loss
(biggan/gan/losses.py).

  one-sided label smoothing   the real target 1 − s [train.label_smoothing]
  noisy labels                each target flipped with probability p [train.label_noise]
  soft labels                 real targets drawn from U[0.7, 1.2], fake ones from U[0, 0.3] [train.soft_labels]

Only losses with targets (non_saturating, minimax, least_squares) take them; get_loss refuses label
smoothing on the others.
"""

from __future__ import annotations

from biggan.gan import losses
from biggan.techniques.base import Technique, nonnegative


class LabelSmoothing(Technique):
    name = "label_smoothing"
    config_keys = {
        "train.label_smoothing": 0.0
    }  # one-sided: real target 1 − s (losses with targets only)

    @staticmethod
    def enabled(config) -> bool:
        return bool(config.train.label_smoothing)

    def check(self) -> None:
        nonnegative(self.train, "label_smoothing")

    def loss_options(self):
        return {"real_target": 1.0 - self.train.label_smoothing}


class NoisyLabels(Technique):
    name = "noisy_labels"
    rng_tag = 4  # the key of D's loss, which draws the flips and the soft targets
    config_keys = {
        # probability of flipping each of D's real/fake targets (losses with targets)
        "train.label_noise": 0.0,
        # targets real ~ U[0.7, 1.2], fake ~ U[0, 0.3] (Salimans et al. 2016 / ganhacks; losses with
        # targets)
        "train.soft_labels": False,
    }

    @staticmethod
    def enabled(config) -> bool:
        return bool(config.train.label_noise or config.train.soft_labels)

    def check(self) -> None:
        t = self.train
        if not 0.0 <= t.label_noise <= 1.0:
            raise ValueError(
                f"train.label_noise={t.label_noise} is a probability: set it in [0, 1] (0 = off; "
                f"Salimans et al.'s noisy labels flip 5%, i.e. 0.05)"
            )
        if not losses.has_targets(t.loss):
            which = "train.label_noise" if t.label_noise else "train.soft_labels"
            raise ValueError(
                f"{which} acts on D's real/fake targets, but train.loss={t.loss!r} has none; use a "
                f"loss with targets (train.loss=non_saturating, minimax or least_squares) or switch "
                f"{which} off"
            )
        if t.soft_labels and t.label_smoothing:
            raise ValueError(
                f"train.soft_labels draws the real target from U[0.7, 1.2], which replaces "
                f"train.label_smoothing={t.label_smoothing}; set one of them, not both"
            )

    def loss_options(self):
        return {
            "noisy_labels": True,
            "flip_prob": float(self.train.label_noise),
            "soft_labels": bool(self.train.soft_labels),
        }
