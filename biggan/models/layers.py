"""BigGAN building blocks on Flax NNX: spectral norm, SN convolutions and embeddings,
self-attention, minibatch discrimination (batch norm: batch_norm.py).

Every layer takes `train` explicitly: in training, spectral norm advances its power iteration by one
step and batch norm uses batch statistics (and updates its running averages); in evaluation neither
state changes. Parameters are float32; `dtype` is the activation dtype (bfloat16 for the mixed
precision switch). BN and SN arithmetic always runs in float32 (the paper raises both eps to 1e-4
for low precision, appendix C).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

_orthogonal = nnx.initializers.orthogonal()


@functools.partial(jax.jit, static_argnums=(1, 2))
def orthogonal_init(key, shape, dtype=jnp.float32):
    """Paper §3: orthogonal init (Saxe et al. 2014) for every weight; flax's initializer, compiled
    as one program per weight shape (called eagerly it runs four: the QR, a transpose, the scaling
    and a reshape, each lowered and compiled on its own when a model is built)."""
    return _orthogonal(key, shape, dtype)


zeros_init = nnx.initializers.zeros_init()


class SpectralState(nnx.Variable):
    """Power-iteration vectors (u, v) of a spectrally normalised weight: state, never trained."""


class StatsState(nnx.BatchStat):
    """Batch-norm statistics used in evaluation (running averages or standing statistics)."""


def _l2_normalize(x, eps):
    # max(||x||, eps), as torch.nn.functional.normalize (BigGAN-PyTorch and
    # pytorch-pretrained-biggan).
    return x / jnp.maximum(jnp.linalg.norm(x), eps)


def spectral_sigma(w_mat, u, v, *, update: bool, eps: float):
    """Top singular value estimate of `w_mat` (rows = outputs) and the next (u, v).

    `update` True: one power-iteration step from the stored u (v = W^T u, u = W v), σ = uᵀWv with
    the new vectors (BigGAN-PyTorch's `power_iteration`). `update` False: σ = uᵀWv with the stored
    vectors (torch.nn.utils.spectral_norm in eval). Gradients flow through W only: u and v are
    constants.
    """
    if update:
        v = jax.lax.stop_gradient(_l2_normalize(w_mat.T @ u, eps))
        u = jax.lax.stop_gradient(_l2_normalize(w_mat @ v, eps))
    sigma = u @ (w_mat @ v)
    return sigma, u, v


class SpectralNorm(nnx.Module):
    """Holds the (u, v) state of one weight and returns W/σ (Miyato et al. 2018; paper §3). Not
    `nnx.SpectralNorm`, which writes W/σ back into the parameter (google/flax#5576).

    `w_mat_fn` views the stored kernel as (out, in·kh·kw) rows-as-outputs, the PyTorch layout, so u
    has the PyTorch length and converted u vectors can be used unchanged. `eval_mode`: 'iterate' =
    in evaluation run one power step from u without storing it (BigGAN-PyTorch); 'stored' = use the
    stored u and v (pytorch-pretrained-biggan / TF Hub weights).
    """

    def __init__(self, rows: int, cols: int, *, eps: float, eval_mode: str, rngs: nnx.Rngs):
        if eval_mode not in ("iterate", "stored"):
            raise ValueError(
                f"spectral norm eval_mode={eval_mode!r}: expected 'iterate' or 'stored'"
            )
        ku, kv = jax.random.split(rngs.params())
        self.u = SpectralState(_l2_normalize(jax.random.normal(ku, (rows,)), 1e-12))
        self.v = SpectralState(_l2_normalize(jax.random.normal(kv, (cols,)), 1e-12))
        self.eps = eps
        self.eval_mode = eval_mode

    def sigma(self, w_mat, train: bool):
        update = train or self.eval_mode == "iterate"
        sigma, u, v = spectral_sigma(w_mat, self.u[...], self.v[...], update=update, eps=self.eps)
        if train:
            # set_value, not `u[...] = ...`: flax's indexed write compares the value's sharding,
            # which on a tracer builds an error message by walking the whole jaxpr; with hundreds of
            # SN layers that made tracing a BigGAN-deep step take minutes (BUILD_NOTES, "tracing
            # time").
            self.u.set_value(u)
            self.v.set_value(v)
        return sigma


_CONV_DIMS = ("NHWC", "HWIO", "NHWC")
# XLA:CPU lowers a kernel gradient to a "convolution" whose window is the whole image; for H·W ≥ 64²
# it runs at 15–30 GFLOP/s, 4–6× below the forward convolution, and was the largest item of a CPU
# train step (bench/profile_ops.py). Below this size XLA's own kernel gradient is as fast as the
# matmul form.
MATMUL_KERNEL_GRAD_MIN_PIXELS = 64 * 64


def _conv(x, kernel):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=_CONV_DIMS)


def conv_kernel_grad(x, g, kernel_size: int):
    """∂⟨conv(x, W), g⟩/∂W for a stride-1 'SAME' k×k convolution, as k matrix products.

    dW[i, j] = Σ_{n,h,w} x_pad[n, h+i, w+j]ᵀ g[n, h, w]. The k width-shifts of x are concatenated on
    the channel axis once ((N, H, W, k·C), zero-padded at the border), then each height-shift i is
    one (k·C × Co) product over all pixels, batched over n: row i of the kernel in one GEMM.
    """
    n, h, w, c = x.shape
    p = kernel_size // 2
    x_pad = jnp.pad(x, ((0, 0), (0, 0), (p, p), (0, 0)))
    cols = jnp.concatenate([x_pad[:, :, j : j + w] for j in range(kernel_size)], axis=-1)

    def gemm(a, b):  # Σ_n a[n]ᵀ b[n] over the flattened pixels
        prod = jax.lax.dot_general(
            a.reshape(n, -1, a.shape[-1]),
            b.reshape(n, -1, b.shape[-1]),
            (((1,), (1,)), ((0,), (0,))),
            preferred_element_type=jnp.float32,
        )
        return prod.sum(0)

    rows = []
    for i in range(kernel_size):
        d = i - p  # x rows h + d pair with g rows h; rows outside the image contribute nothing
        lo, hi = max(-d, 0), h - max(d, 0)
        rows.append(gemm(cols[:, lo + d : hi + d], g[:, lo:hi]))
    return jnp.stack(rows).reshape(kernel_size, kernel_size, c, g.shape[-1])


@jax.custom_vjp
def _conv_matmul_kernel_grad(x, kernel):
    return _conv(x, kernel)


def _conv_fwd(x, kernel):
    return _conv(x, kernel), (x, kernel)


def _conv_bwd(residuals, g):
    x, kernel = residuals
    dx = jax.vjp(lambda x_: _conv(x_, kernel), x)[1](g)[0]  # XLA's input gradient: fast everywhere
    dk = conv_kernel_grad(x, g, kernel.shape[0]).astype(kernel.dtype)
    return dx, dk


_conv_matmul_kernel_grad.defvjp(_conv_fwd, _conv_bwd)


def pointwise_conv(x, kernel):
    """A 1×1 convolution as the matrix product it is: (N·H·W, C) @ (C, O).

    The values of lax.conv_general_dilated with a 1×1 kernel (bit for bit on the BigGAN shapes we
    checked on XLA:CPU), but XLA:CPU runs the product 1.1–2.7× faster, and 1.9–9.8× faster with both
    gradients, written this way than as a convolution (BigGAN's shortcut and attention shapes,
    `python bench/conv_ops.py`). Half of BigGAN-deep's convolutions are 1×1."""
    n_h_w, (c, o) = x.shape[:-1], kernel.shape[2:]
    return (x.reshape(-1, c) @ kernel.reshape(c, o)).reshape(*n_h_w, o)


def conv2d_same(x, kernel):
    """Stride-1 'SAME' convolution, NHWC × HWIO (BigGAN's pad = k//2). Same values as
    lax.conv_general_dilated. A 1×1 kernel is a matrix product (`pointwise_conv`) on every backend.
    On CPU, for images of ≥ 64² pixels, a k×k kernel's gradient is computed by `conv_kernel_grad`
    (matrix products) instead of XLA's convolution (see MATMUL_KERNEL_GRAD_MIN_PIXELS); GPU and TPU
    keep XLA's own gradient."""
    if kernel.shape[:2] == (1, 1):
        return pointwise_conv(x, kernel)
    big = x.shape[1] * x.shape[2] >= MATMUL_KERNEL_GRAD_MIN_PIXELS
    if (
        big
        and kernel.shape[0] == kernel.shape[1]
        and kernel.shape[0] % 2 == 1
        and jax.default_backend() == "cpu"
    ):
        return _conv_matmul_kernel_grad(x, kernel)
    return _conv(x, kernel)


class SNConv(nnx.Module):
    """Spectrally normalised 2-d convolution, NHWC, kernel HWIO, 'SAME' padding (BigGAN uses pad =
    k//2)."""

    def __init__(
        self,
        in_ch,
        out_ch,
        kernel_size=3,
        *,
        use_bias=True,
        sn: bool = True,
        sn_eps=1e-4,
        sn_eval_mode="iterate",
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        k = kernel_size
        self.kernel = nnx.Param(orthogonal_init(rngs.params(), (k, k, in_ch, out_ch)))
        self.bias = nnx.Param(jnp.zeros((out_ch,))) if use_bias else None
        self.sn = (
            SpectralNorm(out_ch, k * k * in_ch, eps=sn_eps, eval_mode=sn_eval_mode, rngs=rngs)
            if sn
            else None
        )
        self.dtype = dtype

    def normalized_kernel(self, train: bool):
        kernel = self.kernel[...]
        if self.sn is None:
            return kernel
        out_ch = kernel.shape[-1]
        # (kh, kw, in, out) -> (out, kh·kw·in): rows are filters. Column order differs from
        # PyTorch's (in, kh, kw); singular values do not depend on it, v is permuted by the
        # converters.
        w_mat = kernel.reshape(-1, out_ch).T
        return kernel / self.sn.sigma(w_mat, train)

    def __call__(self, x, train: bool):
        kernel = self.normalized_kernel(train).astype(self.dtype)
        y = conv2d_same(x.astype(self.dtype), kernel)
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y


class SNLinear(nnx.Module):
    """Spectrally normalised dense layer; kernel (in, out), viewed as (out, in) for SN."""

    def __init__(
        self,
        in_features,
        out_features,
        *,
        use_bias=True,
        sn: bool = True,
        sn_eps=1e-4,
        sn_eval_mode="iterate",
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.kernel = nnx.Param(orthogonal_init(rngs.params(), (in_features, out_features)))
        self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None
        self.sn = (
            SpectralNorm(out_features, in_features, eps=sn_eps, eval_mode=sn_eval_mode, rngs=rngs)
            if sn
            else None
        )
        self.dtype = dtype

    def normalized_kernel(self, train: bool):
        kernel = self.kernel[...]
        if self.sn is None:
            return kernel
        return kernel / self.sn.sigma(kernel.T, train)

    def __call__(self, x, train: bool):
        y = x.astype(self.dtype) @ self.normalized_kernel(train).astype(self.dtype)
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y


class SNEmbed(nnx.Module):
    """Spectrally normalised embedding table (num, dim); SN views it as (num, dim) like
    BigGAN-PyTorch."""

    def __init__(
        self,
        num_embeddings,
        features,
        *,
        sn: bool = True,
        sn_eps=1e-4,
        sn_eval_mode="iterate",
        rngs: nnx.Rngs,
    ):
        self.embedding = nnx.Param(orthogonal_init(rngs.params(), (num_embeddings, features)))
        self.sn = (
            SpectralNorm(num_embeddings, features, eps=sn_eps, eval_mode=sn_eval_mode, rngs=rngs)
            if sn
            else None
        )

    def __call__(self, y, train: bool):
        table = self.embedding[...]
        if self.sn is not None:
            table = table / self.sn.sigma(table, train)
        return lookup_classes(table, y)


def lookup_classes(table, y):
    """Rows of `table` (num_classes, dim) for integer labels (B,), or the mix for class vectors (B,
    num_classes)."""
    if jnp.issubdtype(y.dtype, jnp.floating):
        return y.astype(jnp.float32) @ table
    return jnp.take(table, y, axis=0)


def upsample2x(x):
    """Nearest-neighbour ×2 upsampling, NHWC."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def avg_pool2x(x):
    """2×2 average pooling with stride 2, NHWC."""
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def max_pool2x(x):
    """2×2 max pooling with stride 2, NHWC."""
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class SelfAttention(nnx.Module):
    """SA-GAN non-local block (Zhang et al. 2019): out = x + γ·o, γ initialised to 0, so identity at
    init.

    Channel split as BigGAN-PyTorch: θ, φ → C/8, g → C/2; φ and g max-pooled 2×2; all four 1×1 convs
    SN and bias-free. Softmax over keys in float32.
    """

    def __init__(
        self, ch, *, sn_eps=1e-4, sn_eval_mode="iterate", dtype=jnp.float32, rngs: nnx.Rngs
    ):
        if ch < 8:
            raise ValueError(
                f"self-attention needs at least 8 channels (θ, φ have ch//8), got {ch}; raise the "
                f"channel multiplier or move/drop the attention resolution (g_attn / d_attn)"
            )
        conv = dict(
            kernel_size=1,
            use_bias=False,
            sn_eps=sn_eps,
            sn_eval_mode=sn_eval_mode,
            dtype=dtype,
            rngs=rngs,
        )
        self.theta = SNConv(ch, ch // 8, **conv)
        self.phi = SNConv(ch, ch // 8, **conv)
        self.g = SNConv(ch, ch // 2, **conv)
        self.o = SNConv(ch // 2, ch, **conv)
        self.gamma = nnx.Param(jnp.zeros(()))
        self.dtype = dtype

    def __call__(self, x, train: bool):
        b, h, w, c = x.shape
        theta = self.theta(x, train).reshape(b, h * w, c // 8)
        phi = max_pool2x(self.phi(x, train)).reshape(b, h * w // 4, c // 8)
        g = max_pool2x(self.g(x, train)).reshape(b, h * w // 4, c // 2)
        logits = jnp.einsum("bqc,bkc->bqk", theta, phi, preferred_element_type=jnp.float32)
        beta = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
        o = jnp.einsum("bqk,bkc->bqc", beta, g).reshape(b, h, w, c // 2)
        o = self.o(o, train)
        return (x + self.gamma[...].astype(self.dtype) * o).astype(self.dtype)


class MinibatchDiscrimination(nnx.Module):
    """Salimans et al. 2016 §3.2. Features f (N, A) times a tensor T (A, B, C) give M (N, B, C);
    c_b(i, j) = exp(−‖M_i,b − M_j,b‖_1) (L1 over C); o(i)_b = Σ_{j≠i} c_b(i, j); returns [f, o]
    of shape (N, A + B). The paper sums over all j, which adds the constant c_b(i, i) = 1;
    `include_self=True` reproduces that.

    Here A = in_features, B = num_kernels, C = kernel_dim.
    """

    def __init__(
        self,
        in_features: int,
        num_kernels: int,
        kernel_dim: int,
        *,
        include_self: bool = False,
        init_std: float = 0.05,
        rngs: nnx.Rngs,
    ):
        self.in_features = in_features
        self.num_kernels = num_kernels
        self.kernel_dim = kernel_dim
        self.include_self = include_self
        self.T = nnx.Param(
            init_std * jax.random.normal(rngs.params(), (in_features, num_kernels, kernel_dim))
        )

    @property
    def out_features(self) -> int:
        return self.in_features + self.num_kernels

    def __call__(self, features: jax.Array, groups: int = 1) -> jax.Array:
        """`groups`: the batch is `groups` contiguous equal minibatches compared only within
        themselves (the train step scores [fakes; reals] in one pass, and Salimans et al. compare a
        sample with the other samples of its own minibatch, all real or all fake)."""
        if features.ndim != 2 or features.shape[1] != self.in_features:
            raise ValueError(
                f"MinibatchDiscrimination expects features (N, {self.in_features}), got "
                f"{features.shape}; flatten/pool D's features first."
            )
        n = features.shape[0]
        if groups < 1 or n % groups:
            raise ValueError(
                f"MinibatchDiscrimination groups={groups} must be ≥ 1 and divide the batch of {n}."
            )
        m = jnp.einsum("na,abc->nbc", features.astype(jnp.float32), self.T[...])
        m = m.reshape((groups, n // groups) + m.shape[1:])  # (G, n, B, C)
        l1 = jnp.sum(jnp.abs(m[:, :, None] - m[:, None, :]), axis=-1)  # (G, n, n, B)
        similarity = jnp.exp(-l1)
        if not self.include_self:
            similarity = (
                similarity * (1.0 - jnp.eye(n // groups, dtype=similarity.dtype))[None, :, :, None]
            )
        o = jnp.sum(similarity, axis=2).reshape(n, -1)  # (N, B)
        return jnp.concatenate([features, o.astype(features.dtype)], axis=-1)
