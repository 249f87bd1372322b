"""Regularisers against numpy (float64) computations, finite differences and closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biggan.gan import regularisers as R
from biggan.techniques import historical_averaging, penalties, sigma0

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _fresh_rng():
    """Every test draws from its own RNG seeded 0, so its data does not depend on which tests ran
    before it in the same process (pytest -n 2 deals the file's tests to two workers in no fixed
    order)."""
    global RNG
    RNG = np.random.default_rng(0)


# --------------------------------------------------------------------------- orthogonal regularisation


def _np_ortho(w):  # explicit pairwise sum over distinct filters (rows): Σ_{i≠j} (w_i·w_j)²
    w = np.asarray(w, np.float64)
    return sum(float(w[i] @ w[j]) ** 2 for i in range(len(w)) for j in range(len(w)) if i != j)


def _np_fd_grad(f, w, h=1e-5):
    g = np.zeros_like(w, dtype=np.float64)
    for idx in np.ndindex(w.shape):
        e = np.zeros_like(w, dtype=np.float64)
        e[idx] = h
        g[idx] = (f(w + e) - f(w - e)) / (2 * h)
    return g


# wide, and tall (the fan_in × fan_in Gram form)
@pytest.mark.parametrize("out_in", [(5, 7), (9, 4)])
def test_ortho_penalty_and_gradient_match_numpy_on_random_matrix(out_in):
    # PyTorch layout (out, in): rows are filters
    w_out_in = np.random.default_rng(out_in).normal(size=out_in)
    beta = 0.3
    params = {"lin": {"kernel": jnp.asarray(w_out_in.T, jnp.float32)}}  # ours: (in, out)
    pen = R.ortho_penalty(params, beta)
    np.testing.assert_allclose(pen, beta * _np_ortho(w_out_in), rtol=1e-5)
    grad = jax.grad(lambda p: R.ortho_penalty(p, beta))(params)["lin"]["kernel"]
    fd = _np_fd_grad(lambda w: beta * _np_ortho(w), w_out_in)  # (out, in)
    np.testing.assert_allclose(np.asarray(grad).T, fd, rtol=1e-4, atol=1e-5)
    # closed form of the exact gradient: 4β (WWᵀ ⊙ (1−I)) W
    m = (w_out_in @ w_out_in.T) * (1 - np.eye(out_in[0]))
    np.testing.assert_allclose(np.asarray(grad).T, 4 * beta * m @ w_out_in, rtol=1e-4, atol=1e-5)


def test_ortho_conv_kernel_uses_filters_as_rows():
    w_oihw = RNG.normal(size=(4, 3, 3, 3))  # PyTorch conv (out, in, kh, kw)
    kernel = jnp.asarray(w_oihw.transpose(2, 3, 1, 0), jnp.float32)  # ours HWIO
    pen = R.ortho_penalty({"conv": {"kernel": kernel}}, 1.0)
    np.testing.assert_allclose(pen, _np_ortho(w_oihw.reshape(4, -1)), rtol=1e-5)


def test_biggan_pytorch_convention_is_half_the_exact_gradient():
    w_oihw = RNG.normal(size=(6, 2, 3, 3))
    params = {
        "conv": {"kernel": jnp.asarray(w_oihw.transpose(2, 3, 1, 0), jnp.float32)},
        "bias": jnp.ones((6,)),
    }
    s = 1e-2
    # BigGAN-PyTorch utils.ortho: grad += s · 2 (WWᵀ ⊙ (1−I)) W with W = param.view(out, -1)
    w = w_oihw.reshape(6, -1)
    pt = (s * 2 * ((w @ w.T) * (1 - np.eye(6))) @ w).reshape(w_oihw.shape).transpose(2, 3, 1, 0)
    ours = R.biggan_pytorch_ortho_grad(params, s)
    np.testing.assert_allclose(ours["conv"]["kernel"], pt, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(ours["bias"], 0.0)
    exact_half_beta = jax.grad(lambda p: R.ortho_penalty(p, s / 2))(params)
    np.testing.assert_allclose(exact_half_beta["conv"]["kernel"], pt, rtol=1e-4, atol=1e-6)


def test_ortho_filter_skips_shared_embedding_and_1d():
    params = {
        "shared": {"embedding": jnp.asarray(RNG.normal(size=(10, 4)), jnp.float32)},
        "bn": {"scale": jnp.ones((4,))},
        "lin": {"kernel": jnp.asarray(RNG.normal(size=(3, 4)), jnp.float32)},
    }
    np.testing.assert_allclose(
        R.ortho_penalty(params, 1.0), _np_ortho(np.asarray(params["lin"]["kernel"]).T), rtol=1e-5
    )


def test_ortho_on_nnx_state():
    from flax import nnx

    lin = nnx.Linear(4, 3, rngs=nnx.Rngs(0))
    state = nnx.state(lin, nnx.Param)
    k = np.asarray(lin.kernel[...])
    np.testing.assert_allclose(
        jax.jit(lambda s: R.ortho_penalty(s, 1.0))(state), _np_ortho(k.T), rtol=1e-5
    )


# --------------------------------------------------------------------------- gradient penalties


def _linear_d(w, b=0.3):
    return lambda x: jnp.sum(x.reshape(x.shape[0], -1) * w.reshape(1, -1), axis=1) + b


def test_r1_on_linear_d_is_closed_form():
    w = jnp.asarray(RNG.normal(size=(4, 4, 3)), jnp.float32)
    x = jnp.asarray(RNG.normal(size=(5, 4, 4, 3)), jnp.float32)
    gamma = 0.7
    pen = penalties.r1_penalty(_linear_d(w), x, gamma)
    np.testing.assert_allclose(pen, gamma / 2 * np.sum(np.asarray(w, np.float64) ** 2), rtol=1e-5)
    # double backprop: d/dw γ/2‖w‖² = γ w
    gw = jax.grad(lambda w: penalties.r1_penalty(_linear_d(w), x, gamma))(w)
    np.testing.assert_allclose(gw, gamma * np.asarray(w), rtol=1e-5)


def test_r1_on_quadratic_d_per_sample():
    # D(x)_i = c/2 ‖x_i‖² → ∇ = c x_i; penalty γ/2 · mean_i c²‖x_i‖²
    x = RNG.normal(size=(6, 2, 2, 3))
    c, gamma = 1.5, 10.0
    d = lambda x: 0.5 * c * jnp.sum(jnp.square(x.reshape(x.shape[0], -1)), axis=1)
    want = gamma / 2 * np.mean(c**2 * np.sum(x.reshape(6, -1) ** 2, axis=1))
    np.testing.assert_allclose(
        jax.jit(lambda x: penalties.r1_penalty(d, x, gamma))(jnp.asarray(x, jnp.float32)),
        want,
        rtol=1e-5,
    )


def test_wgan_gp_and_dragan_on_linear_d():
    w = jnp.asarray(RNG.normal(size=(3, 3, 2)) * 0.2, jnp.float32)
    xr = jnp.asarray(RNG.normal(size=(4, 3, 3, 2)), jnp.float32)
    xf = jnp.asarray(RNG.normal(size=(4, 3, 3, 2)), jnp.float32)
    want = 10.0 * (np.linalg.norm(np.asarray(w, np.float64)) - 1) ** 2
    np.testing.assert_allclose(
        penalties.wgan_gp_penalty(_linear_d(w), jax.random.key(0), xr, xf), want, rtol=1e-5
    )
    np.testing.assert_allclose(
        penalties.dragan_penalty(_linear_d(w), jax.random.key(1), xr), want, rtol=1e-5
    )


def test_gradient_norm_penalty_quadratic_and_interpolates():
    x = RNG.normal(size=(5, 2, 2, 1))
    d = lambda x: 0.5 * jnp.sum(jnp.square(x.reshape(x.shape[0], -1)), axis=1)
    want = 3.0 * np.mean((np.linalg.norm(x.reshape(5, -1), axis=1) - 1) ** 2)
    np.testing.assert_allclose(
        penalties.gradient_norm_penalty(d, jnp.asarray(x, jnp.float32), 3.0), want, rtol=1e-5
    )
    xr, xf = np.zeros((5, 2, 2, 1)), np.ones((5, 2, 2, 1))
    xh = np.asarray(
        penalties.wgan_gp_interpolates(jax.random.key(2), jnp.asarray(xr), jnp.asarray(xf))
    )
    # x̂ = ε·0 + (1−ε)·1: one ε per sample in [0, 1]
    assert np.all(xh >= 0) and np.all(xh <= 1)
    assert np.allclose(xh, xh[:, :1, :1, :1]) and np.unique(xh[:, 0, 0, 0]).size == 5
    # DRAGAN points: x + α·δ with 0 ≤ δ ≤ 0.5·std(x)
    x2 = RNG.normal(size=(64, 4, 4, 3)).astype(np.float32)
    pert = np.asarray(penalties.dragan_perturb(jax.random.key(3), jnp.asarray(x2))) - x2
    assert pert.min() >= -1e-6 and pert.max() <= 0.5 * x2.std() + 1e-5


# --------------------------------------------------------------------------- singular values


def _matrix_with_spectrum(s, rows, cols, seed=0):
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.normal(size=(rows, len(s))))
    v, _ = np.linalg.qr(rng.normal(size=(cols, len(s))))
    return (u * s) @ v.T


@pytest.mark.parametrize("method", ["gram", "svd", "subspace"])
def test_top_singular_values_match_numpy(method):
    s = np.array([5.0, 3.0, 2.0, 0.5, 0.4, 0.3, 0.2, 0.1, 0.1, 0.05, 0.01])
    w = _matrix_with_spectrum(s, 40, 90)
    got = jax.jit(lambda w: R.top_singular_values(w, 3, method, name="weight"))(
        jnp.asarray(w, jnp.float32)
    )
    np.testing.assert_allclose(got, np.linalg.svd(w, compute_uv=False)[:3], rtol=1e-4)
    rnd = RNG.normal(size=(30, 20))
    got = R.top_singular_values(jnp.asarray(rnd, jnp.float32), 3, method, name="weight", iters=200)
    np.testing.assert_allclose(
        got, np.linalg.svd(rnd, compute_uv=False)[:3], rtol=2e-3 if method == "subspace" else 1e-4
    )


def test_singular_value_summary_tree():
    w_oihw = RNG.normal(size=(8, 3, 3, 3))
    params = {
        "blocks": [
            {
                "conv1": {
                    "kernel": jnp.asarray(w_oihw.transpose(2, 3, 1, 0), jnp.float32),
                    "bias": jnp.zeros((8,)),
                }
            }
        ],
        "linear": {"kernel": jnp.asarray(RNG.normal(size=(5, 2)), jnp.float32)},
    }
    summary = jax.jit(R.singular_value_summary)(params)
    assert set(summary) == {"blocks/0/conv1/kernel", "linear/kernel"}
    np.testing.assert_allclose(
        summary["blocks/0/conv1/kernel"],
        np.linalg.svd(w_oihw.reshape(8, -1), compute_uv=False)[:3],
        rtol=1e-4,
    )
    lin = np.asarray(params["linear"]["kernel"], np.float64)
    # 2 values; padded with 0
    np.testing.assert_allclose(
        summary["linear/kernel"], np.r_[np.linalg.svd(lin, compute_uv=False), 0.0], rtol=1e-4
    )


def test_sigma0_clamp_fixed_and_ratio():
    w = RNG.normal(size=(12, 20))
    s = np.linalg.svd(w, compute_uv=False)
    target = 0.5 * (s[0] + s[1])
    clamped = np.asarray(
        sigma0.sigma0_clamp_matrix(jnp.asarray(w, jnp.float32), sigma_clamp=target), np.float64
    )
    s_new = np.linalg.svd(clamped, compute_uv=False)
    np.testing.assert_allclose(s_new[0], target, rtol=1e-5)
    # rest of the spectrum untouched
    np.testing.assert_allclose(s_new[1:], s[1:], rtol=1e-4, atol=1e-5)
    # ratio mode on a spread-out spectrum: σ0 ← r·σ1
    w2 = _matrix_with_spectrum(np.array([6.0, 2.0, 1.0, 0.5]), 10, 16)
    c2 = np.asarray(sigma0.sigma0_clamp_matrix(jnp.asarray(w2, jnp.float32), ratio=1.5), np.float64)
    np.testing.assert_allclose(np.linalg.svd(c2, compute_uv=False)[:2], [3.0, 2.0], rtol=1e-5)
    # no-op when σ0 is already below the clamp
    c3 = sigma0.sigma0_clamp_matrix(jnp.asarray(w, jnp.float32), sigma_clamp=s[0] + 1)
    np.testing.assert_allclose(c3, w, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="exactly one"):
        sigma0.sigma0_clamp_matrix(jnp.asarray(w, jnp.float32))


def test_sigma0_clamp_tree_conv_kernel():
    w_oihw = RNG.normal(size=(6, 4, 3, 3))
    params = {
        "conv": {"kernel": jnp.asarray(w_oihw.transpose(2, 3, 1, 0), jnp.float32)},
        "shared": {"embedding": jnp.ones((3, 4))},
    }
    out = jax.jit(lambda p: sigma0.sigma0_clamp(p, sigma_clamp=1.0))(params)
    k = np.asarray(out["conv"]["kernel"], np.float64).transpose(3, 2, 0, 1).reshape(6, -1)
    np.testing.assert_allclose(
        np.linalg.svd(k, compute_uv=False)[0],
        max(1.0, np.linalg.svd(w_oihw.reshape(6, -1), compute_uv=False)[1]),
        rtol=1e-5,
    )
    np.testing.assert_array_equal(out["shared"]["embedding"], 1.0)  # filtered out


def test_sigma0_penalty_value_and_gradient():
    w = _matrix_with_spectrum(np.array([4.0, 2.5, 1.0]), 7, 9, seed=3)
    u, s, vt = np.linalg.svd(w)
    wj = jnp.asarray(w, jnp.float32)
    pen = lambda w, **kw: sigma0.sigma0_penalty({"weight": w}, 0.5, **kw)
    np.testing.assert_allclose(pen(wj, sigma_target=1.0), 0.5 * (s[0] - 1.0) ** 2, rtol=1e-5)
    g = jax.grad(lambda w: pen(w, sigma_target=1.0))(wj)
    np.testing.assert_allclose(
        g, 0.5 * 2 * (s[0] - 1.0) * np.outer(u[:, 0], vt[0]), rtol=1e-4, atol=1e-5
    )
    # ratio: target r·sg(σ1) contributes no gradient through σ1
    g = jax.grad(lambda w: pen(w, ratio=1.2))(wj)
    np.testing.assert_allclose(
        g, 0.5 * 2 * (s[0] - 1.2 * s[1]) * np.outer(u[:, 0], vt[0]), rtol=1e-4, atol=1e-5
    )
    # one-sided: zero when σ0 is below the target
    np.testing.assert_allclose(pen(wj, sigma_target=5.0, one_sided=True), 0.0)


# --------------------------------------------------------------------------- historical averaging


def test_historical_average_mean_penalty_and_gradient():
    thetas = [
        {
            "a": jnp.asarray(RNG.normal(size=(3,)), jnp.float32),
            "b": jnp.asarray(RNG.normal(size=(2, 2)), jnp.float32),
        }
        for _ in range(5)
    ]
    state = historical_averaging.historical_average_init(thetas[0])
    update = jax.jit(historical_averaging.historical_average_update)
    for t in thetas[1:4]:
        state = update(state, t)
    mean_a = np.mean([np.asarray(t["a"]) for t in thetas[:4]], axis=0)
    mean_b = np.mean([np.asarray(t["b"]) for t in thetas[:4]], axis=0)
    np.testing.assert_allclose(state.mean["a"], mean_a, rtol=1e-5)
    np.testing.assert_allclose(state.mean["b"], mean_b, rtol=1e-5)
    assert int(state.count) == 4
    cur = thetas[4]
    want = 2.0 * (
        np.sum((np.asarray(cur["a"]) - mean_a) ** 2) + np.sum((np.asarray(cur["b"]) - mean_b) ** 2)
    )
    np.testing.assert_allclose(
        historical_averaging.historical_average_penalty(cur, state, 2.0), want, rtol=1e-5
    )
    g = jax.grad(lambda p: historical_averaging.historical_average_penalty(p, state, 2.0))(cur)
    np.testing.assert_allclose(g["a"], 4.0 * (np.asarray(cur["a"]) - mean_a), rtol=1e-5)
    # exponential variant
    ema = historical_averaging.historical_average_update(
        historical_averaging.historical_average_init(thetas[0]), thetas[1], decay=0.9
    )
    np.testing.assert_allclose(
        ema.mean["a"],
        0.9 * np.asarray(thetas[0]["a"]) + 0.1 * np.asarray(thetas[1]["a"]),
        rtol=1e-5,
    )
