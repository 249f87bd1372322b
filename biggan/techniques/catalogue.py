"""The wider catalogue of GAN training techniques (Salimans et al. 2016 and after; README, Ablations), as pure
jit-able pieces. The techniques of this package call them (the file in brackets; models: biggan.py):

  minibatch discrimination   MinibatchDiscrimination (NNX module on D's flat features) [biggan.py's D head]
  feature matching           feature_matching_loss (a G loss on an intermediate D layer) [feature_matching.py]
  instance noise             instance_noise_sigma, add_instance_noise [instance_noise.py]
  experience replay          ReplayBuffer, replay_init / replay_add / replay_sample / replay_mix [replay.py]
  PacGAN                     pack_samples, unpack_samples, pacgan_in_channels [pacgan.py]
  dropout on D's last layer  feature_dropout (paper §4.2: keep 0.5…0.95) [dropout.py]
  unrolled D steps           unroll_discriminator [train_step.unrolled_discriminator]
  virtual batch norm         reference_batch_stats, virtual_batch_norm (not wired into the step)

Label smoothing / soft / noisy labels live in losses.py (labels.py), historical averaging in regularisers.py
(historical_averaging.py).

Two-time-scale update rule (TTUR, Heusel et al. 2017) needs no code: it is D and G optimisers
with different learning rates (e.g. optax.adam(4e-4, b1=0, b2=0.999) for D and optax.adam(1e-4, …)
for G — BigGAN's own recipe is TTUR, paper appendix C). Several D steps per G step is a loop count in the
train step (2 in the paper, table 1 row 8).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array


# --------------------------------------------------------------------------- minibatch discrimination

class MinibatchDiscrimination(nnx.Module):
    """Salimans et al. 2016 §3.2. Features f (N, A) times a tensor T (A, B, C) give M (N, B, C);
    c_b(i, j) = exp(−‖M_i,b − M_j,b‖_1) (L1 over C); o(i)_b = Σ_{j≠i} c_b(i, j); returns [f, o]
    of shape (N, A + B). The paper sums over all j, which adds the constant c_b(i, i) = 1;
    `include_self=True` reproduces that.

    Here A = in_features, B = num_kernels, C = kernel_dim.
    """

    def __init__(self, in_features: int, num_kernels: int, kernel_dim: int, *, include_self: bool = False,
                 init_std: float = 0.05, rngs: nnx.Rngs):
        self.in_features = in_features
        self.num_kernels = num_kernels
        self.kernel_dim = kernel_dim
        self.include_self = include_self
        self.T = nnx.Param(init_std * jax.random.normal(rngs.params(), (in_features, num_kernels, kernel_dim)))

    @property
    def out_features(self) -> int:
        return self.in_features + self.num_kernels

    def __call__(self, features: Array, groups: int = 1) -> Array:
        """`groups`: the batch is `groups` contiguous equal minibatches compared only within themselves
        (the train step scores [fakes; reals] in one pass, and Salimans et al. compare a sample with
        the other samples of its own minibatch, all real or all fake)."""
        if features.ndim != 2 or features.shape[1] != self.in_features:
            raise ValueError(f"MinibatchDiscrimination expects features (N, {self.in_features}), got "
                             f"{features.shape}; flatten/pool D's features first.")
        n = features.shape[0]
        if groups < 1 or n % groups:
            raise ValueError(f"MinibatchDiscrimination groups={groups} must be ≥ 1 and divide the batch of {n}.")
        m = jnp.einsum("na,abc->nbc", features.astype(jnp.float32), self.T[...])
        m = m.reshape((groups, n // groups) + m.shape[1:])                 # (G, n, B, C)
        l1 = jnp.sum(jnp.abs(m[:, :, None] - m[:, None, :]), axis=-1)      # (G, n, n, B)
        similarity = jnp.exp(-l1)
        if not self.include_self:
            similarity = similarity * (1.0 - jnp.eye(n // groups, dtype=similarity.dtype))[None, :, :, None]
        o = jnp.sum(similarity, axis=2).reshape(n, -1)                      # (N, B)
        return jnp.concatenate([features, o.astype(features.dtype)], axis=-1)


# --------------------------------------------------------------------------- feature matching

def feature_matching_loss(features_real: Array, features_fake: Array) -> Array:
    """‖E f(x) − E f(G(z))‖²_2 over an intermediate D layer (Salimans et al. 2016 §3.1), features
    (B, ...) flattened. A G loss: the real term only depends on D, so no stop-gradient is needed
    when differentiating w.r.t. G."""
    mean_real = jnp.mean(features_real.reshape(features_real.shape[0], -1).astype(jnp.float32), axis=0)
    mean_fake = jnp.mean(features_fake.reshape(features_fake.shape[0], -1).astype(jnp.float32), axis=0)
    if mean_real.shape != mean_fake.shape:
        raise ValueError(f"feature shapes differ: real {features_real.shape[1:]} vs fake {features_fake.shape[1:]}.")
    return jnp.sum(jnp.square(mean_real - mean_fake))


# --------------------------------------------------------------------------- instance noise

def instance_noise_sigma(step, sigma_start: float, anneal_steps: int) -> Array:
    """σ(step) annealed linearly from sigma_start to 0 at anneal_steps (Sønderby et al. 2016)."""
    if anneal_steps <= 0:
        raise ValueError(f"anneal_steps must be > 0, got {anneal_steps}.")
    frac = jnp.clip(jnp.asarray(step, jnp.float32) / anneal_steps, 0.0, 1.0)
    return sigma_start * (1.0 - frac)


def add_instance_noise(rng: Array, x: Array, sigma) -> Array:
    """x + σ·N(0, I): apply to BOTH real and fake D inputs (with different keys)."""
    return (x + sigma * jax.random.normal(rng, x.shape, jnp.float32)).astype(x.dtype)


# --------------------------------------------------------------------------- experience replay

class ReplayBuffer(NamedTuple):
    """Ring buffer of past fakes (a pytree): images (capacity, H, W, C), labels (capacity,),
    size = filled slots, next = write position."""
    images: Array
    labels: Array
    size: Array
    next: Array


def replay_init(capacity: int, image_shape: tuple[int, ...], dtype=jnp.float32) -> ReplayBuffer:
    if capacity <= 0:
        raise ValueError(f"replay capacity must be > 0, got {capacity}.")
    return ReplayBuffer(jnp.zeros((capacity,) + tuple(image_shape), dtype), jnp.zeros((capacity,), jnp.int32),
                        jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def replay_add(buffer: ReplayBuffer, images: Array, labels: Array | None = None) -> ReplayBuffer:
    """Write a batch at the ring position, overwriting the oldest entries (FIFO). No gradient."""
    capacity = buffer.images.shape[0]
    n = images.shape[0]
    if n > capacity:
        raise ValueError(f"cannot add {n} images to a replay buffer of capacity {capacity}; raise the capacity.")
    if images.shape[1:] != buffer.images.shape[1:]:
        raise ValueError(f"replay images {images.shape[1:]} do not match the buffer's {buffer.images.shape[1:]}.")
    labels = jnp.zeros((n,), jnp.int32) if labels is None else labels.astype(jnp.int32)
    idx = (buffer.next + jnp.arange(n)) % capacity
    return ReplayBuffer(
        buffer.images.at[idx].set(jax.lax.stop_gradient(images).astype(buffer.images.dtype)),
        buffer.labels.at[idx].set(labels),
        jnp.minimum(buffer.size + n, capacity),
        (buffer.next + n) % capacity,
    )


def replay_sample(buffer: ReplayBuffer, rng: Array, n: int) -> tuple[Array, Array]:
    """n entries drawn uniformly (with replacement) from the filled part. On an empty buffer it
    returns slot 0 (zeros) — use replay_mix, which falls back to the fresh fakes then."""
    idx = jax.random.randint(rng, (n,), 0, jnp.maximum(buffer.size, 1))
    return buffer.images[idx], buffer.labels[idx]


def replay_mix(rng: Array, buffer: ReplayBuffer, fake_images: Array, fake_labels: Array,
               fraction: float) -> tuple[Array, Array]:
    """Replace the first round(fraction·B) fakes of a D batch with replayed ones (fresh fakes kept
    while the buffer is empty)."""
    n_old = int(round(fraction * fake_images.shape[0]))
    if n_old == 0:
        return fake_images, fake_labels
    old_images, old_labels = replay_sample(buffer, rng, n_old)
    use = buffer.size > 0
    images = fake_images.at[:n_old].set(jnp.where(use, old_images.astype(fake_images.dtype), fake_images[:n_old]))
    labels = fake_labels.at[:n_old].set(jnp.where(use, old_labels.astype(fake_labels.dtype), fake_labels[:n_old]))
    return images, labels


# --------------------------------------------------------------------------- PacGAN

def pacgan_in_channels(image_channels: int, pack: int) -> int:
    """D's input channel count under PacGAN packing of `pack` samples: pack · C."""
    return image_channels * pack


