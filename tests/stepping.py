"""The test helpers: a tiny digits config (and the same as train.py flags), a random uint8 batch in
the step's layout, leaves."""

import os

import jax
import numpy as np

from biggan import config as cfg

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_overrides(ch=8, batch_size=8, *, model=None, log=None, sample=None, **train) -> dict:
    """Dotted-key overrides of configs/digits.py:runlocal: width `ch`, dim_z 16, one D step, no
    accumulation, EMA off (ema_start 1000); `model`/`log`/`sample` dicts and the keywords
    (config.train) override further."""
    overrides = {
        "model.ch_g": ch,
        "model.ch_d": ch,
        "model.dim_z": 16,
        "model.shared_dim": 8,
        "train.batch_size": batch_size,
        "train.num_d_steps": 1,
        "train.num_accumulations": 1,
        "train.ema_start": 1000,
    }
    for section, values in (("model", model), ("log", log), ("sample", sample), ("train", train)):
        overrides.update({f"{section}.{key}": value for key, value in (values or {}).items()})
    return overrides


def tiny_config(**overrides):
    """The tiny config (`tiny_overrides(**overrides)`) as a ConfigDict."""
    c = cfg.load_config_file(os.path.join(REPO, "configs/digits.py:runlocal"))
    cfg.set_overrides(c, tiny_overrides(**overrides), "tiny_config:")
    return c


def tiny_flags(**overrides):
    """The same tiny config as train.py flags (for runs through the command line)."""
    return [f"--config.{key}={value}" for key, value in tiny_overrides(**overrides).items()]


def random_batch(c, seed=0):
    """{'image': uint8 (num_d_steps, num_accumulations, micro, 32, 32, 3), 'label': int32 (same lead
    dims)}."""
    t = c.train
    rng = np.random.default_rng(seed)
    shape = (t.num_d_steps, t.num_accumulations, t.batch_size // t.num_accumulations)
    return {
        "image": rng.integers(0, 256, shape + (32, 32, 3), dtype=np.uint8),
        "label": rng.integers(0, c.model.num_classes, shape).astype(np.int32),
    }


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]
