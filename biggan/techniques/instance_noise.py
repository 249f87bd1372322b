"""Instance noise (Sønderby et al. 2016): N(0, σ²I) added to every image D's main pass scores, real
and fake, σ annealed linearly to 0 over `instance_noise_anneal_steps` when that is set.
[train.instance_noise_sigma]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from biggan.techniques.base import Technique, nonnegative


def instance_noise_sigma(step, sigma_start: float, anneal_steps: int) -> jax.Array:
    """σ(step) annealed linearly from sigma_start to 0 at anneal_steps (Sønderby et al. 2016)."""
    if anneal_steps <= 0:
        raise ValueError(f"anneal_steps must be > 0, got {anneal_steps}.")
    frac = jnp.clip(jnp.asarray(step, jnp.float32) / anneal_steps, 0.0, 1.0)
    return sigma_start * (1.0 - frac)


def add_instance_noise(rng: jax.Array, x: jax.Array, sigma) -> jax.Array:
    """x + σ·N(0, I): apply to BOTH real and fake D inputs (with different keys)."""
    return (x + sigma * jax.random.normal(rng, x.shape, jnp.float32)).astype(x.dtype)


class InstanceNoise(Technique):
    name = "instance_noise"
    rng_tag = 1
    config_keys = {
        "train.instance_noise_sigma": 0.0,  # N(0, σ²) on every D input, annealed to 0 over ...
        "train.instance_noise_anneal_steps": 0,  # ... this many steps (0: constant σ)
    }

    @staticmethod
    def enabled(config) -> bool:
        return bool(config.train.instance_noise_sigma)

    def check(self) -> None:
        nonnegative(self.train, "instance_noise_sigma", "instance_noise_anneal_steps")

    def perturb(self, x, rng, step):
        t = self.train
        sigma = (
            instance_noise_sigma(step, t.instance_noise_sigma, t.instance_noise_anneal_steps)
            if t.instance_noise_anneal_steps
            else t.instance_noise_sigma
        )
        return add_instance_noise(rng, x, sigma)
