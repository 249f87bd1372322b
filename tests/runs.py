"""Tiny trainer runs for the tests (the tiny config of stepping.py through the trainer) and their
saved states."""

import json
import os

import jax
import ml_collections
import numpy as np
from stepping import tiny_config, tiny_flags

from biggan import checkpoints
from biggan.runtime import sharding, storage
from biggan.train import state as train_state

# EMA from step 1 (runlocal's ema_start), so the resume tests cover the EMA weights too.
TINY = tiny_flags(ema_start=1, log=dict(sv_every=0, sample_every=0))


def run_config(num_steps, **log):
    """The tiny config for `num_steps` trainer steps, logging every step, checkpoints only when
    asked."""
    return tiny_config(
        num_steps=num_steps,
        ema_start=1,
        log={"sv_every": 0, "sample_every": 0, "checkpoint_every": 1000, "log_every": 1, **log},
    )


def saved_state(workdir, step=None):
    c = ml_collections.ConfigDict(
        json.loads(storage.read_text(os.path.join(workdir, "config.json")))
    )
    ck = checkpoints.Checkpointer(workdir)
    step = ck.latest_step() if step is None else step
    state, data = ck.restore(step, train_state.abstract_state(c, sharding.make_mesh()))
    ck.close()
    return step, state, data


def assert_states_identical(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
