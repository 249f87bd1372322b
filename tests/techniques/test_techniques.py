"""The catalogue techniques (README, Ablations) against hand computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from biggan.models import layers
from biggan.techniques import dropout, feature_matching, instance_noise, pacgan, replay
from biggan.train import loops

RNG = np.random.default_rng(0)


def test_minibatch_discrimination_batch_of_three_by_hand():
    mbd = layers.MinibatchDiscrimination(2, 2, 2, rngs=nnx.Rngs(0))
    # T[a, b, c]: kernel 0 reads feature 0 into both dims, kernel 1 reads (f0 + f1, f1)
    t = np.zeros((2, 2, 2), np.float32)
    t[0, 0, 0] = 1.0
    t[0, 0, 1] = 2.0  # M[:, 0] = (f0, 2 f0)
    t[0, 1, 0] = 1.0
    t[1, 1, 0] = 1.0
    t[1, 1, 1] = 1.0  # M[:, 1] = (f0 + f1, f1)
    mbd.T[...] = jnp.asarray(t)
    f = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]], np.float32)
    # kernel 0 rows: (0,0), (1,2), (.5,1): L1 distances 01: 3, 02: 1.5, 12: 1.5
    # kernel 1 rows: (1,1), (1,0), (1,.5): L1 distances 01: 1, 02: .5, 12: .5
    e = np.exp
    o = np.array(
        [
            [e(-3) + e(-1.5), e(-1) + e(-0.5)],
            [e(-3) + e(-1.5), e(-1) + e(-0.5)],
            [e(-1.5) + e(-1.5), e(-0.5) + e(-0.5)],
        ]
    )
    out = np.asarray(mbd(jnp.asarray(f)))
    assert out.shape == (3, 4) and mbd.out_features == 4
    np.testing.assert_allclose(out[:, :2], f)
    np.testing.assert_allclose(out[:, 2:], o, rtol=1e-6)
    mbd.include_self = True  # Salimans et al. sum over all j: + exp(0) = 1
    np.testing.assert_allclose(np.asarray(mbd(jnp.asarray(f)))[:, 2:], o + 1, rtol=1e-6)
    with pytest.raises(ValueError, match=r"expects features \(N, 2\)"):
        mbd(jnp.zeros((3, 5)))


def test_minibatch_discrimination_under_jit_split_merge():
    mbd = layers.MinibatchDiscrimination(8, 4, 3, rngs=nnx.Rngs(1))
    graphdef, state = nnx.split(mbd)
    x = jnp.asarray(RNG.normal(size=(5, 8)), jnp.float32)

    @jax.jit
    def f(state, x):
        return nnx.merge(graphdef, state, copy=True)(x)

    np.testing.assert_allclose(f(state, x), mbd(x), rtol=1e-6)


def test_feature_matching_loss():
    fr = np.array([[1.0, 2.0], [3.0, 4.0]])  # mean (2, 3)
    ff = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])  # mean (1, 1)
    np.testing.assert_allclose(
        feature_matching.feature_matching_loss(jnp.asarray(fr), jnp.asarray(ff)), 1 + 4, rtol=1e-6
    )
    # conv features are flattened per sample
    a = RNG.normal(size=(4, 2, 2, 3))
    b = RNG.normal(size=(6, 2, 2, 3))
    want = np.sum((a.mean(0) - b.mean(0)) ** 2)
    np.testing.assert_allclose(
        feature_matching.feature_matching_loss(jnp.asarray(a), jnp.asarray(b)), want, rtol=1e-5
    )


def test_instance_noise():
    for step, sigma in [(0, 0.1), (250, 0.075), (1000, 0.0), (2000, 0.0)]:
        np.testing.assert_allclose(
            instance_noise.instance_noise_sigma(step, 0.1, 1000), sigma, rtol=1e-6, atol=1e-9
        )
    x = jnp.zeros((100, 8, 8, 3))
    noisy = np.asarray(jax.jit(instance_noise.add_instance_noise)(jax.random.key(0), x, 0.3))
    assert abs(noisy.std() - 0.3) < 0.01 and abs(noisy.mean()) < 0.01
    np.testing.assert_array_equal(
        instance_noise.add_instance_noise(jax.random.key(0), x + 1, 0.0), 1.0
    )


def test_replay_buffer_fifo_sample_and_mix():
    buf = replay.replay_init(5, (2, 2, 1))
    add = jax.jit(replay.replay_add)
    img = lambda vals: jnp.asarray(
        np.array(vals, np.float32)[:, None, None, None] * np.ones((1, 2, 2, 1))
    )
    buf = add(buf, img([1, 2, 3]), jnp.array([1, 2, 3]))
    assert int(buf.size) == 3 and int(buf.next) == 3
    buf = add(buf, img([4, 5, 6]), jnp.array([4, 5, 6]))  # wraps: 6 overwrites the oldest (1)
    np.testing.assert_array_equal(buf.images[:, 0, 0, 0], [6, 2, 3, 4, 5])
    np.testing.assert_array_equal(buf.labels, [6, 2, 3, 4, 5])
    assert int(buf.size) == 5 and int(buf.next) == 1
    imgs, labels = jax.jit(replay.replay_sample, static_argnums=2)(buf, jax.random.key(0), 200)
    np.testing.assert_array_equal(imgs[:, 0, 0, 0], labels)  # image and label stay paired
    assert set(np.asarray(labels)) == {2, 3, 4, 5, 6}
    # sampling only from the filled part
    part = replay.replay_add(replay.replay_init(10, (2, 2, 1)), img([7, 8]), jnp.array([7, 8]))
    _, lab = replay.replay_sample(part, jax.random.key(1), 100)
    assert set(np.asarray(lab)) == {7, 8}
    # mix: first round(0.5·4) = 2 fakes replaced; empty buffer keeps the fresh fakes
    fakes, fl = img([0, 0, 0, 0]) - 1, jnp.array([9, 9, 9, 9])
    mixed, ml = replay.replay_mix(jax.random.key(2), buf, fakes, fl, 0.5)
    assert np.all(np.asarray(ml[:2]) != 9) and np.all(np.asarray(ml[2:]) == 9)
    np.testing.assert_array_equal(mixed[:2, 0, 0, 0], ml[:2])
    same, sl = replay.replay_mix(
        jax.random.key(2), replay.replay_init(5, (2, 2, 1)), fakes, fl, 0.5
    )
    np.testing.assert_array_equal(same, fakes)
    with pytest.raises(ValueError, match="capacity 5"):
        replay.replay_add(buf, img([1] * 6))


def test_pacgan_packing():
    x = jnp.asarray(RNG.normal(size=(6, 4, 4, 3)), jnp.float32)
    p = pacgan.pack_samples(x, 2)
    assert p.shape == (3, 4, 4, 6) and pacgan.pacgan_in_channels(3, 2) == 6
    np.testing.assert_array_equal(p[1, :, :, 0:3], x[2])  # group 1 = samples 2, 3
    np.testing.assert_array_equal(p[1, :, :, 3:6], x[3])
    np.testing.assert_array_equal(pacgan.unpack_samples(p, 2), x)
    with pytest.raises(ValueError, match="divide the batch of 6"):
        pacgan.pack_samples(x, 4)


def test_feature_dropout():
    h = jnp.ones((2000, 64))
    out = np.asarray(dropout.feature_dropout(jax.random.key(0), h, 0.8, train=True))
    assert set(np.unique(out)) == {0.0, 1.25}  # kept units scaled by 1/keep
    np.testing.assert_allclose(np.mean(out != 0), 0.8, atol=0.005)
    np.testing.assert_allclose(out.mean(), 1.0, atol=0.01)
    np.testing.assert_array_equal(dropout.feature_dropout(None, h, 0.5, train=False), h)
    with pytest.raises(ValueError, match="keep_prob"):
        dropout.feature_dropout(jax.random.key(0), h, 0.0, train=True)


def test_unroll_discriminator_closed_form_and_gradient():
    # D step: gradient descent on ½(w − θ)², w ← w − lr (w − θ) → w_k = θ + (1 − lr)^k (w0 − θ)
    lr, k, w0 = 0.3, 5, 2.0

    def unrolled(theta):
        step = lambda w, i: w - lr * (w - theta)
        return loops.unroll_discriminator(step, jnp.asarray(w0), k)

    theta = 0.5
    np.testing.assert_allclose(unrolled(theta), theta + (1 - lr) ** k * (w0 - theta), rtol=1e-6)
    # G sees the unrolled D: ∂w_k/∂θ = 1 − (1 − lr)^k
    np.testing.assert_allclose(jax.grad(unrolled)(theta), 1 - (1 - lr) ** k, rtol=1e-6)
    np.testing.assert_allclose(
        loops.unroll_discriminator(lambda w, i: w + i, jnp.asarray(0.0), 4), 0 + 1 + 2 + 3
    )
