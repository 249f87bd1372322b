"""Mixed precision (model.dtype=bfloat16, the ImageNet configs' `:bf16`): the step runs with
parameters, optimiser state and BN statistics in float32, stays finite, and G/D outputs stay within
a first-order rounding bound of float32 on the same weights and inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import stepping
from flax import nnx

from biggan import config as cfg
from biggan.models import batch_norm, layers
from biggan.models import factory as models
from biggan.train import state as train_state
from biggan.train import step as ts

# bfloat16 keeps 8 significant bits: each rounding to it errs by at most 2^-9 relative. The network
# rounds at known points: an SN convolution/linear rounds its input, its weight and its output (3),
# a batch norm and a conditional batch norm their output (1), self-attention its softmax weights and
# its output (2); BN/SN statistics, softmax logits, the pooled D features and the losses stay
# float32. To first order the relative errors of these roundings add up (BN renormalises, SN bounds
# each layer's gain), so the output errs by at most (roundings) · 2^-9 · max|output| — every
# rounding point counted, not only the longest path. A wrong cast (float16 overflow, a bf16
# statistic) breaks it by orders of magnitude.
BF16_UNIT_ROUNDOFF = 2.0**-9
ROUNDINGS = {
    layers.SNConv: 3,
    layers.SNLinear: 3,
    batch_norm.BatchNorm: 1,
    batch_norm.ConditionalBatchNorm: 1,
    layers.SelfAttention: 2,
}


def bf16_roundings(module) -> int:
    return sum(
        ROUNDINGS.get(type(m), 0)
        for _, m in nnx.iter_modules(module)
        if getattr(m, "dtype", None) == jnp.bfloat16
    )


def runlocal_digits(dtype):
    c = cfg.load_config_file("configs/digits.py:runlocal")
    c.model.dtype = dtype
    return c


def test_outputs_stay_within_the_rounding_bound_of_float32():
    c32, c16 = runlocal_digits("float32"), runlocal_digits("bfloat16")
    G32, G16 = (
        models.make_generator(c32.model, nnx.Rngs(0)),
        models.make_generator(c16.model, nnx.Rngs(0)),
    )
    D32, D16 = (
        models.make_discriminator(c32.model, nnx.Rngs(1)),
        models.make_discriminator(c16.model, nnx.Rngs(1)),
    )
    nnx.update(G16, nnx.state(G32))  # the same float32 weights
    nnx.update(D16, nnx.state(D32))
    z = jax.random.normal(jax.random.key(0), (16, c32.model.dim_z))
    y = jnp.arange(16) % c32.model.num_classes
    for train in (True, False):
        a, b = nnx.clone(G32)(z, y, train=train), nnx.clone(G16)(z, y, train=train)
        assert bool(jnp.all(jnp.isfinite(b)))
        bound = bf16_roundings(G16) * BF16_UNIT_ROUNDOFF * float(jnp.max(jnp.abs(a)))
        error = float(jnp.max(jnp.abs(a - b.astype(jnp.float32))))
        assert 0 < error <= bound, (train, error, bound)  # > 0: bf16 really ran
    a, b = nnx.clone(D32)(a, y, train=True), nnx.clone(D16)(a, y, train=True)
    assert b.dtype == jnp.float32  # logits (and so the losses) in float32
    bound = bf16_roundings(D16) * BF16_UNIT_ROUNDOFF * float(jnp.max(jnp.abs(a)))
    error = float(jnp.max(jnp.abs(a - b)))
    assert 0 < error <= bound, (error, bound)


@pytest.mark.slow
def test_bf16_steps_stay_finite_with_float32_state():
    c = runlocal_digits("bfloat16")
    mdl, state = train_state.init_state(c, jax.random.key(0))
    assert bf16_roundings(nnx.merge(mdl.g_graphdef, state.g_params, state.g_state)) > 0
    step = jax.jit(ts.make_train_step(c, mdl), donate_argnums=0)
    for i in range(3):
        state, metrics = step(state, stepping.random_batch(c, seed=i), jax.random.key(i))
        assert bool(metrics["all_finite"]), metrics
    floating = [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)]
    # Parameters, Adam moments, EMA, SN vectors and BN statistics: all float32.
    assert floating and all(x.dtype == jnp.float32 for x in floating)
    assert int(state.step) == 3
    assert all(np.all(np.isfinite(np.asarray(x))) for x in floating)


def test_imagenet_configs_offer_bf16():
    c = cfg.load_config_file("configs/biggan_deep_128.py:bf16")
    assert c.model.dtype == "bfloat16" and c.train.batch_size == 2048
    smoke = cfg.load_config_file("configs/biggan_deep_128.py:runlocal,bf16")
    assert smoke.model.dtype == "bfloat16" and smoke.train.batch_size < 2048
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['bf61'\]; valid: runlocal, bf16"):
        cfg.load_config_file("configs/biggan_deep_128.py:bf61")
