"""Data parallelism: one mesh axis `data` over every device of every process.

The batch is sharded on `data`, parameters and optimiser state are replicated. Under `jax.jit`,
reductions over the batch axis (BN statistics, loss means) are then global — cross-replica BN comes
for free (the paper's cross-replica BN, appendix C). Multi-host: each process supplies its local
slice of the global batch.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def check_batch_divides(global_batch: int, mesh: Mesh, what="train.batch_size"):
    n = mesh.devices.size
    if global_batch % n:
        raise ValueError(
            f"{what}={global_batch} is not divisible by the {n} devices of the mesh; "
            f"use a multiple of {n}"
        )


def shard_padded(mesh: Mesh, *arrays):
    """Place `arrays` (one leading length n) batch-sharded on `mesh`, padded to a multiple of its
    device count by repeating the last row: for per-sample computations, whose rows n: are then
    dropped. Returns ([placed arrays], n)."""
    n = len(arrays[0])
    pad = -n % mesh.devices.size
    if pad:
        arrays = [
            np.concatenate([a, np.repeat(a[-1:], pad, axis=0)]) for a in map(np.asarray, arrays)
        ]
    placement = batch_sharding(mesh)
    return [jax.device_put(a, placement) for a in arrays], n


def replicate(tree, mesh: Mesh):
    """Place a pytree (identical on every process) replicated on the mesh."""
    sharding = replicated(mesh)
    return jax.tree.map(lambda x: jax.device_put(x, sharding), tree)
