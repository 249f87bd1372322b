"""FreezeD (Mo et al. 2020, "Freeze the Discriminator: a Simple Baseline for Fine-Tuning GANs", §3):
when fine-tuning (train.init_from), D's lower layers keep their pretrained weights and only the
upper ones train. [train.freeze_d_blocks]

`freeze_d_blocks` = k freezes D's first k residual blocks, the attention that follows any of them,
and BigGAN-deep's input convolution; the head (class embedding and linear output) always trains.
Frozen parameters get zero updates (their Adam moments still see their gradients, which stay
unused).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from biggan.techniques.base import Technique


def _key(entry):
    return getattr(entry, "key", getattr(entry, "idx", getattr(entry, "name", None)))


def frozen(path, k: int) -> bool:
    """Whether the D parameter at `path` (a tree path of D's nnx params) is in its first k
    blocks."""
    top = _key(path[0])
    if top == "input_conv":
        return k > 0
    if top in ("blocks", "attention"):
        return int(_key(path[1])) < k
    return False


class FreezeD(Technique):
    name = "freezed"
    config_keys = {
        "train.freeze_d_blocks": 0
    }  # keep D's first k blocks at their initial weights (0 = off)

    @staticmethod
    def enabled(config) -> bool:
        return bool(config.train.freeze_d_blocks)

    def check(self) -> None:
        k = self.train.freeze_d_blocks
        if int(k) != k or k < 0:
            raise ValueError(
                f"train.freeze_d_blocks={k} must be a whole number ≥ 0 (the number of D's first "
                f"blocks kept frozen; 0 = off)"
            )

    def d_updates(self, updates):
        k = int(self.train.freeze_d_blocks)
        blocks = {
            int(_key(path[1]))
            for path, _ in jax.tree_util.tree_flatten_with_path(updates)[0]
            if _key(path[0]) == "blocks"
        }
        if k >= len(blocks):
            raise ValueError(
                f"train.freeze_d_blocks={k} would freeze all {len(blocks)} blocks of D; use at "
                f"most {len(blocks) - 1}"
            )
        return jax.tree_util.tree_map_with_path(
            lambda path, u: jnp.zeros_like(u) if frozen(path, k) else u, updates
        )
