"""Exported generators: a directory that `sample.py` loads without any training state.

Layout of DIR:
  config.json             the full experiment ConfigDict (model section builds G)
  generator/              orbax PyTree checkpoint of nnx.state(G) as plain arrays (params, SN u/v, BN stats)
  truncation_stats.npz    optional: per-truncation BN statistics of TF Hub models (biggan/sampling/truncation_stats.py), keys
                          '<bn path>/mean' and '<bn path>/var', each (rows, C); config.sample names the grid
  standing_stats_t<t>_<batches>x<batch>.npz  optional: standing statistics cached per truncation (appendix C.1)
Converters (biggan.convert) and train.py (from its EMA generator) write this format.
"""

from __future__ import annotations

import os

import jax
import ml_collections
import orbax.checkpoint as ocp
from flax import nnx

from biggan import core_config
from biggan.models import factory as models
from biggan.runtime import sharding, storage


def _state_dict(module):
    return nnx.to_pure_dict(nnx.state(module))


def save_generator(
    directory, config: ml_collections.ConfigDict, generator, *, truncation_stats=None
):
    """Write an exported generator to `directory` (local, made absolute, or gs://; must not already
    hold one)."""
    directory = storage.resolve(directory)
    if storage.exists(os.path.join(directory, "generator")):
        raise FileExistsError(
            f"{directory} already holds an exported generator; choose a new --out directory"
        )
    storage.makedirs(directory)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(os.path.join(directory, "generator"), _state_dict(generator))
    if truncation_stats is not None:
        storage.save_npz(os.path.join(directory, "truncation_stats.npz"), **truncation_stats)
    # Written last: marks a complete export.
    storage.write_text(os.path.join(directory, "config.json"), config.to_json(indent=2))


def is_exported_generator(directory) -> bool:
    return storage.exists(os.path.join(directory, "config.json")) and storage.isdir(
        os.path.join(directory, "generator")
    )


def load_config(directory) -> ml_collections.ConfigDict:
    path = os.path.join(directory, "config.json")
    if not storage.exists(path):
        raise FileNotFoundError(
            f"{path} not found: {directory} is not an exported generator "
            f"(expected config.json and generator/ written by biggan.convert or train.py)"
        )
    return core_config.read_config(directory)


def load_generator(directory):
    """Returns (config, generator, truncation_stats or None)."""
    directory = storage.resolve(directory)
    config = load_config(directory)
    graphdef, abstract_state = nnx.split(models.abstract_generator(config.model))
    # Replicated on this process's devices (biggan.sampling.sampler shards each batch over them):
    # sampling is process-local, and in a multi-process job a target without a sharding makes orbax
    # refuse the checkpoint ("Topology mismatch").
    local = sharding.replicated(sharding.make_mesh(jax.local_devices()))
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=local),
        nnx.to_pure_dict(abstract_state),
    )
    with ocp.StandardCheckpointer() as ckptr:
        restored = ckptr.restore(os.path.join(directory, "generator"), target)
    nnx.replace_by_pure_dict(abstract_state, restored)
    generator = nnx.merge(graphdef, abstract_state)
    stats_path = os.path.join(directory, "truncation_stats.npz")
    truncation_stats = storage.load_npz(stats_path) if storage.exists(stats_path) else None
    return config, generator, truncation_stats
