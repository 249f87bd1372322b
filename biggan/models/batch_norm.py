"""Batch norm for BigGAN (Flax NNX): cross-replica statistics over the (sharded) batch or per group,
and the conditional BN of G (`1 + Wγ·cond`, paper appendix B). In training the statistics are the
batch's (and the running averages update); in evaluation the stored ones. The arithmetic runs in
float32 (eps 1e-4, paper appendix C)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from biggan.models.layers import SNLinear, StatsState, lookup_classes, orthogonal_init


def check_group_size(batch: int, group_size: int | None):
    if group_size and batch % group_size:
        raise ValueError(
            f"batch norm group_size={group_size} does not divide the batch of {batch}; "
            f"choose a group size that divides every (micro-)batch, or None for global statistics"
        )


def batch_moments(x, group_size: int | None = None):
    """Per-channel mean and (biased) variance of NHWC `x` in float32.

    group_size None: over the whole batch, which under `jax.jit` with the batch sharded over devices
    is the global (cross-replica) batch — the paper's cross-replica BN (appendix C). group_size k:
    statistics per group of k consecutive samples (a per-GPU BN of the PyTorch codebases), returned
    with a leading group axis.
    """
    x = x.astype(jnp.float32)
    if not group_size:
        mean = jnp.mean(x, axis=(0, 1, 2))
        var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))
        return mean, var
    check_group_size(x.shape[0], group_size)
    xg = x.reshape((x.shape[0] // group_size, group_size) + x.shape[1:])
    mean = jnp.mean(xg, axis=(1, 2, 3))
    var = jnp.mean(jnp.square(xg - mean[:, None, None, None, :]), axis=(1, 2, 3))
    return mean, var


class BatchNorm(nnx.Module):
    """Batch normalisation (no affine of its own unless `affine`), with room for standing
    statistics.

    Training: normalise with batch (or group) statistics and move `mean`/`var` towards them with
    `momentum` (PyTorch convention: new = (1 − m)·old + m·batch; m = 1 stores the batch statistics,
    which is how `biggan.sampling.sampler.standing_stats` collects them). Evaluation: normalise with
    `mean`/`var`. The stored variance is the biased batch variance (BigGAN-PyTorch stores the
    unbiased one; the difference is a factor n/(n−1) with n ≥ B·H·W, below float32 noise for any
    real batch).
    """

    def __init__(
        self,
        num_features,
        *,
        eps=1e-4,
        momentum=0.1,
        group_size=None,
        affine=False,
        dtype=jnp.float32,
    ):
        self.mean = StatsState(jnp.zeros((num_features,)))
        self.var = StatsState(jnp.ones((num_features,)))
        self.scale = nnx.Param(jnp.ones((num_features,))) if affine else None
        self.offset = nnx.Param(jnp.zeros((num_features,))) if affine else None
        self.eps = eps
        self.momentum = momentum
        self.group_size = group_size
        self.dtype = dtype

    def normalize(self, x, train: bool):
        """x̂ = (x − μ)/sqrt(σ² + eps) in float32."""
        xf = x.astype(jnp.float32)
        if not train:
            return (xf - self.mean[...]) * jax.lax.rsqrt(self.var[...] + self.eps)
        mean, var = batch_moments(xf, self.group_size)
        m = self.momentum
        self.mean.set_value(
            (1 - m) * self.mean[...] + m * (mean if mean.ndim == 1 else mean.mean(0))
        )
        self.var.set_value((1 - m) * self.var[...] + m * (var if var.ndim == 1 else var.mean(0)))
        if mean.ndim == 1:
            return (xf - mean) * jax.lax.rsqrt(var + self.eps)
        k = self.group_size
        xg = xf.reshape((xf.shape[0] // k, k) + xf.shape[1:])
        xg = (xg - mean[:, None, None, None, :]) * jax.lax.rsqrt(
            var[:, None, None, None, :] + self.eps
        )
        return xg.reshape(xf.shape)

    def __call__(self, x, train: bool):
        xh = self.normalize(x, train)
        if self.scale is not None:
            xh = xh * self.scale[...] + self.offset[...]
        return xh.astype(self.dtype)


class ConditionalBatchNorm(nnx.Module):
    """Class-conditional BN (paper §3, appendix B): out = x̂·(1 + Wγ·cond) + Wβ·cond, Wγ/Wβ
    bias-free SN linears.

    `cond_dim` 0 drops the linear projections; `num_classes` > 0 adds per-layer class embeddings for
    gain and bias (the non-shared-embedding baseline of the paper's table 1), which are then
    added to the projections of `cond` (the z chunk when skip-z is on).
    """

    def __init__(
        self,
        num_features,
        cond_dim,
        *,
        num_classes=0,
        eps=1e-4,
        momentum=0.1,
        group_size=None,
        sn_eps=1e-4,
        sn_eval_mode="iterate",
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.bn = BatchNorm(
            num_features, eps=eps, momentum=momentum, group_size=group_size, dtype=dtype
        )
        lin = dict(use_bias=False, sn_eps=sn_eps, sn_eval_mode=sn_eval_mode, rngs=rngs)
        self.gain = SNLinear(cond_dim, num_features, **lin) if cond_dim else None
        self.bias = SNLinear(cond_dim, num_features, **lin) if cond_dim else None
        if num_classes:
            # BigGAN-PyTorch's non-shared ccbn: plain (not SN) embeddings, initialised like the
            # rest.
            self.class_gain = nnx.Param(orthogonal_init(rngs.params(), (num_classes, num_features)))
            self.class_bias = nnx.Param(orthogonal_init(rngs.params(), (num_classes, num_features)))
        else:
            self.class_gain = self.class_bias = None
        self.dtype = dtype

    def __call__(self, x, cond, train: bool, y=None):
        xh = self.bn.normalize(x, train)
        gain = jnp.ones((x.shape[0], x.shape[-1]), jnp.float32)
        bias = jnp.zeros((x.shape[0], x.shape[-1]), jnp.float32)
        if self.gain is not None:
            gain = gain + self.gain(cond, train).astype(jnp.float32)
            bias = bias + self.bias(cond, train).astype(jnp.float32)
        if self.class_gain is not None:
            gain = gain + lookup_classes(self.class_gain[...], y)
            bias = bias + lookup_classes(self.class_bias[...], y)
        return (xh * gain[:, None, None, :] + bias[:, None, None, :]).astype(self.dtype)
