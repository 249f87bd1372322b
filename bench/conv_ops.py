r"""Our convolution forms against XLA's own, op by op, on BigGAN-128 shapes (CPU).

  python bench/conv_ops.py

All in one process, XLA's form timed first, then ours, for each row:
- 1×1 convolutions (shortcut and attention projections), two rows per shape: `layers.pointwise_conv` (a matrix
  product) against lax.conv_general_dilated, forward alone and forward with both gradients.
- 3×3 kernel gradients at ≥ 64² pixels, one row per shape: `layers.conv_kernel_grad` (k GEMMs) against XLA's
  own (the convolution autodiff emits).
Each op is timed alone (median of 7 after a warm-up). Inside a train step XLA runs independent ops side by
side, so per-op ratios need not carry over to a whole step (bench/train_step.py measures that).
Prints a table and writes bench/results/conv_ops.json.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import report, timeit  # noqa: E402

# (batch, side, in, out): G's and D's 1×1 convolutions at batch 8 (G) and 16 (D, real + fake)
POINTWISE = [
    (16, 64, 48, 96),
    (8, 64, 96, 192),
    (8, 64, 192, 24),
    (8, 32, 384, 192),
    (16, 32, 192, 384),
    (8, 128, 192, 96),
    (16, 8, 768, 1536),
]
KERNEL_GRAD = [
    (8, 64, 192, 192),
    (16, 64, 192, 192),
    (8, 128, 96, 96),
    (16, 128, 96, 96),
    (8, 128, 192, 96),
]


def main():
    from biggan.runtime import host_memory

    host_memory.retain_freed_memory()  # the CPU policy of our entry points
    import jax
    import numpy as np

    from biggan.models import layers

    def timed(fn, *args):
        compiled = jax.jit(fn)
        return timeit(lambda: jax.block_until_ready(compiled(*args)), repeats=7)

    rng = np.random.default_rng(0)
    rows = []
    for b, s, c, o in POINTWISE:
        x, g = (
            rng.standard_normal((b, s, s, c), np.float32),
            rng.standard_normal((b, s, s, o), np.float32),
        )
        w = rng.standard_normal((1, 1, c, o), np.float32) / np.sqrt(c)
        for what, ours, xla in [
            (
                "1x1 forward",
                lambda x, w, g: layers.pointwise_conv(x, w),
                lambda x, w, g: layers._conv(x, w),
            ),
            (
                "1x1 forward+grads",
                lambda x, w, g: jax.vjp(layers.pointwise_conv, x, w)[1](g),
                lambda x, w, g: jax.vjp(layers._conv, x, w)[1](g),
            ),
        ]:
            t_xla, t_ours = timed(xla, x, w, g), timed(ours, x, w, g)
            rows.append(
                dict(
                    op=what,
                    shape=f"{b}x{s}x{s}x{c}->{o}",
                    xla_ms=1e3 * t_xla,
                    ours_ms=1e3 * t_ours,
                    speedup=t_xla / t_ours,
                )
            )
    for b, s, c, o in KERNEL_GRAD:
        x, g = (
            rng.standard_normal((b, s, s, c), np.float32),
            rng.standard_normal((b, s, s, o), np.float32),
        )
        w = rng.standard_normal((3, 3, c, o), np.float32) / np.sqrt(9 * c)
        t_xla = timed(lambda x, w, g: jax.vjp(lambda w_: layers._conv(x, w_), w)[1](g)[0], x, w, g)
        t_ours = timed(lambda x, w, g: layers.conv_kernel_grad(x, g, 3), x, w, g)
        rows.append(
            dict(
                op="3x3 kernel grad",
                shape=f"{b}x{s}x{s}x{c}->{o}",
                xla_ms=1e3 * t_xla,
                ours_ms=1e3 * t_ours,
                speedup=t_xla / t_ours,
            )
        )
    report("conv_ops", rows, {"backend": jax.default_backend()})


if __name__ == "__main__":
    main()
