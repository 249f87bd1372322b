"""PacGAN (Lin et al. 2018): D scores packs of `pacgan_pack` consecutive samples stacked on channels
(catalogue.pack_samples; D's input has pack·3 channels). A projection D needs one class per pack, and the
samples of a pack have their own classes: we project with the FIRST sample's label (our choice; the paper's D
is unconditional). Packs never mix real and fake: the micro-batch is a multiple of the pack. [train.pacgan_pack]
"""
from __future__ import annotations

from biggan.techniques import catalogue
from biggan.techniques.base import Technique, micro_batch_size, whole


class PacGAN(Technique):
    name = "pacgan"

    @staticmethod
    def enabled(config) -> bool:
        return config.train.get("pacgan_pack", 1) != 1

    def check(self) -> None:
        t, micro = self.train, micro_batch_size(self.train)
        whole(t, "pacgan_pack")
        if t.pacgan_pack < 1 or micro % t.pacgan_pack:
            raise ValueError(f"train.pacgan_pack={t.pacgan_pack} must be ≥ 1 (1 = off) and divide the micro-batch "
                             f"of {micro} (train.batch_size / train.num_accumulations) so that every pack is all "
                             f"real or all fake; choose a divisor of {micro}")

    def d_view(self, x, y):
        pack = int(self.train.pacgan_pack)
        return catalogue.pack_samples(x, pack), y[::pack]
