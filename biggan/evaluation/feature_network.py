"""A feature network (the FID Inception, the digits classifier) run under `jax.jit` with the batch
sharded over the `data` mesh axis (biggan/runtime/sharding.py); parameters replicated."""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import Mesh

from biggan.runtime import sharding


class FeatureNetwork:
    """A feature network run under jit with the batch sharded on mesh axis 'data'.

    `apply_fn(params, images) -> (features (N, feature_dim), logits (N, num_classes))` must be pure;
    params are replicated. Calling the object with a numpy NHWC batch of any size returns numpy
    (features, logits); batches are cut into chunks of at most `batch_size` and padded to a multiple
    of the device count (padding rows are dropped). Single-process: all devices must be addressable.
    `predicts_dataset_classes`: its logits index the generator's classes (so class accuracy is
    meaningful).
    """

    def __init__(
        self,
        name: str,
        apply_fn: Callable,
        params,
        *,
        feature_dim: int,
        num_classes: int,
        batch_size: int = 200,
        mesh: Mesh | None = None,
        predicts_dataset_classes: bool = False,
    ):
        self.name = name
        self.feature_dim = int(feature_dim)
        self.num_classes = int(num_classes)
        self.predicts_dataset_classes = predicts_dataset_classes
        self.mesh = sharding.make_mesh() if mesh is None else mesh
        if self.mesh.axis_names != (sharding.DATA_AXIS,):
            raise ValueError(
                f"FeatureNetwork mesh has axes {self.mesh.axis_names}; expected ('{sharding.DATA_AXIS}',)"
            )
        self.num_devices = self.mesh.devices.size
        self.batch_size = max(self.num_devices, _round_up(batch_size, self.num_devices))
        self.input_sharding = sharding.batch_sharding(self.mesh)
        replicated = sharding.replicated(self.mesh)
        self.params = jax.device_put(params, replicated)
        self._apply = jax.jit(
            apply_fn,
            in_shardings=(replicated, self.input_sharding),
            out_shardings=(self.input_sharding, self.input_sharding),
        )

    def __call__(self, images) -> tuple[np.ndarray, np.ndarray]:
        images = np.asarray(images)
        if images.ndim != 4:
            raise ValueError(f"{self.name}: images have shape {images.shape}; expected NHWC")
        features, logits = [], []
        for start in range(0, len(images), self.batch_size):
            (chunk,), n = sharding.shard_padded(self.mesh, images[start : start + self.batch_size])
            chunk_features, chunk_logits = self._apply(self.params, chunk)
            features.append(np.asarray(chunk_features)[:n])
            logits.append(np.asarray(chunk_logits)[:n])
        if not features:
            return (
                np.zeros((0, self.feature_dim), np.float32),
                np.zeros((0, self.num_classes), np.float32),
            )
        return np.concatenate(features), np.concatenate(logits)


def _round_up(n: int, multiple: int) -> int:
    return int(math.ceil(n / multiple) * multiple)
