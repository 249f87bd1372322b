"""BigGAN-deep G and D (paper appendix B; BigGAN-PyTorch BigGANdeep.py): exact parameter counts,
forward shapes at every resolution, bad input.

Numerical parity of G with pytorch-pretrained-biggan is in tests/convert/test_convert_hf.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from biggan.models import biggan_deep
from biggan.models import factory as models
from biggan.models.biggan_deep import Discriminator, Generator


def abstract_count(ctor):
    return models.count_params(nnx.eval_shape(ctor))


@pytest.mark.parametrize(
    "res,rgb,count",
    [
        (128, 128, 50_388_609),  # the released layout: 128-channel rgb conv, first 3 kept
        (128, 3, 50_244_484),
        (256, 128, 55_880_833),
        (512, 128, 56_163_905),
    ],
)
def test_generator_parameter_counts_match_spec(res, rgb, count):
    assert (
        abstract_count(
            lambda: Generator(resolution=res, ch=128, dim_z=128, rgb_channels=rgb, rngs=nnx.Rngs(0))
        )
        == count
    )


def test_discriminator_parameter_count_matches_spec():
    assert (
        abstract_count(lambda: Discriminator(resolution=128, ch=128, rngs=nnx.Rngs(0)))
        == 34_590_210
    )


def test_factory_builds_biggan_deep():
    from biggan import core_config

    m = core_config.model_config()
    m.update(arch="biggan_deep", resolution=128, ch_g=128, ch_d=128, dim_z=128, rgb_channels=128)
    assert abstract_count(lambda: models.make_generator(m, nnx.Rngs(0))) == 50_388_609
    assert abstract_count(lambda: models.make_discriminator(m, nnx.Rngs(0))) == 34_590_210


def test_layout_tables():
    # Two blocks per resolution, the second upsampling; attention at list position 8 = after block
    # 7, which reaches 64² in all three released layouts (pytorch-pretrained-biggan
    # attention_layer_position 8).
    for res in (128, 256, 512):
        plan = biggan_deep.G_BLOCKS[res]
        assert [up for up, _, _ in plan] == [False, True] * (len(plan) // 2)
        assert biggan_deep.g_block_resolutions(res)[7] == 64 and plan[7][0]
        assert biggan_deep.g_block_resolutions(res)[-1] == res
        assert biggan_deep.d_stage_resolutions(res)[-1] == 4
    g = nnx.eval_shape(lambda: Generator(resolution=128, ch=128, rngs=nnx.Rngs(0)))
    assert [i for i, a in enumerate(g.attention) if a is not None] == [7]
    d = nnx.eval_shape(lambda: Discriminator(resolution=128, ch=128, rngs=nnx.Rngs(0)))
    # BigGAN-PyTorch BigGANdeep D: attention after the first stage (2 blocks) at 64², ch·2 channels.
    assert [i for i, a in enumerate(d.attention) if a is not None] == [1]
    assert d.attention[1].gamma.shape == () and d.attention[1].theta.kernel.shape == (1, 1, 256, 32)


@pytest.mark.parametrize("res", [128, 256, 512])
def test_forward_shapes_small_width(res):
    G = Generator(
        resolution=res,
        ch=4,
        dim_z=16,
        shared_dim=8,
        num_classes=5,
        rgb_channels=8,
        rngs=nnx.Rngs(0),
    )
    D = Discriminator(resolution=res, ch=4, num_classes=5, rngs=nnx.Rngs(1))
    z = jax.random.normal(jax.random.key(0), (2, 16))
    y = jnp.array([0, 4])
    for train in (True, False):
        x = G(z, y, train=train)
        assert x.shape == (2, res, res, 3) and x.dtype == jnp.float32
        assert bool(jnp.all(jnp.isfinite(x))) and float(jnp.abs(x).max()) <= 1.0
        assert float(jnp.std(x)) > 0
        d = D(x, y, train=train)
        assert d.shape == (2,) and bool(jnp.all(jnp.isfinite(d)))


def test_class_vector_matches_indices_and_soft_vectors_mix_embeddings():
    G = Generator(resolution=128, ch=4, dim_z=16, shared_dim=8, num_classes=5, rngs=nnx.Rngs(0))
    z = jax.random.normal(jax.random.key(0), (2, 16))
    y = jnp.array([1, 3])
    one_hot = jax.nn.one_hot(y, 5)
    np.testing.assert_allclose(G(z, one_hot, train=False), G(z, y, train=False), atol=1e-6)
    soft = 0.5 * jax.nn.one_hot(jnp.array([1, 1]), 5) + 0.5 * jax.nn.one_hot(jnp.array([3, 3]), 5)
    table = G.shared_embed.embedding[...]
    np.testing.assert_allclose(
        G.embed(soft), 0.5 * (table[jnp.array([1, 1])] + table[jnp.array([3, 3])]), atol=1e-6
    )


class ZeroConv(nnx.Module):
    """Stands in for a block's last conv to switch its residual branch off (an SN conv cannot be
    zero)."""

    def __init__(self, out_ch):
        self.out_ch = out_ch

    def __call__(self, x, train):
        return jnp.zeros(x.shape[:-1] + (self.out_ch,), x.dtype)


def test_generator_skip_drops_channels_then_upsamples():
    # With the residual branch switched off, a block is exactly its skip path (paper appendix B,
    # fig. 16).
    G = Generator(resolution=128, ch=4, dim_z=16, shared_dim=8, num_classes=5, rngs=nnx.Rngs(0))
    block = G.blocks[3]  # 16ch → 8ch, upsampling
    block.conv4 = ZeroConv(32)
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 64))
    cond = jax.random.normal(jax.random.key(2), (2, 24))
    out = block(x, cond, train=False)
    expected = jnp.repeat(jnp.repeat(x[..., :32], 2, axis=1), 2, axis=2)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_discriminator_skip_concatenates_learned_channels():
    D = Discriminator(resolution=128, ch=4, num_classes=5, rngs=nnx.Rngs(0))
    block = D.blocks[0]  # 4 → 8 channels, downsampling
    block.conv4 = ZeroConv(8)
    x = jax.random.normal(jax.random.key(1), (2, 16, 16, 4))
    out = block(x, train=False)
    pooled = x.reshape(2, 8, 2, 8, 2, 4).mean(axis=(2, 4))
    np.testing.assert_allclose(out[..., :4], pooled, atol=1e-6)
    np.testing.assert_allclose(out[..., 4:], block.conv_sc(pooled, train=False), atol=1e-5)


def test_bad_input_is_refused_with_clear_errors():
    G = Generator(resolution=128, ch=4, dim_z=16, shared_dim=8, num_classes=5, rngs=nnx.Rngs(0))
    z = jnp.zeros((2, 16))
    with pytest.raises(ValueError, match="dim_z=16"):
        G(jnp.zeros((2, 15)), jnp.array([0, 1]), train=False)
    with pytest.raises(ValueError, match="num_classes=5"):
        G(z, jnp.zeros((2, 4)), train=False)
    with pytest.raises(ValueError, match="outside"):
        G(z, jnp.array([0, 5]), train=False)
    with pytest.raises(ValueError, match="one label per z"):
        G(z, jnp.array([0, 1, 2]), train=False)
    with pytest.raises(ValueError, match="valid resolutions"):
        Generator(resolution=96, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="attention"):
        Generator(resolution=128, ch=4, attn_res=(48,), rngs=nnx.Rngs(0))
    D = Discriminator(resolution=128, ch=4, num_classes=5, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="expected"):
        D(jnp.zeros((2, 64, 64, 3)), jnp.array([0, 1]), train=False)
