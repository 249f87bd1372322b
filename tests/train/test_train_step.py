"""The train step: data-parallel equivalence, gradient accumulation, EMA."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from stepping import leaves, random_batch, tiny_config

from biggan.runtime import sharding
from biggan.techniques.base import micro_batch_size
from biggan.train import loops
from biggan.train import state as train_state
from biggan.train import step as ts


def test_one_step_on_8_devices_equals_one_device():
    c = tiny_config(num_d_steps=2)
    mdl, state = train_state.init_state(c, jax.random.key(0))
    batch, rng = random_batch(c), jax.random.key(7)
    new1, m1 = jax.jit(ts.make_train_step(c, mdl))(state, batch, rng)

    mesh = sharding.make_mesh()
    assert mesh.devices.size == 8
    sharded = jax.device_put(batch, NamedSharding(mesh, P(None, None, sharding.DATA_AXIS)))
    new8, m8 = jax.jit(ts.make_train_step(c, mdl, mesh))(
        sharding.replicate(state, mesh), sharded, rng
    )
    for k in m1:
        np.testing.assert_allclose(m8[k], m1[k], rtol=1e-4, atol=1e-5, err_msg=k)
    for (path, a), b in zip(
        jax.tree_util.tree_flatten_with_path(
            (new8.g_params, new8.d_params, new8.g_state, new8.ema_params)
        )[0],
        leaves((new1.g_params, new1.d_params, new1.g_state, new1.ema_params)),
    ):
        name = jax.tree_util.keystr(path)
        if (
            "blocks" in name
            and "conv" in name
            and "bias" in name
            and name.startswith(("[0]", "[3]"))
        ):
            # G's conv biases all feed a BatchNorm, which removes them: their true gradient is
            # exactly 0 and Adam's first step (m/(sqrt(v)+eps)) scales the rounding noise up to at
            # most lr_g either way, on 1 device and on 8 alike. Compare the bound, not the noise.
            assert (
                np.abs(a).max() <= c.train.lr_g * 1.001 and np.abs(b).max() <= c.train.lr_g * 1.001
            ), name
            continue
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=name)
    # The step changed the parameters (the comparison above is not of two untouched copies).
    assert (
        max(
            float(np.abs(a - b).max())
            for a, b in zip(leaves(new1.d_params), leaves(state.d_params))
        )
        > 1e-6
    )


@pytest.mark.parametrize("unroll,micro_batches", [(True, 4), (False, 4), (True, 1), (False, 1)])
def test_accumulate_gradients_is_the_mean_of_micro_batch_gradients(unroll, micro_batches):
    """Both loops: unrolled (CPU's default, sums started from the first micro-batch) and lax.scan
    (TPU/GPU's, sums started from zeros of the aux structure)."""
    w = {"w": jnp.array([1.0, -2.0, 0.5])}
    xs = jax.random.normal(jax.random.key(0), (micro_batches, 5, 3))
    counter = jnp.zeros(())

    def loss_fn(params, count, x):
        loss = jnp.mean(jnp.tanh(x @ params["w"]) ** 2)
        return loss, ({"seen": jnp.ones(())}, count + 1)

    grads, count, loss, aux = loops.accumulate_gradients(loss_fn, w, counter, xs, unroll=unroll)
    expected = [jax.grad(lambda p, x=x: loss_fn(p, 0, x)[0])(w)["w"] for x in xs]
    # The loop's gradient is one compiled program, the reference runs op by op: their float32 sums
    # differ by a few ulps of the terms summed, i.e. of the gradient's scale, not of an entry that
    # cancels (measured with lax.scan: 9.7e-8 on an entry of 0.069, 1.4e-6 relative to it).
    scale = float(np.abs(np.mean(expected, axis=0)).max())
    np.testing.assert_allclose(grads["w"], np.mean(expected, axis=0), rtol=0, atol=1e-6 * scale)
    np.testing.assert_allclose(loss, np.mean([loss_fn(w, 0, x)[0] for x in xs]), rtol=1e-6)
    # state threaded through all micro-batches
    assert int(count) == micro_batches and float(aux["seen"]) == 1.0


def test_ema_follows_g_before_start_then_decays():
    c = tiny_config(ema_start=1, ema_decay=0.9)
    mdl, state = train_state.init_state(c, jax.random.key(0))
    step = jax.jit(ts.make_train_step(c, mdl))
    s1, _ = step(state, random_batch(c, 1), jax.random.key(1))  # step 1 ≤ ema_start: EMA = G
    for e, g in zip(leaves(s1.ema_params), leaves(s1.g_params)):
        np.testing.assert_array_equal(e, g)
    s2, _ = step(s1, random_batch(c, 2), jax.random.key(2))  # step 2 > ema_start: 0.9·EMA + 0.1·G
    for e2, e1, g2 in zip(leaves(s2.ema_params), leaves(s1.ema_params), leaves(s2.g_params)):
        np.testing.assert_allclose(e2, 0.9 * e1 + 0.1 * g2, rtol=1e-6, atol=1e-7)
    assert any(not np.allclose(e, g) for e, g in zip(leaves(s2.ema_params), leaves(s2.g_params)))


def test_ortho_penalty_is_applied_to_g_weights_but_not_the_shared_embedding():
    c = tiny_config()
    mdl, state = train_state.init_state(c, jax.random.key(0))
    grads = jax.grad(ts.ortho_penalty)(state.g_params, 1e-4)
    flat = nnx.to_flat_state(grads)
    by_path = {
        "/".join(map(str, p)): np.asarray(v[...] if hasattr(v, "__getitem__") else v)
        for p, v in flat
    }
    assert np.all(by_path["shared_embed/embedding"] == 0)
    assert np.all(by_path["output_bn/scale"] == 0)  # 1-d
    assert any(np.abs(v).max() > 0 for k, v in by_path.items() if k.endswith("kernel"))


def test_micro_batch_must_divide():
    c = tiny_config(batch_size=9, num_accumulations=2)
    with pytest.raises(
        ValueError, match="batch_size=9 is not divisible by train.num_accumulations=2"
    ):
        micro_batch_size(c.train)
