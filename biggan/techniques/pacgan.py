"""PacGAN (Lin et al. 2018): D scores packs of `pacgan_pack` consecutive samples stacked on channels
(pack_samples; D's input has pack·3 channels). A projection D needs one class per pack, and the
samples of a pack have their own classes: we project with the FIRST sample's label (our choice; the
paper's D is unconditional). Packs never mix real and fake: the micro-batch is a multiple of the
pack. [train.pacgan_pack]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from biggan.techniques.base import Technique, micro_batch_size, whole


def pacgan_in_channels(image_channels: int, pack: int) -> int:
    """D's input channel count under PacGAN packing of `pack` samples: pack · C."""
    return image_channels * pack


def pack_samples(x: jax.Array, pack: int) -> jax.Array:
    """(B, H, W, C) → (B/m, H, W, m·C): m consecutive samples stacked on channels, sample-major
    (channels [0:C] are sample 0 of the group). Lin et al. 2018. With a class-conditional
    (projection) D every sample of a group should share one label (or D be unconditional)."""
    b = x.shape[0]
    if pack < 1 or b % pack:
        raise ValueError(f"PacGAN pack={pack} must be ≥ 1 and divide the batch of {b}.")
    g = x.reshape((b // pack, pack) + x.shape[1:])  # (B/m, m, H, W, C)
    g = jnp.moveaxis(g, 1, -2)  # (B/m, H, W, m, C)
    return g.reshape(g.shape[:-2] + (pack * x.shape[-1],))


def unpack_samples(x: jax.Array, pack: int) -> jax.Array:
    """Inverse of pack_samples."""
    c = x.shape[-1] // pack
    g = x.reshape(x.shape[:-1] + (pack, c))  # (B/m, H, W, m, C)
    g = jnp.moveaxis(g, -2, 1)  # (B/m, m, H, W, C)
    return g.reshape((-1,) + g.shape[2:])


class PacGAN(Technique):
    name = "pacgan"
    config_keys = {
        "train.pacgan_pack": 1
    }  # D scores packs of m samples stacked on channels (1 = off)

    @staticmethod
    def enabled(config) -> bool:
        return config.train.pacgan_pack != 1

    def check(self) -> None:
        t, micro = self.train, micro_batch_size(self.train)
        whole(t, "pacgan_pack")
        if t.pacgan_pack < 1 or micro % t.pacgan_pack:
            raise ValueError(
                f"train.pacgan_pack={t.pacgan_pack} must be ≥ 1 (1 = off) and divide the micro-batch "
                f"of {micro} (train.batch_size / train.num_accumulations) so that every pack is all "
                f"real or all fake; choose a divisor of {micro}"
            )

    def d_view(self, x, y):
        pack = int(self.train.pacgan_pack)
        return pack_samples(x, pack), y[::pack]
