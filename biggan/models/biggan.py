"""BigGAN generator and discriminator (paper appendix B), written as explicit per-resolution tables.

Layouts follow the author's BigGAN-PyTorch (BigGAN.py: G_arch / D_arch), in NHWC. Parameter counts
match BigGAN-PyTorch's and google/compare_gan's exactly (tests/models/test_models.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from biggan.models import batch_norm, layers

# Channel multipliers (×ch) per G block, input → output; every G block upsamples ×2 from 4×4.
G_CHANNELS = {
    32: [(4, 4), (4, 4), (4, 4)],
    64: [(16, 16), (16, 8), (8, 4), (4, 2)],
    128: [(16, 16), (16, 8), (8, 4), (4, 2), (2, 1)],
    256: [(16, 16), (16, 8), (8, 8), (8, 4), (4, 2), (2, 1)],
    512: [(16, 16), (16, 8), (8, 8), (8, 4), (4, 2), (2, 1), (1, 1)],
}

# D blocks: (in multiplier or 0 for the RGB image, out multiplier, downsample). The architecture tables
# keep a row per resolution (fmt: off).
# fmt: off
D_CHANNELS = {
    32: [(0, 4, True), (4, 4, True), (4, 4, False), (4, 4, False)],
    64: [(0, 1, True), (1, 2, True), (2, 4, True), (4, 8, True), (8, 16, False)],
    128: [(0, 1, True), (1, 2, True), (2, 4, True), (4, 8, True), (8, 16, True), (16, 16, False)],
    256: [(0, 1, True), (1, 2, True), (2, 4, True), (4, 8, True), (8, 8, True), (8, 16, True), (16, 16, False)],
    # BigGAN-PyTorch has no 512 D; the paper's table 6 does.
    512: [(0, 1, True), (1, 1, True), (1, 2, True), (2, 4, True), (4, 8, True), (8, 8, True), (8, 16, True),
          (16, 16, False)],
}
# fmt: on

RESOLUTIONS = tuple(sorted(G_CHANNELS))


def check_resolution(resolution, valid=RESOLUTIONS, arch="biggan"):
    if resolution not in valid:
        raise ValueError(
            f"resolution {resolution!r} is not supported by arch={arch!r}; "
            f"valid resolutions: {list(valid)}"
        )


def check_attention(attn_res, valid, where):
    bad = [r for r in attn_res if r not in valid]
    if bad:
        raise ValueError(
            f"{where} attention resolution(s) {bad} do not occur in this architecture; "
            f"valid choices: {sorted(valid)}"
        )


def check_labels(y, num_classes):
    """Class indices must be integers in [0, num_classes); checked when the values are concrete."""
    if not jnp.issubdtype(jnp.asarray(y).dtype, jnp.integer):
        raise TypeError(f"class labels must be integer indices, got dtype {jnp.asarray(y).dtype}")
    if not isinstance(y, jax.core.Tracer):
        bad = [int(v) for v in jnp.ravel(y) if not 0 <= int(v) < num_classes]
        if bad:
            raise ValueError(
                f"class index {bad[0]} is outside [0, {num_classes}); "
                f"valid class indices are 0..{num_classes - 1}"
            )


def embed_classes(embed: nnx.Embed, y, num_classes):
    """Shared class embedding of integer labels (B,) or of a float class vector (B, num_classes):
    one-hot or soft, e.g. for class interpolation (paper figs. 8-9)."""
    y = jnp.asarray(y)
    if jnp.issubdtype(y.dtype, jnp.floating):
        if y.ndim != 2 or y.shape[-1] != num_classes:
            raise ValueError(
                f"float class vector has shape {y.shape}; expected (batch, num_classes="
                f"{num_classes}) one-hot or soft, or pass integer class indices (batch,)"
            )
    else:
        if y.ndim != 1:
            raise ValueError(f"integer class labels have shape {y.shape}; expected (batch,)")
        check_labels(y, num_classes)
    return layers.lookup_classes(embed.embedding[...], y)


class GBlock(nnx.Module):
    """ResBlock up: cBN → ReLU → up ×2 → conv3 → cBN → ReLU → conv3; shortcut up ×2 → conv1."""

    def __init__(self, in_ch, out_ch, cond_dim, *, num_classes, conv_kw, bn_kw, rngs):
        self.bn1 = batch_norm.ConditionalBatchNorm(
            in_ch, cond_dim, num_classes=num_classes, rngs=rngs, **bn_kw
        )
        self.conv1 = layers.SNConv(in_ch, out_ch, 3, rngs=rngs, **conv_kw)
        self.bn2 = batch_norm.ConditionalBatchNorm(
            out_ch, cond_dim, num_classes=num_classes, rngs=rngs, **bn_kw
        )
        self.conv2 = layers.SNConv(out_ch, out_ch, 3, rngs=rngs, **conv_kw)
        self.conv_sc = layers.SNConv(in_ch, out_ch, 1, rngs=rngs, **conv_kw)

    def __call__(self, x, cond, y, train):
        h = jax.nn.relu(self.bn1(x, cond, train, y))
        h = self.conv1(layers.upsample2x(h), train)
        h = jax.nn.relu(self.bn2(h, cond, train, y))
        h = self.conv2(h, train)
        # A 1×1 conv commutes with nearest upsampling, so convolve first: same result, 4× fewer
        # FLOPs.
        return h + layers.upsample2x(self.conv_sc(x, train))


class Generator(nnx.Module):
    """BigGAN G (paper appendix B, table 4). `hier` = skip-z, `shared` = shared class embedding
    (both paper defaults)."""

    def __init__(
        self,
        *,
        resolution=128,
        ch=96,
        dim_z=120,
        shared_dim=128,
        num_classes=1000,
        attn_res=(64,),
        hier=True,
        shared=True,
        bn_eps=1e-4,
        bn_momentum=0.1,
        bn_group_size=None,
        sn_eps=1e-4,
        sn_eval_mode="iterate",
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        check_resolution(resolution)
        plan = G_CHANNELS[resolution]
        out_res = [8 * 2**i for i in range(len(plan))]
        check_attention(attn_res, out_res, "G")
        self.num_slots = len(plan) + 1 if hier else 1
        if dim_z % self.num_slots:
            raise ValueError(
                f"dim_z={dim_z} must split into {self.num_slots} equal chunks for skip-z at "
                f"{resolution}² ({len(plan)} blocks + 1); use a multiple of {self.num_slots}"
            )
        self.dim_z, self.num_classes, self.resolution = dim_z, num_classes, resolution
        # num_classes 0: unconditional, the BNs conditioned on the z chunks alone (plain BN without
        # skip-z)
        shared = shared and num_classes > 0
        self.hier, self.shared = hier, shared
        z_chunk = dim_z // self.num_slots
        cond_dim = (shared_dim if shared else 0) + (z_chunk if hier else 0)
        conv_kw = dict(sn_eps=sn_eps, sn_eval_mode=sn_eval_mode, dtype=dtype)
        bn_kw = dict(
            eps=bn_eps,
            momentum=bn_momentum,
            group_size=bn_group_size,
            sn_eps=sn_eps,
            sn_eval_mode=sn_eval_mode,
            dtype=dtype,
        )
        # The shared embedding is NOT spectrally normalised (BigGAN-PyTorch BigGAN.py: `shared` is a
        # plain embedding).
        self.shared_embed = (
            nnx.Embed(num_classes, shared_dim, embedding_init=layers.orthogonal_init, rngs=rngs)
            if shared
            else None
        )
        self.bottom_ch = plan[0][0] * ch
        self.linear = layers.SNLinear(
            z_chunk if hier else dim_z, 4 * 4 * self.bottom_ch, rngs=rngs, **conv_kw
        )
        blocks, attns = [], []
        for (cin, cout), res in zip(plan, out_res):
            blocks.append(
                GBlock(
                    cin * ch,
                    cout * ch,
                    cond_dim,
                    num_classes=0 if shared else num_classes,
                    conv_kw=conv_kw,
                    bn_kw=bn_kw,
                    rngs=rngs,
                )
            )
            attns.append(
                layers.SelfAttention(cout * ch, rngs=rngs, **conv_kw) if res in attn_res else None
            )
        self.blocks = nnx.List(blocks)
        self.attention = nnx.List(attns)
        self.output_bn = batch_norm.BatchNorm(
            plan[-1][1] * ch,
            eps=bn_eps,
            momentum=bn_momentum,
            group_size=bn_group_size,
            affine=True,
            dtype=dtype,
        )
        self.output_conv = layers.SNConv(plan[-1][1] * ch, 3, 3, rngs=rngs, **conv_kw)

    def __call__(self, z, y, *, train: bool):
        if z.ndim != 2 or z.shape[-1] != self.dim_z:
            raise ValueError(f"z has shape {z.shape}; expected (batch, dim_z={self.dim_z})")
        y = jnp.asarray(y)
        if jnp.issubdtype(y.dtype, jnp.integer) and self.num_classes:
            check_labels(y, self.num_classes)
        zs = jnp.split(z, self.num_slots, axis=-1)
        embed = embed_classes(self.shared_embed, y, self.num_classes) if self.shared else None
        if self.hier:
            # BigGAN-PyTorch order: cond = [embed(y), z_i] (BigGAN.py; TF Hub uses [z, embed]).
            conds = [jnp.concatenate([embed, zi], -1) if self.shared else zi for zi in zs[1:]]
        else:
            conds = [embed] * len(self.blocks)
        # HWC order (TF Hub)
        h = self.linear(zs[0], train).reshape(z.shape[0], 4, 4, self.bottom_ch)
        for block, attention, cond in zip(self.blocks, self.attention, conds):
            h = block(h, cond, y, train)
            if attention is not None:
                h = attention(h, train)
        h = jax.nn.relu(self.output_bn(h, train))
        return jnp.tanh(self.output_conv(h, train).astype(jnp.float32))


class DBlock(nnx.Module):
    """ResBlock down, wide (hidden = out channels): [ReLU] → conv3 → ReLU → conv3 → [avg pool]."""

    def __init__(self, in_ch, out_ch, *, preactivation, downsample, conv_kw, rngs):
        self.conv1 = layers.SNConv(in_ch, out_ch, 3, rngs=rngs, **conv_kw)
        self.conv2 = layers.SNConv(out_ch, out_ch, 3, rngs=rngs, **conv_kw)
        learnable_sc = in_ch != out_ch or downsample
        self.conv_sc = (
            layers.SNConv(in_ch, out_ch, 1, rngs=rngs, **conv_kw) if learnable_sc else None
        )
        self.preactivation, self.downsample = preactivation, downsample

    def __call__(self, x, train):
        h = jax.nn.relu(x) if self.preactivation else x  # no ReLU on the raw image (first block)
        h = self.conv2(jax.nn.relu(self.conv1(h, train)), train)
        if self.downsample:
            h = layers.avg_pool2x(h)
            # Average pooling commutes with a 1×1 conv (both linear), so pool first whatever the
            # pre-activation order of BigGAN.py's DBlock: identical output, 4× fewer FLOPs.
            x = layers.avg_pool2x(x)
        if self.conv_sc is not None:
            x = self.conv_sc(x, train)
        return h + x


class ProjectionDiscriminator(nnx.Module):
    """What BigGAN's and BigGAN-deep's D share (paper appendix B): stem → blocks with optional
    attention → h = Σ_hw ReLU(features) → linear(h) + ⟨embed(y), h⟩. Subclasses build `blocks`,
    `attention` and `stem`."""

    def init_head(
        self,
        feature_dim,
        num_classes,
        resolution,
        in_channels,
        minibatch_kernels,
        minibatch_kernel_dim,
        conv_kw,
        rngs,
    ):
        self.feature_dim = feature_dim
        self.linear, self.minibatch = projection_head_linear(
            feature_dim, minibatch_kernels, minibatch_kernel_dim, conv_kw, rngs
        )
        # num_classes 0: unconditional, no projection term
        self.embed = (
            layers.SNEmbed(
                num_classes,
                feature_dim,
                sn_eps=conv_kw["sn_eps"],
                sn_eval_mode=conv_kw["sn_eval_mode"],
                rngs=rngs,
            )
            if num_classes
            else None
        )
        self.num_classes, self.resolution, self.dtype = num_classes, resolution, conv_kw["dtype"]
        self.in_channels = in_channels

    def features(self, x, train: bool):
        """Globally sum-pooled ReLU features h (B, feature_dim), float32."""
        check_d_input(x, self.resolution, self.in_channels)
        h = self.stem(x, train)
        for block, attention in zip(self.blocks, self.attention):
            h = block(h, train)
            if attention is not None:
                h = attention(h, train)
        return jnp.sum(jax.nn.relu(h).astype(jnp.float32), axis=(1, 2))

    def head(self, h, y, train: bool, groups: int = 1):
        """Projection head on pooled features: (B,) logits (`groups`: see projection_head)."""
        return projection_head(self, h, y, train, groups)

    def __call__(self, x, y, *, train: bool, groups: int = 1):
        if self.num_classes:
            check_labels(y, self.num_classes)
        return self.head(self.features(x, train), y, train, groups)


class Discriminator(ProjectionDiscriminator):
    """BigGAN projection discriminator (Miyato & Koyama 2018; paper appendix B): D(x, y) = linear(h)
    + ⟨embed(y), h⟩, h = Σ_hw ReLU(features)."""

    def __init__(
        self,
        *,
        resolution=128,
        ch=96,
        num_classes=1000,
        attn_res=(64,),
        sn_eps=1e-4,
        sn_eval_mode="iterate",
        dtype=jnp.float32,
        in_channels=3,
        minibatch_kernels=0,
        minibatch_kernel_dim=5,
        rngs: nnx.Rngs,
    ):
        check_resolution(resolution)
        check_d_options(in_channels, minibatch_kernels, minibatch_kernel_dim)
        plan = D_CHANNELS[resolution]
        out_res, res = [], resolution
        for _, _, down in plan:
            res = res // 2 if down else res
            out_res.append(res)
        check_attention(attn_res, out_res, "D")
        conv_kw = dict(sn_eps=sn_eps, sn_eval_mode=sn_eval_mode, dtype=dtype)
        blocks, attns = [], []
        for i, ((cin, cout, down), r) in enumerate(zip(plan, out_res)):
            blocks.append(
                DBlock(
                    cin * ch if cin else in_channels,
                    cout * ch,
                    preactivation=i > 0,
                    downsample=down,
                    conv_kw=conv_kw,
                    rngs=rngs,
                )
            )
            # Attention after the first block reaching the resolution (BigGAN-PyTorch places it per
            # block).
            attns.append(
                layers.SelfAttention(cout * ch, rngs=rngs, **conv_kw)
                if r in attn_res and r not in out_res[:i]
                else None
            )
        self.blocks = nnx.List(blocks)
        self.attention = nnx.List(attns)
        self.init_head(
            plan[-1][1] * ch,
            num_classes,
            resolution,
            in_channels,
            minibatch_kernels,
            minibatch_kernel_dim,
            conv_kw,
            rngs,
        )

    def stem(self, x, train: bool):
        return x.astype(self.dtype)  # the first DBlock reads the image itself (no ReLU before it)


# --------------------------------------------------------------------------- shared by both D heads


def check_d_options(in_channels, minibatch_kernels, minibatch_kernel_dim):
    if in_channels < 1:
        raise ValueError(
            f"D in_channels={in_channels} must be ≥ 1 (3 for RGB, 3·m under PacGAN packing)"
        )
    if minibatch_kernels < 0 or (minibatch_kernels and minibatch_kernel_dim < 1):
        raise ValueError(
            f"model.d_minibatch_kernels={minibatch_kernels} must be ≥ 0 (0 = off) and "
            f"model.d_minibatch_kernel_dim={minibatch_kernel_dim} ≥ 1 when it is on"
        )


def check_d_input(x, resolution, in_channels):
    if x.ndim != 4 or x.shape[1:] != (resolution, resolution, in_channels):
        packed = (
            f" ({in_channels // 3} samples packed on channels, train.pacgan_pack)"
            if in_channels != 3
            else ""
        )
        raise ValueError(
            f"D input has shape {x.shape}; expected (batch, {resolution}, {resolution}, "
            f"{in_channels}){packed} NHWC in [-1, 1]"
        )


def projection_head_linear(feature_dim, minibatch_kernels, minibatch_kernel_dim, conv_kw, rngs):
    """D's unconditional linear output and, when minibatch_kernels > 0, the minibatch discrimination
    layer (Salimans et al. 2016 §3.2) whose B features the linear also reads (A + B inputs)."""
    if not minibatch_kernels:
        return layers.SNLinear(feature_dim, 1, rngs=rngs, **conv_kw), None
    minibatch = layers.MinibatchDiscrimination(
        feature_dim, minibatch_kernels, minibatch_kernel_dim, rngs=rngs
    )
    return layers.SNLinear(minibatch.out_features, 1, rngs=rngs, **conv_kw), minibatch


def projection_head(D, h, y, train, groups=1):
    """linear([h, o(h)]) + ⟨embed(y), h⟩, o = minibatch features (absent when off). The projection
    term stays on the pooled features h alone: only the unconditional output sees the batch.
    `groups`: the batch is that many equal minibatches compared only within themselves (the step's
    [fakes; reals])."""
    out = D.linear(h if D.minibatch is None else D.minibatch(h, groups), train)[:, 0].astype(
        jnp.float32
    )
    if D.embed is None:  # unconditional
        return out
    return out + jnp.sum(D.embed(y, train) * h, axis=-1)
