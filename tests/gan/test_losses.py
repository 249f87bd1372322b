"""GAN losses against hand computations in numpy (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biggan.gan import losses

D_REAL = np.array([2.0, 0.5, -0.3, 1.0], np.float32)
D_FAKE = np.array([-1.5, 0.2, 0.9, -0.1, -3.0], np.float32)  # a different batch size on purpose


def _np_softplus(x):
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)


def _np_log_sigmoid(x):
    return -_np_softplus(-np.asarray(x, np.float64))


def test_hinge_matches_hand_computation():
    d_loss, g_loss = losses.get_loss("hinge")
    loss, aux = d_loss(jnp.asarray(D_REAL), jnp.asarray(D_FAKE))
    # real: relu(1 - [2, .5, -.3, 1]) = [0, .5, 1.3, 0] -> mean .45
    # fake: relu(1 + [-1.5, .2, .9, -.1, -3]) = [0, 1.2, 1.9, .9, 0] -> mean .8
    np.testing.assert_allclose(aux["d_loss_real"], 0.45, rtol=1e-6)
    np.testing.assert_allclose(aux["d_loss_fake"], 0.8, rtol=1e-6)
    np.testing.assert_allclose(loss, 1.25, rtol=1e-6)
    np.testing.assert_allclose(
        g_loss(jnp.asarray(D_FAKE)), -np.mean(D_FAKE.astype(np.float64)), rtol=1e-6
    )


def test_hinge_margin():
    d_loss, _ = losses.get_loss("hinge", margin=0.5)
    loss, _ = d_loss(jnp.asarray(D_REAL), jnp.asarray(D_FAKE))
    r = np.maximum(0, 0.5 - D_REAL.astype(np.float64)).mean()
    f = np.maximum(0, 0.5 + D_FAKE.astype(np.float64)).mean()
    np.testing.assert_allclose(loss, r + f, rtol=1e-6)


def test_hinge_gradient():
    d_loss, _ = losses.get_loss("hinge")
    g = jax.grad(lambda r: d_loss(r, jnp.asarray(D_FAKE))[0])(jnp.asarray(D_REAL))
    # d/dr mean relu(1 - r) = -1/B where 1 - r > 0
    np.testing.assert_allclose(g, np.where(1 - D_REAL > 0, -1 / 4, 0.0), rtol=1e-6)


def test_non_saturating_and_minimax():
    r, f = D_REAL.astype(np.float64), D_FAKE.astype(np.float64)
    want_d = -np.mean(_np_log_sigmoid(r)) - np.mean(np.log(1 - 1 / (1 + np.exp(-f))))
    for name, want_g in [
        ("non_saturating", -np.mean(_np_log_sigmoid(f))),
        ("minimax", np.mean(np.log(1 - 1 / (1 + np.exp(-f))))),
    ]:
        d_loss, g_loss = losses.get_loss(name)
        loss, _ = d_loss(jnp.asarray(D_REAL), jnp.asarray(D_FAKE))
        np.testing.assert_allclose(loss, want_d, rtol=1e-5)
        np.testing.assert_allclose(g_loss(jnp.asarray(D_FAKE)), want_g, rtol=1e-5)


def test_least_squares():
    r, f = D_REAL.astype(np.float64), D_FAKE.astype(np.float64)
    d_loss, g_loss = losses.get_loss("least_squares")
    loss, aux = d_loss(jnp.asarray(D_REAL), jnp.asarray(D_FAKE))
    np.testing.assert_allclose(loss, 0.5 * np.mean((r - 1) ** 2) + 0.5 * np.mean(f**2), rtol=1e-6)
    np.testing.assert_allclose(g_loss(jnp.asarray(D_FAKE)), 0.5 * np.mean((f - 1) ** 2), rtol=1e-6)
    # LSGAN accuracy uses the 0.5 decision threshold
    np.testing.assert_allclose(aux["d_acc_real"], np.mean(r > 0.5))
    np.testing.assert_allclose(aux["d_acc_fake"], np.mean(f < 0.5))


def test_wasserstein():
    d_loss, g_loss = losses.get_loss("wasserstein")
    loss, _ = d_loss(jnp.asarray(D_REAL), jnp.asarray(D_FAKE))
    np.testing.assert_allclose(loss, D_FAKE.mean() - D_REAL.mean(), rtol=1e-6)
    np.testing.assert_allclose(g_loss(jnp.asarray(D_FAKE)), -D_FAKE.mean(), rtol=1e-6)


def test_relativistic_average_hinge():
    r, f = D_REAL.astype(np.float64), D_FAKE.astype(np.float64)
    d_loss, g_loss = losses.get_loss("rahinge")
    loss, _ = d_loss(jnp.asarray(D_REAL), jnp.asarray(D_FAKE))
    rr, rf = r - f.mean(), f - r.mean()
    want_d = np.mean([max(0, 1 - v) for v in rr]) + np.mean([max(0, 1 + v) for v in rf])
    want_g = np.mean([max(0, 1 + v) for v in rr]) + np.mean([max(0, 1 - v) for v in rf])
    np.testing.assert_allclose(loss, want_d, rtol=1e-6)
    np.testing.assert_allclose(g_loss(jnp.asarray(D_FAKE), jnp.asarray(D_REAL)), want_g, rtol=1e-6)
    with pytest.raises(ValueError, match="needs d_real"):
        g_loss(jnp.asarray(D_FAKE))


def test_one_sided_label_smoothing():
    r, f = D_REAL.astype(np.float64), D_FAKE.astype(np.float64)
    d_loss, _ = losses.get_loss("non_saturating", real_target=0.9)
    loss, _ = d_loss(jnp.asarray(D_REAL), jnp.asarray(D_FAKE))
    sig = 1 / (1 + np.exp(-r))
    want_real = -np.mean(0.9 * np.log(sig) + 0.1 * np.log(1 - sig))
    want_fake = -np.mean(np.log(1 - 1 / (1 + np.exp(-f))))  # fakes keep target 0: one-sided
    np.testing.assert_allclose(loss, want_real + want_fake, rtol=1e-5)
    d_ls, _ = losses.get_loss("least_squares", real_target=0.9)
    np.testing.assert_allclose(
        d_ls(jnp.asarray(D_REAL), jnp.asarray(D_FAKE))[0],
        0.5 * np.mean((r - 0.9) ** 2) + 0.5 * np.mean(f**2),
        rtol=1e-6,
    )


def test_noisy_labels_targets_and_loss():
    n = 20000
    key = jax.random.key(3)
    t_real, t_fake = losses._targets(key, n, n, 1.0, True, (0.7, 1.2), (0.0, 0.3), 0.05)
    t_real, t_fake = np.asarray(t_real), np.asarray(t_fake)
    flipped_r = t_real < 0.5  # real targets moved into the fake range
    flipped_f = t_fake > 0.5
    assert abs(flipped_r.mean() - 0.05) < 0.006 and abs(flipped_f.mean() - 0.05) < 0.006
    assert t_real[~flipped_r].min() >= 0.7 and t_real[~flipped_r].max() <= 1.2
    assert t_real[flipped_r].min() >= 0.0 and t_real[flipped_r].max() <= 0.3
    assert t_fake[~flipped_f].min() >= 0.0 and t_fake[~flipped_f].max() <= 0.3
    np.testing.assert_allclose(t_real[~flipped_r].mean(), 0.95, atol=0.01)  # U[0.7, 1.2] mean
    # the loss is BCE against exactly these targets
    k = jax.random.key(5)
    d_loss, _ = losses.get_loss("non_saturating", noisy_labels=True)
    tr, tf = (
        np.asarray(t, np.float64)
        for t in losses._targets(k, 4, 5, 1.0, True, (0.7, 1.2), (0.0, 0.3), 0.05)
    )
    r, f = D_REAL.astype(np.float64), D_FAKE.astype(np.float64)
    bce = lambda x, t: t * _np_softplus(-x) + (1 - t) * _np_softplus(x)
    loss, _ = jax.jit(d_loss)(jnp.asarray(D_REAL), jnp.asarray(D_FAKE), rng=k)
    np.testing.assert_allclose(loss, bce(r, tr).mean() + bce(f, tf).mean(), rtol=1e-5)
    with pytest.raises(ValueError, match="PRNG key"):
        d_loss(jnp.asarray(D_REAL), jnp.asarray(D_FAKE))


def test_accuracy_helper():
    acc_r, acc_f = losses.discriminator_accuracy(jnp.asarray(D_REAL), jnp.asarray(D_FAKE))
    np.testing.assert_allclose(acc_r, 3 / 4)
    np.testing.assert_allclose(acc_f, 3 / 5)
    _, aux = losses.get_loss("hinge")[0](jnp.asarray(D_REAL), jnp.asarray(D_FAKE))
    np.testing.assert_allclose(aux["d_acc_real"], 3 / 4)
    np.testing.assert_allclose(aux["d_acc_fake"], 3 / 5)


def test_errors_and_registry():
    with pytest.raises(ValueError, match="valid names: hinge, non_saturating"):
        losses.get_loss("hingee")
    with pytest.raises(ValueError, match="label smoothing"):
        losses.get_loss("hinge", real_target=0.9)
    with pytest.raises(ValueError, match="margin"):
        losses.get_loss("wasserstein", margin=2.0)
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        losses.get_loss("hinge")[0](jnp.zeros((4, 1)), jnp.zeros((4,)))
    for name in losses.LOSS_NAMES + ("ns", "lsgan", "wgan"):
        d_loss, g_loss = losses.get_loss(name)
        loss, aux = jax.jit(d_loss)(jnp.asarray(D_REAL), jnp.asarray(D_FAKE))
        assert np.isfinite(loss) and set(aux) >= {
            "d_loss_real",
            "d_loss_fake",
            "d_acc_real",
            "d_acc_fake",
        }
        assert np.isfinite(jax.jit(g_loss)(jnp.asarray(D_FAKE), jnp.asarray(D_REAL)))
