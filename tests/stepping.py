"""Shared by the train-step tests: a tiny digits config, a random uint8 batch in the step's layout, leaves."""
import os

import jax
import numpy as np

from biggan import config as cfg

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(ch=8, batch_size=8, **train):
    """configs/digits.py:runlocal at width `ch`, one D step, no accumulation, EMA off; `train` overrides."""
    c = cfg.load_config_file(os.path.join(REPO, "configs/digits.py:runlocal"))
    c.model.update(ch_g=ch, ch_d=ch, dim_z=16, shared_dim=8)
    c.train.update(batch_size=batch_size, num_d_steps=1, num_accumulations=1, ema_start=1000)
    c.train.update(**train)
    return c


def random_batch(c, seed=0):
    """{'image': uint8 (num_d_steps, num_accumulations, micro, 32, 32, 3), 'label': int32 (same lead dims)}."""
    t = c.train
    rng = np.random.default_rng(seed)
    shape = (t.num_d_steps, t.num_accumulations, t.batch_size // t.num_accumulations)
    return {"image": rng.integers(0, 256, shape + (32, 32, 3), dtype=np.uint8),
            "label": rng.integers(0, c.model.num_classes, shape).astype(np.int32)}


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]