def pack_samples(x: Array, pack: int) -> Array:
    """(B, H, W, C) → (B/m, H, W, m·C): m consecutive samples stacked on channels, sample-major
    (channels [0:C] are sample 0 of the group). Lin et al. 2018. With a class-conditional
    (projection) D every sample of a group should share one label (or D be unconditional)."""
    b = x.shape[0]
    if pack < 1 or b % pack:
        raise ValueError(f"PacGAN pack={pack} must be ≥ 1 and divide the batch of {b}.")
    g = x.reshape((b // pack, pack) + x.shape[1:])                # (B/m, m, H, W, C)
    g = jnp.moveaxis(g, 1, -2)                                    # (B/m, H, W, m, C)
    return g.reshape(g.shape[:-2] + (pack * x.shape[-1],))


def unpack_samples(x: Array, pack: int) -> Array:
    """Inverse of pack_samples."""
    c = x.shape[-1] // pack
    g = x.reshape(x.shape[:-1] + (pack, c))                       # (B/m, H, W, m, C)
    g = jnp.moveaxis(g, -2, 1)                                    # (B/m, m, H, W, C)
    return g.reshape((-1,) + g.shape[2:])


# --------------------------------------------------------------------------- dropout on D's features

def feature_dropout(rng: Array | None, h: Array, keep_prob: float, train: bool) -> Array:
    """Inverted dropout on D's final features (paper §4.2, keep 0.5…0.95): each unit kept with
    probability keep_prob and scaled by 1/keep_prob in training; identity in evaluation."""
    if not 0.0 < keep_prob <= 1.0:
        raise ValueError(f"keep_prob must be in (0, 1], got {keep_prob}.")
    if not train or keep_prob == 1.0:
        return h
    if rng is None:
        raise ValueError("feature_dropout in training needs a PRNG key.")
    mask = jax.random.bernoulli(rng, keep_prob, h.shape)
    return jnp.where(mask, h / keep_prob, jnp.zeros_like(h))


# --------------------------------------------------------------------------- unrolled D

def unroll_discriminator(d_step_fn: Callable, d_state, k: int, unroll: bool = False):
    """Apply `d_state = d_step_fn(d_state, i)` for i = 0 … k−1 with lax.scan and return the result
    (`unroll=True`: a Python loop with i a Python int — faster for convolutions on XLA:CPU, see
    train_step.scan_or_unroll).

    Unrolled GANs (Metz et al. 2017): at a G step, unroll k D updates from the current D (each step
    drawing its own batch, e.g. indexing a stacked batch with i inside d_step_fn) and compute G's
    loss against the unrolled D. Differentiating G's loss through this function backpropagates
    through the k D updates (the full unrolled gradient); wrap the result in jax.lax.stop_gradient
    for the cheaper surrogate. Only the real D update (outside) is kept; the unrolled state is
    discarded after the G step.
    """
    if k < 0:
        raise ValueError(f"unroll steps k must be ≥ 0, got {k}.")
    if unroll:
        for i in range(k):
            d_state = d_step_fn(d_state, i)
        return d_state
    final, _ = jax.lax.scan(lambda s, i: (d_step_fn(s, i), None), d_state, jnp.arange(k))
    return final


# --------------------------------------------------------------------------- virtual batch norm

class VBNStats(NamedTuple):
    """Per-channel mean and mean of squares of a fixed reference batch, and its size."""
    mean: Array
    mean_sq: Array
    count: int


def reference_batch_stats(reference: Array) -> VBNStats:
    """Statistics of the reference batch (chosen once at the start of training) over all axes but
    the last (channels): (N, H, W, C) or (N, C)."""
    x = reference.astype(jnp.float32)
    axes = tuple(range(x.ndim - 1))
    return VBNStats(jnp.mean(x, axes), jnp.mean(jnp.square(x), axes), int(reference.shape[0]))


def virtual_batch_norm(x: Array, stats: VBNStats, scale: Array | None = None, offset: Array | None = None,
                       eps: float = 1e-5, include_self: bool = True) -> Array:
    """Virtual batch norm (Salimans et al. 2016 §3.4). Each example is normalised with the
    statistics of {reference batch} ∪ {itself}: with N reference examples, μ_i = (N·μ_ref + μ(x_i))/(N+1)
    and likewise for E[x²], var = E[x²] − μ² (what batch norm over the N+1 examples would compute).
    include_self=False uses the reference statistics alone (to normalise the reference batch itself)."""
    xf = x.astype(jnp.float32)
    if include_self:
        spatial = tuple(range(1, x.ndim - 1))
        own_mean = jnp.mean(xf, axis=spatial, keepdims=True) if spatial else xf
        own_mean_sq = jnp.mean(jnp.square(xf), axis=spatial, keepdims=True) if spatial else jnp.square(xf)
        w_new = 1.0 / (stats.count + 1.0)
        mean = w_new * own_mean + (1.0 - w_new) * stats.mean
        mean_sq = w_new * own_mean_sq + (1.0 - w_new) * stats.mean_sq
    else:
        mean, mean_sq = stats.mean, stats.mean_sq
    var = jnp.maximum(mean_sq - jnp.square(mean), 0.0)
    out = (xf - mean) * jax.lax.rsqrt(var + eps)
    if scale is not None:
        out = out * scale
    if offset is not None:
        out = out + offset
    return out.astype(x.dtype)
