"""The technique interface (biggan/techniques/base.py): the step knows no technique by name, and a technique
written outside the package plugs in through its file and one registry entry alone."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from stepping import random_batch, tiny_config

from biggan import config as cfg
from biggan.techniques import registry
from biggan.techniques.base import Technique
from biggan.train import state as train_state
from biggan.train import step as ts

# Every config key of a technique that acts in the step (README, Ablations).
TECHNIQUE_KEYS = (
    "label_smoothing",
    "soft_labels",
    "label_noise",
    "r1_gamma",
    "dragan_weight",
    "gp_weight",
    "sigma0_",
    "instance_noise",
    "feature_matching",
    "historical_averaging",
    "replay_",
    "pacgan_pack",
    "d_dropout_keep",
    "diffaug_",
    "ada_",
    "lecam_",
    "cr_",
    "zcr_",
    "freeze_d_blocks",
)
STEP_FUNCTIONS = (
    "make_train_step",
    "train_step",
    "d_update",
    "g_update",
    "ema_update",
    "d_logits",
    "sample_zy",
    "param_terms",
    "unrolled_discriminator",
)


def test_the_step_reads_no_technique_switch():
    for name in STEP_FUNCTIONS:
        source = inspect.getsource(getattr(ts, name))
        assert not [key for key in TECHNIQUE_KEYS if key in source], name


def test_every_technique_is_off_in_the_base_config_and_named_once():
    c = cfg.base_config()
    assert registry.enabled(c) == []
    names = [cls.name for cls in registry.REGISTRY]
    assert len(names) == len(set(names)) and all(names)


class Toy(Technique):
    """A D term 0.5·mean(D(real))², a G term, a counter of D micro-batches and a logged after-step metric."""

    name = "toy"
    rng_tag = 99

    @staticmethod
    def enabled(config):
        return True

    def init_state(self, g_params=None, d_params=None):
        return {"count": jnp.zeros((), jnp.int32)}

    def d_terms(self, ctx, state):
        return {"toy_d": 0.5 * jnp.mean(ctx.d_real) ** 2}, {"count": state["count"] + 1}

    def g_terms(self, ctx, state):
        return {"toy_g": 0.1 * jnp.mean(ctx.d_fake)}

    def after_step(self, state, step):
        return state, {"toy_count": state["count"]}


@pytest.mark.slow  # one compile of the tiny step (~20 s idle)
def test_a_technique_from_outside_plugs_in_through_the_registry(monkeypatch):
    monkeypatch.setattr(registry, "REGISTRY", registry.REGISTRY + (Toy,))
    c = tiny_config(num_d_steps=2)
    mdl, state = train_state.init_state(c, jax.random.key(0))
    assert set(state.extras) == {"toy"}
    new, m = jax.jit(ts.make_train_step(c, mdl))(state, random_batch(c), jax.random.key(7))
    m = {k: np.asarray(v) for k, v in m.items()}
    # one per D micro-batch, 2 D steps
    assert int(new.extras["toy"]["count"]) == 2 == int(m["toy_count"])
    # The term is in D's loss and logged under its name (the metrics are the last D update's).
    np.testing.assert_allclose(m["toy_d"], 0.5 * m["d_real_mean"] ** 2, rtol=1e-5)
    np.testing.assert_allclose(
        m["d_loss"], m["d_loss_real"] + m["d_loss_fake"] + m["toy_d"], rtol=1e-5
    )
    assert "toy_g" in m and bool(m["all_finite"])
