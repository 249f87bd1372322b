"""Experience replay (Pfau & Vinyals 2016; ganhacks): the first round(replay_fraction·B) fakes of each D
micro-batch are past fakes (with their labels) drawn from a ring buffer while it holds any; the micro-batch's
fresh fakes join the buffer. [train.replay_capacity, train.replay_fraction]
"""
from __future__ import annotations

from biggan import models
from biggan.techniques import catalogue
from biggan.techniques.base import Technique, micro_batch_size, nonnegative, whole


class ExperienceReplay(Technique):
    name = "replay"
    rng_tag = 5

    @staticmethod
    def enabled(config) -> bool:
        return bool(config.train.get("replay_capacity", 0) or config.train.get("replay_fraction", 0.0))

    def check(self) -> None:
        t, micro = self.train, micro_batch_size(self.train)
        whole(t, "replay_capacity")
        nonnegative(t, "replay_capacity")
        if not 0.0 <= t.replay_fraction <= 1.0:
            raise ValueError(f"train.replay_fraction={t.replay_fraction} must be in [0, 1]")
        if not t.replay_capacity:
            raise ValueError(f"train.replay_fraction={t.replay_fraction} needs a replay buffer: set "
                             f"train.replay_capacity (e.g. {10 * micro}) or train.replay_fraction=0")
        if round(t.replay_fraction * micro) < 1:
            raise ValueError(f"train.replay_capacity={t.replay_capacity} with train.replay_fraction="
                             f"{t.replay_fraction} replays round({t.replay_fraction}·{micro}) = 0 of the {micro} "
                             f"fakes of a micro-batch; raise train.replay_fraction to ≥ {0.5 / micro:.3g}, or set "
                             f"train.replay_capacity=0")
        if t.replay_capacity < micro:
            raise ValueError(f"train.replay_capacity={t.replay_capacity} is smaller than one micro-batch of "
                             f"{micro} fakes, which is added to it at once; use train.replay_capacity ≥ {micro}")

    def init_state(self, g_params=None, d_params=None):
        m = self.config.model
        return catalogue.replay_init(int(self.train.replay_capacity), (m.resolution, m.resolution, 3),
                                     models.DTYPES[m.dtype])._asdict()

    def d_fakes(self, fake, labels, rng, state):
        buffer = catalogue.ReplayBuffer(**state)
        mixed, mixed_labels = catalogue.replay_mix(rng, buffer, fake, labels, self.train.replay_fraction)
        return mixed, mixed_labels, catalogue.replay_add(buffer, fake, labels)._asdict()
