"""The technique interface (biggan/techniques/base.py): the step knows no technique by name, and a
technique written outside the package plugs in through its file and one registry entry alone."""

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
    """A D term w·mean(D(real))² (w = train.toy_weight, its own key), a G term, a counter of D
    micro-batches and a logged after-step metric."""

    name = "toy"
    rng_tag = 99
    config_keys = {"train.toy_weight": 0.5}  # on by default, so the step test needs no override

    @staticmethod
    def enabled(config):
        return bool(config.train.toy_weight)

    def init_state(self, g_params=None, d_params=None):
        return {"count": jnp.zeros((), jnp.int32)}

    def d_terms(self, ctx, state):
        return {"toy_d": self.train.toy_weight * jnp.mean(ctx.d_real) ** 2}, {
            "count": state["count"] + 1
        }

    def g_terms(self, ctx, state):
        return {"toy_g": 0.1 * jnp.mean(ctx.d_fake)}

    def after_step(self, state, step):
        return state, {"toy_count": state["count"]}


def test_a_techniques_keys_enter_the_schema_from_its_class(monkeypatch):
    assert "toy_weight" not in cfg.base_config().train
    monkeypatch.setattr(registry, "REGISTRY", registry.REGISTRY + (Toy,))
    c = cfg.base_config()
    assert c.train.toy_weight == 0.5
    cfg.check_override_flags(["--config.train.toy_weight=0.1"])  # a known key now
    # every technique's keys are in the schema with the value that switches it off
    for cls in registry.REGISTRY[:-1]:
        for key in cls.config_keys:
            section, name = key.split(".")
            assert name in c[section], key
        assert not cls.enabled(cfg.base_config()), cls.__name__


def test_a_technique_key_may_not_redefine_a_core_key_or_another_techniques_default(monkeypatch):
    class Clash(Toy):
        config_keys = {"train.lr_g": 0.0}

    monkeypatch.setattr(registry, "REGISTRY", registry.REGISTRY + (Clash,))
    with pytest.raises(ValueError, match=r"train.lr_g is already a key of biggan.core_config"):
        cfg.base_config()

    class Disagrees(Toy):
        config_keys = {"train.r1_gamma": 1.0}

    monkeypatch.setattr(registry, "REGISTRY", registry.REGISTRY[:-1] + (Disagrees,))
    with pytest.raises(ValueError, match=r"Disagrees declares train.r1_gamma=1.0, another"):
        cfg.base_config()


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
