"""Experience replay (Pfau & Vinyals 2016; ganhacks): the first round(replay_fraction·B) fakes of
each D micro-batch are past fakes (with their labels) drawn from a ring buffer while it holds any;
the micro-batch's fresh fakes join the buffer. [train.replay_capacity, train.replay_fraction]
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from biggan.models import factory as models
from biggan.techniques.base import Technique, micro_batch_size, nonnegative, whole


class ReplayBuffer(NamedTuple):
    """Ring buffer of past fakes (a pytree): images (capacity, H, W, C), labels (capacity,),
    size = filled slots, next = write position."""

    images: jax.Array
    labels: jax.Array
    size: jax.Array
    next: jax.Array


def replay_init(capacity: int, image_shape: tuple[int, ...], dtype=jnp.float32) -> ReplayBuffer:
    if capacity <= 0:
        raise ValueError(f"replay capacity must be > 0, got {capacity}.")
    return ReplayBuffer(
        jnp.zeros((capacity,) + tuple(image_shape), dtype),
        jnp.zeros((capacity,), jnp.int32),
        jnp.zeros((), jnp.int32),
        jnp.zeros((), jnp.int32),
    )


def replay_add(
    buffer: ReplayBuffer, images: jax.Array, labels: jax.Array | None = None
) -> ReplayBuffer:
    """Write a batch at the ring position, overwriting the oldest entries (FIFO). No gradient."""
    capacity = buffer.images.shape[0]
    n = images.shape[0]
    if n > capacity:
        raise ValueError(
            f"cannot add {n} images to a replay buffer of capacity {capacity}; raise the capacity."
        )
    if images.shape[1:] != buffer.images.shape[1:]:
        raise ValueError(
            f"replay images {images.shape[1:]} do not match the buffer's {buffer.images.shape[1:]}."
        )
    labels = jnp.zeros((n,), jnp.int32) if labels is None else labels.astype(jnp.int32)
    idx = (buffer.next + jnp.arange(n)) % capacity
    return ReplayBuffer(
        buffer.images.at[idx].set(jax.lax.stop_gradient(images).astype(buffer.images.dtype)),
        buffer.labels.at[idx].set(labels),
        jnp.minimum(buffer.size + n, capacity),
        (buffer.next + n) % capacity,
    )


def replay_sample(buffer: ReplayBuffer, rng: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """n entries drawn uniformly (with replacement) from the filled part. On an empty buffer it
    returns slot 0 (zeros) — use replay_mix, which falls back to the fresh fakes then."""
    idx = jax.random.randint(rng, (n,), 0, jnp.maximum(buffer.size, 1))
    return buffer.images[idx], buffer.labels[idx]


def replay_mix(
    rng: jax.Array,
    buffer: ReplayBuffer,
    fake_images: jax.Array,
    fake_labels: jax.Array,
    fraction: float,
) -> tuple[jax.Array, jax.Array]:
    """Replace the first round(fraction·B) fakes of a D batch with replayed ones (fresh fakes kept
    while the buffer is empty)."""
    n_old = int(round(fraction * fake_images.shape[0]))
    if n_old == 0:
        return fake_images, fake_labels
    old_images, old_labels = replay_sample(buffer, rng, n_old)
    use = buffer.size > 0
    images = fake_images.at[:n_old].set(
        jnp.where(use, old_images.astype(fake_images.dtype), fake_images[:n_old])
    )
    labels = fake_labels.at[:n_old].set(
        jnp.where(use, old_labels.astype(fake_labels.dtype), fake_labels[:n_old])
    )
    return images, labels


class ExperienceReplay(Technique):
    name = "replay"
    rng_tag = 5
    config_keys = {
        "train.replay_capacity": 0,  # a buffer of past fakes (0 = off) ...
        "train.replay_fraction": 0.0,  # ... and the fraction of each D fake batch drawn from it
    }

    @staticmethod
    def enabled(config) -> bool:
        return bool(config.train.replay_capacity or config.train.replay_fraction)

    def check(self) -> None:
        t, micro = self.train, micro_batch_size(self.train)
        whole(t, "replay_capacity")
        nonnegative(t, "replay_capacity")
        if not 0.0 <= t.replay_fraction <= 1.0:
            raise ValueError(f"train.replay_fraction={t.replay_fraction} must be in [0, 1]")
        if not t.replay_capacity:
            raise ValueError(
                f"train.replay_fraction={t.replay_fraction} needs a replay buffer: set "
                f"train.replay_capacity (e.g. {10 * micro}) or train.replay_fraction=0"
            )
        if round(t.replay_fraction * micro) < 1:
            raise ValueError(
                f"train.replay_capacity={t.replay_capacity} with train.replay_fraction="
                f"{t.replay_fraction} replays round({t.replay_fraction}·{micro}) = 0 of the {micro} "
                f"fakes of a micro-batch; raise train.replay_fraction to ≥ {0.5 / micro:.3g}, or set "
                f"train.replay_capacity=0"
            )
        if t.replay_capacity < micro:
            raise ValueError(
                f"train.replay_capacity={t.replay_capacity} is smaller than one micro-batch of "
                f"{micro} fakes, which is added to it at once; use train.replay_capacity ≥ {micro}"
            )

    def init_state(self, g_params=None, d_params=None):
        m = self.config.model
        return replay_init(
            int(self.train.replay_capacity), (m.resolution, m.resolution, 3), models.DTYPES[m.dtype]
        )._asdict()

    def d_fakes(self, fake, labels, rng, state):
        buffer = ReplayBuffer(**state)
        mixed, mixed_labels = replay_mix(rng, buffer, fake, labels, self.train.replay_fraction)
        return mixed, mixed_labels, replay_add(buffer, fake, labels)._asdict()
