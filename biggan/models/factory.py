"""Build G and D from a `config.model` section (biggan.config.model_config)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from biggan.models import biggan, biggan_deep

ARCHS = ("biggan", "biggan_deep")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _dtype(m):
    if m.dtype not in DTYPES:
        raise ValueError(f"model.dtype={m.dtype!r}: expected one of {list(DTYPES)}")
    return DTYPES[m.dtype]


def _check_arch(m):
    if m.arch not in ARCHS:
        raise ValueError(
            f"model.arch={m.arch!r} is not an architecture; valid choices: {list(ARCHS)}"
        )


def make_generator(m, rngs: nnx.Rngs):
    _check_arch(m)
    common = dict(
        resolution=m.resolution,
        dim_z=m.dim_z,
        shared_dim=m.shared_dim,
        num_classes=m.num_classes,
        attn_res=tuple(m.g_attn),
        bn_eps=m.bn_eps,
        bn_momentum=m.bn_momentum,
        bn_group_size=m.bn_group_size or None,
        sn_eps=m.sn_eps,
        sn_eval_mode=m.sn_eval_mode,
        dtype=_dtype(m),
        rngs=rngs,
    )
    if m.arch == "biggan":
        return biggan.Generator(ch=m.ch_g, hier=m.hier, shared=m.shared, **common)
    return biggan_deep.Generator(ch=m.ch_g, rgb_channels=m.rgb_channels, **common)


def abstract_generator(m) -> nnx.Module:
    """G of `m` as shapes only (no allocation): the structure a checkpoint or an export is restored
    into."""
    return nnx.eval_shape(lambda: make_generator(m, nnx.Rngs(0)))


def make_discriminator(m, rngs: nnx.Rngs, in_channels: int = 3):
    """`in_channels`: 3·m when D scores PacGAN packs of m samples (train.pacgan_pack;
    biggan/train/state.py init_state)."""
    _check_arch(m)
    common = dict(
        resolution=m.resolution,
        ch=m.ch_d,
        num_classes=m.num_classes,
        attn_res=tuple(m.d_attn),
        sn_eps=m.sn_eps,
        sn_eval_mode=m.sn_eval_mode,
        dtype=_dtype(m),
        in_channels=in_channels,
        minibatch_kernels=m.d_minibatch_kernels,
        minibatch_kernel_dim=m.d_minibatch_kernel_dim,
        rngs=rngs,
    )
    if m.arch == "biggan":
        return biggan.Discriminator(**common)
    return biggan_deep.Discriminator(**common)


def abstract_discriminator(m) -> nnx.Module:
    """D's structure from `config.model` (shapes only, nothing allocated)."""
    return nnx.eval_shape(lambda: make_discriminator(m, nnx.Rngs(0)))


def count_params(module) -> int:
    """Number of trainable parameters (nnx.Param leaves); SN vectors and BN statistics are state."""
    return sum(int(x.size) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))
