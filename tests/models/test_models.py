"""BigGAN architectures and layers: parameter counts (BigGAN-PyTorch's BigGAN.py and
google/compare_gan's test give them), shapes, SN, cross-replica BN, bad input."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from biggan import config as cfg
from biggan import core_config
from biggan.models import batch_norm, biggan, layers
from biggan.models import factory as models
from biggan.models.biggan import Discriminator, Generator
from biggan.runtime import sharding


def abstract_count(ctor):
    return models.count_params(nnx.eval_shape(ctor))


@pytest.mark.parametrize(
    "res,ch,dim_z,g_attn,d_attn,g_count,d_count",
    [
        (128, 96, 120, (64,), (64,), 70_433_988, 87_982_370),
        (256, 96, 140, (128,), (64,), 82_097_604, 99_225_890),
        (128, 64, 120, (64,), (64,), 31_978_628, 39_448_258),
    ],
)
def test_biggan_parameter_counts_match_spec(res, ch, dim_z, g_attn, d_attn, g_count, d_count):
    assert (
        abstract_count(
            lambda: Generator(resolution=res, ch=ch, dim_z=dim_z, attn_res=g_attn, rngs=nnx.Rngs(0))
        )
        == g_count
    )
    assert (
        abstract_count(
            lambda: Discriminator(resolution=res, ch=ch, attn_res=d_attn, rngs=nnx.Rngs(0))
        )
        == d_count
    )


def test_summary_last_line(tmp_path):
    out = (
        subprocess.run(
            [sys.executable, "-m", "biggan.summary", "configs/biggan_128.py"],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()
    )
    assert out[-1] == "G params: 70433988 D params: 87982370"


@pytest.mark.parametrize("res", biggan.RESOLUTIONS)
def test_forward_every_resolution(res):
    n_blocks = len(biggan.G_CHANNELS[res])
    attn = (min(64, res // 2),)
    G = Generator(
        resolution=res,
        ch=8,
        dim_z=2 * (n_blocks + 1),
        shared_dim=8,
        num_classes=5,
        attn_res=attn,
        rngs=nnx.Rngs(0),
    )
    D = Discriminator(resolution=res, ch=8, num_classes=5, attn_res=attn, rngs=nnx.Rngs(1))
    z = jax.random.normal(jax.random.key(0), (2, G.dim_z))
    y = jnp.array([0, 4])
    for train in (True, False):
        x = G(z, y, train=train)
        assert x.shape == (2, res, res, 3)
        assert bool(jnp.all(jnp.isfinite(x))) and float(jnp.abs(x).max()) <= 1.0
        d = D(x, y, train=train)
        assert d.shape == (2,) and bool(jnp.all(jnp.isfinite(d)))


def test_spectral_norm_converges_to_unit_top_singular_value():
    lin = layers.SNLinear(48, 32, rngs=nnx.Rngs(0))
    lin.kernel[...] = jax.random.normal(jax.random.key(1), (48, 32)) * 3.0
    call = nnx.jit(lambda m: m.normalized_kernel(train=True))
    for _ in range(200):
        w = call(lin)
    assert abs(np.linalg.svd(np.asarray(w), compute_uv=False)[0] - 1.0) < 1e-3
    # Convolution: the (out, kh·kw·in) view is what is normalised.
    conv = layers.SNConv(6, 10, 3, rngs=nnx.Rngs(2))
    call = nnx.jit(lambda m: m.normalized_kernel(train=True))
    for _ in range(200):
        k = call(conv)
    assert abs(np.linalg.svd(np.asarray(k).reshape(-1, 10).T, compute_uv=False)[0] - 1.0) < 1e-3


@pytest.mark.parametrize("eval_mode", ["iterate", "stored"])
def test_spectral_norm_state_frozen_in_evaluation_and_no_gradient_to_u(eval_mode):
    lin = layers.SNLinear(16, 8, sn_eval_mode=eval_mode, rngs=nnx.Rngs(0))
    # Not the orthogonal init: all its singular values are 1, so every u is already a fixed point.
    lin.kernel[...] = jax.random.normal(jax.random.key(1), (16, 8))
    u0, v0 = np.asarray(lin.sn.u[...]), np.asarray(lin.sn.v[...])
    lin(jnp.ones((2, 16)), train=False)
    np.testing.assert_array_equal(lin.sn.u[...], u0)
    np.testing.assert_array_equal(lin.sn.v[...], v0)
    lin(jnp.ones((2, 16)), train=True)
    assert not np.allclose(lin.sn.u[...], u0)

    graphdef, params, sn_state = nnx.split(lin, nnx.Param, layers.SpectralState)

    def out(params, sn_state):
        return jnp.sum(
            nnx.merge(graphdef, params, sn_state, copy=True)(jnp.ones((2, 16)), train=True) ** 2
        )

    g_params, g_sn = jax.grad(out, argnums=(0, 1))(params, sn_state)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(g_sn))
    assert float(jnp.abs(g_params["kernel"][...]).max()) > 0.0


def _small_g(group_size=None):
    return Generator(
        resolution=32,
        ch=4,
        dim_z=16,
        shared_dim=8,
        num_classes=10,
        attn_res=(16,),
        bn_group_size=group_size,
        rngs=nnx.Rngs(0),
    )


def _train_forward(graphdef, state, z, y):
    g = nnx.merge(graphdef, state, copy=True)
    x = g(z, y, train=True)
    return x, nnx.state(g, layers.StatsState)


def test_cross_replica_batchnorm_on_8_devices_equals_single_device():
    assert jax.device_count() == 8, "tests/conftest.py simulates 8 CPU devices"
    graphdef, state = nnx.split(_small_g())
    z = jax.random.normal(jax.random.key(0), (16, 16))
    y = jnp.arange(16) % 10
    step = jax.jit(_train_forward, static_argnums=0)
    x1, stats1 = step(graphdef, state, z, y)
    mesh = sharding.make_mesh()
    zs, ys = jax.device_put((z, y), sharding.batch_sharding(mesh))
    x8, stats8 = step(graphdef, sharding.replicate(state, mesh), zs, ys)
    assert len(x8.sharding.device_set) == 8
    np.testing.assert_allclose(x8, x1, atol=2e-5)
    for a, b in zip(jax.tree.leaves(stats8), jax.tree.leaves(stats1)):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_grouped_batchnorm_matches_hand_computation_and_differs_from_global():
    x = jax.random.normal(jax.random.key(3), (8, 2, 2, 3)) * jnp.arange(1, 9.0)[:, None, None, None]
    bn = batch_norm.BatchNorm(3, eps=1e-4, momentum=1.0, group_size=4)
    out = bn(x, train=True)
    xn = np.asarray(x, np.float64)
    expected = np.empty_like(xn)
    for g in range(2):
        grp = xn[4 * g : 4 * g + 4]
        expected[4 * g : 4 * g + 4] = (grp - grp.mean((0, 1, 2))) / np.sqrt(
            grp.var((0, 1, 2)) + 1e-4
        )
    np.testing.assert_allclose(out, expected, atol=1e-5)
    global_out = batch_norm.BatchNorm(3, eps=1e-4)(x, train=True)
    assert float(jnp.abs(out - global_out).max()) > 1e-2
    # momentum 1: stored statistics are the mean of the groups' statistics.
    np.testing.assert_allclose(
        bn.mean[...], np.mean([xn[:4].mean((0, 1, 2)), xn[4:].mean((0, 1, 2))], 0), atol=1e-5
    )
    with pytest.raises(ValueError, match="group_size=3 does not divide"):
        batch_norm.BatchNorm(3, group_size=3)(x, train=True)


def test_grouped_generator_on_8_devices_matches_single_device():
    graphdef, state = nnx.split(_small_g(group_size=2))
    z = jax.random.normal(jax.random.key(0), (16, 16))
    y = jnp.arange(16) % 10
    step = jax.jit(_train_forward, static_argnums=0)
    x1, _ = step(graphdef, state, z, y)
    mesh = sharding.make_mesh()
    x8, _ = step(
        graphdef,
        sharding.replicate(state, mesh),
        *jax.device_put((z, y), sharding.batch_sharding(mesh)),
    )
    np.testing.assert_allclose(x8, x1, atol=2e-5)
    xg = jax.jit(_train_forward, static_argnums=0)(*nnx.split(_small_g()), z, y)[0]
    assert float(jnp.abs(xg - x1).max()) > 1e-3


def test_conditional_bn_is_identity_affine_when_projections_are_zero():
    cbn = batch_norm.ConditionalBatchNorm(6, 5, rngs=nnx.Rngs(0))
    cbn.gain.kernel[...] = jnp.zeros_like(cbn.gain.kernel[...])
    cbn.bias.kernel[...] = jnp.zeros_like(cbn.bias.kernel[...])
    cbn.gain.sn = cbn.bias.sn = (
        None  # W/σ(W) is undefined for W = 0: test the projection without SN
    )
    x = jax.random.normal(jax.random.key(1), (4, 3, 3, 6)) * 2 + 1
    out = cbn(x, jax.random.normal(jax.random.key(2), (4, 5)), train=True)
    np.testing.assert_allclose(out, batch_norm.BatchNorm(6)(x, train=True), atol=1e-6)


def test_attention_is_identity_at_initialisation():
    att = layers.SelfAttention(16, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 16))
    np.testing.assert_array_equal(att(x, train=True), x)
    att.gamma[...] = jnp.array(0.5)
    assert float(jnp.abs(att(x, train=False) - x).max()) > 1e-3


def test_bfloat16_activations_keep_float32_parameters():
    G = Generator(
        resolution=32,
        ch=4,
        dim_z=16,
        shared_dim=8,
        num_classes=10,
        attn_res=(16,),
        dtype=jnp.bfloat16,
        rngs=nnx.Rngs(0),
    )
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(G, nnx.Param)))
    x = G(jnp.ones((2, 16)), jnp.array([1, 2]), train=True)
    assert x.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(x)))
    assert all(s.dtype == jnp.float32 for s in jax.tree.leaves(nnx.state(G, layers.StatsState)))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(
        ValueError, match=r"resolution 100 .*valid resolutions: \[32, 64, 128, 256, 512\]"
    ):
        Generator(resolution=100, rngs=nnx.Rngs(0))
    m = core_config.model_config()
    m.arch = "biggan_deeep"
    with pytest.raises(
        ValueError, match=r"biggan_deeep.*valid choices: \['biggan', 'biggan_deep'\]"
    ):
        models.make_generator(m, nnx.Rngs(0))
    G = _small_g()
    with pytest.raises(ValueError, match=r"class index 10 is outside \[0, 10\)"):
        G(jnp.zeros((2, 16)), jnp.array([1, 10]), train=False)
    with pytest.raises(ValueError, match=r"z has shape \(2, 12\); expected \(batch, dim_z=16\)"):
        G(jnp.zeros((2, 12)), jnp.array([1, 2]), train=False)
    with pytest.raises(ValueError, match="dim_z=17 must split into 4 equal chunks"):
        Generator(resolution=32, ch=4, dim_z=17, num_classes=10, attn_res=(), rngs=nnx.Rngs(0))
    with pytest.raises(
        ValueError, match=r"attention resolution\(s\) \[48\].*valid choices: \[8, 16, 32\]"
    ):
        Generator(resolution=32, ch=4, dim_z=16, attn_res=(48,), rngs=nnx.Rngs(0))
    c = cfg.base_config()
    c.model.reslution = 128
    with pytest.raises(
        KeyError, match=r"unknown config key 'model.reslution'; did you mean model.resolution"
    ):
        cfg.check_keys(c, cfg.base_config())


def _xla_conv(x, w):  # the reference: XLA's convolution and its own autodiff
    return jax.lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _xla_conv_vjp(x, w, g):
    return jax.vjp(_xla_conv, x, w)[1](g)


@pytest.mark.parametrize("shape,k", [((2, 64, 64, 5, 7), 3), ((1, 66, 64, 3, 2), 5)])
def test_matmul_kernel_gradient_equals_xla_convolution_gradient(shape, k):
    n, h, w, c, co = shape
    x, g = (
        jax.random.normal(jax.random.key(i), s) for i, s in ((0, (n, h, w, c)), (2, (n, h, w, co)))
    )
    kernel = jax.random.normal(jax.random.key(1), (k, k, c, co))
    # On CPU, images of ≥ 64² pixels take the custom-VJP path
    # (layers.MATMUL_KERNEL_GRAD_MIN_PIXELS).
    assert "custom_vjp_call" in str(jax.make_jaxpr(layers.conv2d_same)(x, kernel))
    np.testing.assert_array_equal(layers.conv2d_same(x, kernel), _xla_conv(x, kernel))
    dx_ref, dk_ref = _xla_conv_vjp(x, kernel, g)
    dx, dk = jax.vjp(layers.conv2d_same, x, kernel)[1](g)
    np.testing.assert_array_equal(dx, dx_ref)  # the input gradient is XLA's own
    np.testing.assert_allclose(dk, dk_ref, rtol=1e-5, atol=1e-5 * float(jnp.abs(dk_ref).max()))


@pytest.mark.parametrize("shape", [(2, 64, 72, 4, 3), (3, 8, 8, 16, 32), (2, 5, 7, 6, 1)])
def test_pointwise_conv_is_the_1x1_convolution_with_its_gradients(shape):
    n, h, w, c, co = shape
    x, g = (
        jax.random.normal(jax.random.key(i), s) for i, s in ((0, (n, h, w, c)), (2, (n, h, w, co)))
    )
    kernel = jax.random.normal(jax.random.key(1), (1, 1, c, co))
    # a matmul, not a conv
    assert "conv_general_dilated" not in str(jax.make_jaxpr(layers.conv2d_same)(x, kernel))
    y_ref = _xla_conv(x, kernel)
    np.testing.assert_allclose(
        layers.conv2d_same(x, kernel), y_ref, rtol=1e-6, atol=1e-6 * float(jnp.abs(y_ref).max())
    )
    for got, ref in zip(jax.vjp(layers.conv2d_same, x, kernel)[1](g), _xla_conv_vjp(x, kernel, g)):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * float(jnp.abs(ref).max()))


def test_matmul_kernel_gradient_with_batch_sharded_on_8_devices_equals_single_device():
    x = jax.random.normal(jax.random.key(0), (8, 64, 64, 4))
    g = jax.random.normal(jax.random.key(1), (8, 64, 64, 6))
    kernel = jax.random.normal(jax.random.key(2), (3, 3, 4, 6))
    grad = jax.jit(lambda x_, w_, g_: jax.vjp(layers.conv2d_same, x_, w_)[1](g_)[1])
    mesh = sharding.make_mesh()
    xs, gs = jax.device_put((x, g), sharding.batch_sharding(mesh))
    dk8 = grad(xs, sharding.replicate(kernel, mesh), gs)
    dk_ref = _xla_conv_vjp(x, kernel, g)[1]
    tol = dict(rtol=1e-5, atol=1e-5 * float(jnp.abs(dk_ref).max()))
    np.testing.assert_allclose(dk8, grad(x, kernel, g), **tol)
    np.testing.assert_allclose(dk8, dk_ref, **tol)


def test_small_images_keep_xla_convolution_gradient():
    x, kernel = jnp.ones((1, 32, 32, 2)), jnp.ones((3, 3, 2, 2))
    assert "custom_vjp_call" not in str(jax.make_jaxpr(layers.conv2d_same)(x, kernel))
