"""The training state: what a step reads and writes (`TrainState`), the models' structure
(`Models`), the optimisers, and the initial and abstract states that training starts, resumes and
fine-tunes from."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from biggan.models import factory as models
from biggan.runtime import sharding
from biggan.techniques import historical_averaging, pacgan, registry, replay


@flax.struct.dataclass
class TrainState:
    """Everything a step reads and writes. `*_state` holds SN vectors and BN statistics (not
    trained)."""

    step: jax.Array
    g_params: Any
    g_state: Any
    d_params: Any
    d_state: Any
    ema_params: Any
    g_opt: Any
    d_opt: Any
    # State of the switched-on techniques that have one, keyed by technique name (e.g. HIST_D,
    # HIST_G, REPLAY); empty — no leaves, so the default config's state, trees and checkpoints are
    # unchanged — when they are off.
    extras: dict = flax.struct.field(default_factory=dict)


# TrainState.extras keys.
HIST_D, HIST_G = (
    historical_averaging.HistoricalAveragingD.name,
    historical_averaging.HistoricalAveragingG.name,
)
REPLAY = replay.ExperienceReplay.name


@flax.struct.dataclass
class Models:
    """Static structure of G and D (nnx graph definitions), shared by init, the step and
    sampling."""

    g_graphdef: Any = flax.struct.field(pytree_node=False)
    d_graphdef: Any = flax.struct.field(pytree_node=False)


def make_optimizers(t: ml_collections.ConfigDict):
    # Adam with β1 = 0, β2 = 0.999 (paper appendix C); separate learning rates (TTUR in the paper's
    # sense).
    g_tx = optax.adam(t.lr_g, b1=t.beta1_g, b2=t.beta2, eps=t.adam_eps)
    d_tx = optax.adam(t.lr_d, b1=t.beta1_d, b2=t.beta2, eps=t.adam_eps)
    return g_tx, d_tx


def init_state(config: ml_collections.ConfigDict, rng) -> tuple[Models, TrainState]:
    """Build G and D from `config.model` and return their graph definitions and the initial
    state."""
    t = config.train
    g_key, d_key = jax.random.split(rng)
    G = models.make_generator(config.model, nnx.Rngs(g_key))
    D = models.make_discriminator(
        config.model, nnx.Rngs(d_key), in_channels=pacgan.pacgan_in_channels(3, t.pacgan_pack)
    )
    g_graphdef, g_params, g_state = nnx.split(G, nnx.Param, ...)
    d_graphdef, d_params, d_state = nnx.split(D, nnx.Param, ...)
    g_tx, d_tx = make_optimizers(t)
    extras = technique_state(registry.enabled(config), g_params, d_params)
    # The EMA copy and the optimiser states as one program each, not one per parameter shape (as
    # eager calls).
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        g_params=g_params,
        g_state=g_state,
        d_params=d_params,
        d_state=d_state,
        ema_params=jax.jit(lambda params: jax.tree.map(jnp.copy, params))(g_params),
        g_opt=jax.jit(g_tx.init)(g_params),
        d_opt=jax.jit(d_tx.init)(d_params),
        extras=extras,
    )
    return Models(g_graphdef, d_graphdef), state


def technique_state(techniques, g_params, d_params, extras=None) -> dict:
    """TrainState.extras for the switched-on techniques (`registry.enabled(config)`) that have
    state: the entries of `extras` are kept, missing ones start now (e.g. historical averages at the
    given params, an empty replay buffer)."""
    extras = dict(extras or {})
    for technique in techniques:
        if technique.uses("init_state") and technique.name not in extras:
            extras[technique.name] = technique.init_state(g_params, d_params)
    return extras


def with_technique_state(techniques, state: TrainState) -> TrainState:
    """`state` with the extras of every switched-on technique: one restored from a checkpoint
    written while a technique was off (then switched on by a rollback override) starts them now.
    Decided from the dict's keys, so inside the step at trace time; the trainer calls it after a
    restore too, so that the step it compiles keeps one state structure."""
    extras = technique_state(techniques, state.g_params, state.d_params, state.extras)
    return state if extras.keys() == state.extras.keys() else state.replace(extras=extras)


def merge(graphdef, params, state):
    """An nnx module from its graph definition, params and state (fresh Variables, safe inside a
    trace)."""
    return nnx.merge(graphdef, params, state, copy=True)


def split(module):
    """The non-trainable state (SN vectors, BN statistics) of a module after a forward pass."""
    return nnx.state(module, nnx.Not(nnx.Param))


def abstract_models_and_state(config, mesh):
    """(Models, ShapeDtypeStructs of the TrainState with replicated shardings): what a checkpoint is
    restored into without allocating, and the graph definitions to merge it with, from one abstract
    trace of the init."""
    mdl, shapes = jax.eval_shape(lambda: init_state(config, jax.random.key(0)))
    replicated = sharding.replicated(mesh)
    return mdl, jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), shapes
    )


def abstract_state(config, mesh):
    """ShapeDtypeStructs (replicated shardings) of the TrainState, to restore into without
    allocating."""
    return abstract_models_and_state(config, mesh)[1]
