"""Fine-tuning: the initial TrainState of a run that starts from trained weights
(`train.init_from`).

`init_from` names either
  - a training workdir (config.json + checkpoints/): G, D, their SN/BN state and the EMA from its latest
    checkpoint, or
  - an exported generator (train.py's export, or released weights converted by `python -m biggan.convert`):
    G's weights and SN/BN state; the EMA starts equal to G, D starts from its initialisation.
The optimisers, the step counter and the technique states start afresh: fine-tuning is a new run (Mo
et al. 2020 fine-tune with fresh Adam states). The model must be the source's (every model key but
num_classes); with another class count the class tables (G's shared or per-layer class embeddings,
D's projection embedding) start from their initialisation and everything else is loaded, as when
fine-tuning an ImageNet model on a dataset of other classes. Used only when the workdir has no
checkpoint: a resumed run continues from its own.
"""

from __future__ import annotations

import logging
import os

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx, traverse_util

from biggan import checkpoints
from biggan import config as cfg
from biggan.runtime import sharding, storage
from biggan.sampling import export
from biggan.techniques import registry
from biggan.train import state as train_state

log = logging.getLogger(__name__)


class InitFromError(ValueError):
    """train.init_from names nothing usable, or another model: train.py prints it as one line, exit
    2."""


def _load_into(target_tree, source_tree, what: str, source_path: str, reinitialised: list):
    """`target_tree` (an nnx State) with every leaf of `source_tree` whose path and shape it shares;
    a class table of another shape keeps the target's initial values (listed in `reinitialised`)."""
    target = traverse_util.flatten_dict(nnx.to_pure_dict(target_tree))
    source = traverse_util.flatten_dict(nnx.to_pure_dict(source_tree))
    if set(target) != set(source):
        missing = sorted("/".join(map(str, k)) for k in set(target) - set(source))
        extra = sorted("/".join(map(str, k)) for k in set(source) - set(target))
        raise InitFromError(
            f"train.init_from={source_path}: {what} does not have this model's layout (missing "
            f"{missing[:3]}, unexpected {extra[:3]}); use the source's model config"
        )
    merged = {}
    for key, value in target.items():
        loaded = source[key]
        if loaded.shape == value.shape:
            merged[key] = jnp.asarray(loaded, value.dtype)
        elif any("embed" in str(part) for part in key):
            merged[key] = value
            reinitialised.append(
                f"{what} {'/'.join(map(str, key))} {tuple(loaded.shape)} → {tuple(value.shape)}"
            )
        else:
            raise InitFromError(
                f"train.init_from={source_path}: {what} {'/'.join(map(str, key))} has shape "
                f"{tuple(loaded.shape)}, this model {tuple(value.shape)}; use the source's model config"
            )
    tree = jax.tree.map(lambda x: x, target_tree)  # a copy to write into
    nnx.replace_by_pure_dict(tree, traverse_util.unflatten_dict(merged))
    return tree


def _source_config(source: str) -> tuple[str, ml_collections.ConfigDict]:
    if export.is_exported_generator(source):
        return "generator", export.load_config(source)
    config_path = os.path.join(source, "config.json")
    if storage.exists(config_path) and storage.isdir(os.path.join(source, "checkpoints")):
        return "workdir", cfg.read_config(source)
    raise InitFromError(
        f"train.init_from={source} is neither a training workdir (config.json and "
        f"checkpoints/) nor an exported generator (config.json and generator/, written by "
        f"train.py or python -m biggan.convert)"
    )


def initial_state(config: ml_collections.ConfigDict, rng) -> train_state.TrainState:
    """The TrainState a run of `config` starts from: `train_state.init_state`'s, with the weights of
    train.init_from."""
    _, state = train_state.init_state(config, rng)
    source = storage.resolve(config.train.init_from)
    kind, source_config = _source_config(source)
    conditional = {bool(source_config.model.num_classes), bool(config.model.num_classes)}
    if len(conditional) == 2:
        raise InitFromError(
            f"train.init_from={source} has model.num_classes={source_config.model.num_classes}, this run "
            f"{config.model.num_classes}: a class-conditional and an unconditional BigGAN do not share their "
            "class layers; fine-tune conditional from conditional, unconditional from unconditional"
        )
    diff = checkpoints.model_differences(source_config.model, config.model, ignore=("num_classes",))
    if diff:
        raise InitFromError(
            f"train.init_from={source} holds another model; differing model keys (source → this run): "
            + ", ".join(f"{k}: {a!r} → {b!r}" for k, (a, b) in diff.items())
            + "; set them as the source has them"
        )
    reinitialised = []
    if kind == "generator":
        _, generator, _ = export.load_generator(source)
        _, g_params, g_state = nnx.split(generator, nnx.Param, ...)
        g_params = _load_into(state.g_params, g_params, "G", source, reinitialised)
        g_state = _load_into(state.g_state, g_state, "G state", source, reinitialised)
        state = state.replace(
            g_params=g_params, g_state=g_state, ema_params=jax.tree.map(jnp.copy, g_params)
        )
        step = None
    else:
        ckpt = checkpoints.Checkpointer(source)
        step = ckpt.latest_step()
        if step is None:
            raise InitFromError(
                f"train.init_from={source}: {source}/checkpoints holds no checkpoint yet"
            )
        loaded, _ = ckpt.restore(
            step, train_state.abstract_state(source_config, sharding.make_mesh())
        )
        ckpt.close()
        parts = {}
        for name, what in (
            ("g_params", "G"),
            ("g_state", "G state"),
            ("d_params", "D"),
            ("d_state", "D state"),
            ("ema_params", "EMA"),
        ):
            parts[name] = _load_into(
                getattr(state, name), getattr(loaded, name), what, source, reinitialised
            )
        state = state.replace(**parts)
    # init_state's optimiser states are zeros of the parameters' shapes, as fresh ones; the
    # technique states that start at the parameters (historical averages) start at the loaded ones.
    state = state.replace(
        extras=train_state.technique_state(registry.enabled(config), state.g_params, state.d_params)
    )
    log.info(
        "train.init_from: started from %s%s",
        source,
        f" (step {step})"
        if step is not None
        else " (exported generator; D from its initialisation)",
    )
    if reinitialised:
        log.warning(
            "train.init_from: %s has %s classes, this run %s: class tables start from their "
            "initialisation: %s",
            source,
            source_config.model.num_classes,
            config.model.num_classes,
            "; ".join(reinitialised),
        )
    return state
