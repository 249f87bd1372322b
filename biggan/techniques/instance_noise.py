"""Instance noise (Sønderby et al. 2016): N(0, σ²I) added to every image D's main pass scores, real and fake,
σ annealed linearly to 0 over `instance_noise_anneal_steps` when that is set. [train.instance_noise_sigma]
"""
from __future__ import annotations

from biggan.techniques import catalogue
from biggan.techniques.base import Technique, nonnegative


class InstanceNoise(Technique):
    name = "instance_noise"
    rng_tag = 1

    @staticmethod
    def enabled(config) -> bool:
        return bool(config.train.get("instance_noise_sigma", 0.0))

    def check(self) -> None:
        nonnegative(self.train, "instance_noise_sigma", "instance_noise_anneal_steps")

    def perturb(self, x, rng, step):
        t = self.train
        sigma = (catalogue.instance_noise_sigma(step, t.instance_noise_sigma, t.instance_noise_anneal_steps)
                 if t.instance_noise_anneal_steps else t.instance_noise_sigma)
        return catalogue.add_instance_noise(rng, x, sigma)
