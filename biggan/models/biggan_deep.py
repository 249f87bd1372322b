"""BigGAN-deep generator and discriminator (paper appendix B), written as explicit per-resolution
tables.

G follows the released TF Hub / pytorch-pretrained-biggan layout (so converted weights run
unchanged: biggan.convert), D follows the author's BigGAN-PyTorch BigGANdeep.py. NHWC throughout.
Parameter counts match the paper's 50.4M / 34.6M exactly: pytorch-pretrained-biggan's G,
BigGAN-PyTorch's D (tests/models/test_biggan_deep.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from biggan.models import batch_norm, layers
from biggan.models.biggan import (
    ProjectionDiscriminator,
    check_attention,
    check_d_options,
    check_resolution,
    embed_classes,
)

# G blocks: (upsample, in multiplier, out multiplier) of ch, from 4×4. Two blocks per resolution: the
# first keeps resolution and width, the second upsamples and changes width (paper appendix B, fig. 16). 128/256/512 are
# pytorch-pretrained-biggan's `layers` lists; 32/64 are BigGAN-PyTorch's BigGANdeep G_arch.
# fmt: off
_G128 = [(False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8), (True, 8, 4),
         (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1)]
_G256 = _G128[:5] + [(True, 8, 8), (False, 8, 8), (True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2),
                     (True, 2, 1)]
G_BLOCKS = {
    32: [(False, 4, 4), (True, 4, 4)] * 3,
    64: _G128[:8],
    128: _G128,
    256: _G256,
    512: _G256 + [(False, 1, 1), (True, 1, 1)],
}
# fmt: on

# D stages: (in multiplier, out multiplier, downsample); each stage is two blocks, the first changes width
# and downsamples, the second keeps both (BigGAN-PyTorch BigGANdeep.py D_arch). BigGAN-PyTorch has no 512
# D: ours prepends a 1→1 downsampling stage to the 256 plan, as the paper's 512 D does for BigGAN.
# fmt: off
D_STAGES = {
    32: [(4, 4, True), (4, 4, True), (4, 4, False)],
    64: [(1, 2, True), (2, 4, True), (4, 8, True), (8, 16, True)],
    128: [(1, 2, True), (2, 4, True), (4, 8, True), (8, 16, True), (16, 16, True)],
    256: [(1, 2, True), (2, 4, True), (4, 8, True), (8, 8, True), (8, 16, True), (16, 16, True)],
    512: [(1, 1, True), (1, 2, True), (2, 4, True), (4, 8, True), (8, 8, True), (8, 16, True), (16, 16, True)],
}
# fmt: on

RESOLUTIONS = tuple(sorted(G_BLOCKS))
BOTTLENECK = 4  # hidden width = in/4 in G, out/4 in D (channel_ratio of both references)


def g_block_resolutions(resolution):
    """Output resolution of every G block."""
    res, out = 4, []
    for up, _, _ in G_BLOCKS[resolution]:
        res = res * 2 if up else res
        out.append(res)
    return out


def d_stage_resolutions(resolution):
    res, out = resolution, []
    for _, _, down in D_STAGES[resolution]:
        res = res // 2 if down else res
        out.append(res)
    return out


class GBlock(nnx.Module):
    """cBN → ReLU → 1×1 (in→in/4) → cBN → ReLU → [up ×2] → 3×3 → cBN → ReLU → 3×3 → cBN → ReLU → 1×1
    (→out).

    Skip: keep the first `out` channels of x (drop the rest), [up ×2], add. No learned shortcut
    (paper appendix B).
    """

    def __init__(self, in_ch, out_ch, cond_dim, *, upsample, conv_kw, bn_kw, rngs):
        if out_ch > in_ch:
            raise ValueError(
                f"BigGAN-deep G block {in_ch}→{out_ch}: the channel-dropping skip needs out ≤ in"
            )
        mid = in_ch // BOTTLENECK
        self.bn1 = batch_norm.ConditionalBatchNorm(in_ch, cond_dim, rngs=rngs, **bn_kw)
        self.conv1 = layers.SNConv(in_ch, mid, 1, rngs=rngs, **conv_kw)
        self.bn2 = batch_norm.ConditionalBatchNorm(mid, cond_dim, rngs=rngs, **bn_kw)
        self.conv2 = layers.SNConv(mid, mid, 3, rngs=rngs, **conv_kw)
        self.bn3 = batch_norm.ConditionalBatchNorm(mid, cond_dim, rngs=rngs, **bn_kw)
        self.conv3 = layers.SNConv(mid, mid, 3, rngs=rngs, **conv_kw)
        self.bn4 = batch_norm.ConditionalBatchNorm(mid, cond_dim, rngs=rngs, **bn_kw)
        self.conv4 = layers.SNConv(mid, out_ch, 1, rngs=rngs, **conv_kw)
        self.upsample, self.out_ch = upsample, out_ch

    def __call__(self, x, cond, train):
        h = self.conv1(jax.nn.relu(self.bn1(x, cond, train)), train)
        h = jax.nn.relu(self.bn2(h, cond, train))
        if self.upsample:
            h = layers.upsample2x(h)
        h = self.conv2(h, train)
        h = self.conv3(jax.nn.relu(self.bn3(h, cond, train)), train)
        h = self.conv4(jax.nn.relu(self.bn4(h, cond, train)), train)
        x = x[..., : self.out_ch]
        if self.upsample:
            x = layers.upsample2x(x)
        return h + x


class Generator(nnx.Module):
    """BigGAN-deep G (paper appendix B): cond = concat(z, embed(y)) feeds the first linear and every
    cBN.

    `y` is either integer class indices (B,) or a float class vector (B, num_classes), one-hot or
    soft, multiplied into the embedding table (the released models' bias-free Linear(1000→128)).
    `rgb_channels`: the output conv's width; the first 3 channels are kept (128 in the released
    weights). Attention after the upsampling block reaching each resolution in `attn_res` (64 = list
    position 8 of the released layouts).
    """

    def __init__(
        self,
        *,
        resolution=128,
        ch=128,
        dim_z=128,
        shared_dim=128,
        num_classes=1000,
        attn_res=(64,),
        rgb_channels=3,
        bn_eps=1e-4,
        bn_momentum=0.1,
        bn_group_size=None,
        sn_eps=1e-4,
        sn_eval_mode="iterate",
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        check_resolution(resolution, RESOLUTIONS, "biggan_deep")
        plan = G_BLOCKS[resolution]
        out_res = g_block_resolutions(resolution)
        up_res = [r for (up, _, _), r in zip(plan, out_res) if up]
        check_attention(attn_res, up_res, "G")
        if rgb_channels < 3:
            raise ValueError(
                f"rgb_channels={rgb_channels}: the output conv needs at least 3 channels"
            )
        self.dim_z, self.num_classes, self.resolution = dim_z, num_classes, resolution
        # num_classes 0: unconditional, cond = z alone
        cond_dim = dim_z + (shared_dim if num_classes else 0)
        conv_kw = dict(sn_eps=sn_eps, sn_eval_mode=sn_eval_mode, dtype=dtype)
        bn_kw = dict(
            eps=bn_eps,
            momentum=bn_momentum,
            group_size=bn_group_size,
            sn_eps=sn_eps,
            sn_eval_mode=sn_eval_mode,
            dtype=dtype,
        )
        # The shared embedding is NOT spectrally normalised (as in BigGAN).
        self.shared_embed = (
            nnx.Embed(num_classes, shared_dim, embedding_init=layers.orthogonal_init, rngs=rngs)
            if num_classes
            else None
        )
        self.bottom_ch = plan[0][1] * ch
        self.linear = layers.SNLinear(cond_dim, 4 * 4 * self.bottom_ch, rngs=rngs, **conv_kw)
        blocks, attns = [], []
        for i, ((up, cin, cout), res) in enumerate(zip(plan, out_res)):
            blocks.append(
                GBlock(
                    cin * ch,
                    cout * ch,
                    cond_dim,
                    upsample=up,
                    conv_kw=conv_kw,
                    bn_kw=bn_kw,
                    rngs=rngs,
                )
            )
            attend = up and res in attn_res
            attns.append(layers.SelfAttention(cout * ch, rngs=rngs, **conv_kw) if attend else None)
        self.blocks = nnx.List(blocks)
        self.attention = nnx.List(attns)
        out_ch = plan[-1][2] * ch
        self.output_bn = batch_norm.BatchNorm(
            out_ch,
            eps=bn_eps,
            momentum=bn_momentum,
            group_size=bn_group_size,
            affine=True,
            dtype=dtype,
        )
        self.output_conv = layers.SNConv(out_ch, rgb_channels, 3, rngs=rngs, **conv_kw)

    def embed(self, y):
        """Class embedding of integer labels (B,) or of a float class vector (B, num_classes)."""
        return embed_classes(self.shared_embed, y, self.num_classes)

    def __call__(self, z, y, *, train: bool):
        if z.ndim != 2 or z.shape[-1] != self.dim_z:
            raise ValueError(f"z has shape {z.shape}; expected (batch, dim_z={self.dim_z})")
        cond = z.astype(jnp.float32)
        if self.shared_embed is not None:
            embed = self.embed(y)
            if embed.shape[0] != z.shape[0]:
                raise ValueError(
                    f"{z.shape[0]} latents but {embed.shape[0]} class labels; give one label per z"
                )
            # z first: TF Hub / pytorch-pretrained-biggan order, so released weights convert
            # unpermuted.
            cond = jnp.concatenate([cond, embed.astype(jnp.float32)], axis=-1)
        h = self.linear(cond, train).reshape(z.shape[0], 4, 4, self.bottom_ch)  # HWC order (TF Hub)
        for block, attention in zip(self.blocks, self.attention):
            h = block(h, cond, train)
            if attention is not None:
                h = attention(h, train)
        h = jax.nn.relu(self.output_bn(h, train))
        h = self.output_conv(h, train)[..., :3]
        return jnp.tanh(h.astype(jnp.float32))


class DBlock(nnx.Module):
    """ReLU → 1×1 (→out/4) → ReLU → 3×3 → ReLU → 3×3 → ReLU → [avg pool] → 1×1 (→out).

    Skip: [avg pool], then concat(x, 1×1 conv(x) → out−in channels) when widening, identity
    otherwise.
    """

    def __init__(self, in_ch, out_ch, *, downsample, conv_kw, rngs):
        if out_ch < in_ch:
            raise ValueError(
                f"BigGAN-deep D block {in_ch}→{out_ch}: the concatenating skip needs out ≥ in"
            )
        hidden = out_ch // BOTTLENECK
        self.conv1 = layers.SNConv(in_ch, hidden, 1, rngs=rngs, **conv_kw)
        self.conv2 = layers.SNConv(hidden, hidden, 3, rngs=rngs, **conv_kw)
        self.conv3 = layers.SNConv(hidden, hidden, 3, rngs=rngs, **conv_kw)
        self.conv4 = layers.SNConv(hidden, out_ch, 1, rngs=rngs, **conv_kw)
        self.conv_sc = (
            layers.SNConv(in_ch, out_ch - in_ch, 1, rngs=rngs, **conv_kw)
            if out_ch > in_ch
            else None
        )
        self.downsample = downsample

    def __call__(self, x, train):
        h = self.conv1(jax.nn.relu(x), train)
        h = self.conv2(jax.nn.relu(h), train)
        h = jax.nn.relu(self.conv3(jax.nn.relu(h), train))
        if self.downsample:
            h = layers.avg_pool2x(h)
            x = layers.avg_pool2x(x)
        h = self.conv4(h, train)
        if self.conv_sc is not None:
            x = jnp.concatenate([x, self.conv_sc(x, train).astype(x.dtype)], axis=-1)
        return h + x


class Discriminator(ProjectionDiscriminator):
    """BigGAN-deep projection D (BigGAN-PyTorch BigGANdeep.py): stem 3×3 conv, two blocks per stage,
    attention after the stage reaching each resolution in `attn_res`, head ReLU → sum pool → linear
    + ⟨embed(y), h⟩."""

    def __init__(
        self,
        *,
        resolution=128,
        ch=128,
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
        check_resolution(resolution, RESOLUTIONS, "biggan_deep")
        check_d_options(in_channels, minibatch_kernels, minibatch_kernel_dim)
        plan = D_STAGES[resolution]
        out_res = d_stage_resolutions(resolution)
        check_attention(attn_res, out_res, "D")
        conv_kw = dict(sn_eps=sn_eps, sn_eval_mode=sn_eval_mode, dtype=dtype)
        self.input_conv = layers.SNConv(in_channels, plan[0][0] * ch, 3, rngs=rngs, **conv_kw)
        blocks, attns = [], []
        for i, ((cin, cout, down), r) in enumerate(zip(plan, out_res)):
            blocks.append(DBlock(cin * ch, cout * ch, downsample=down, conv_kw=conv_kw, rngs=rngs))
            blocks.append(
                DBlock(cout * ch, cout * ch, downsample=False, conv_kw=conv_kw, rngs=rngs)
            )
            attend = r in attn_res and r not in out_res[:i]
            attns += [
                None,
                layers.SelfAttention(cout * ch, rngs=rngs, **conv_kw) if attend else None,
            ]
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
        return self.input_conv(x.astype(self.dtype), train)
