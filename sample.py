r"""Sample from a BigGAN: our training checkpoints (the EMA generator) or converted released weights.

  python sample.py --checkpoint workdirs/digits --n 40 --output digits.png
  python sample.py --checkpoint biggan-deep-128 --classes "golden retriever",980 --truncation 0.4 --output dogs.png
  python sample.py --checkpoint biggan-deep-128 --latents z.npy --classes 207 --truncation 0.4 --output x.npy
  python sample.py --checkpoint biggan-deep-128 --interpolate both --classes 207,980 --steps 8 --output strip.png
  python sample.py --checkpoint workdirs/digits --truncation 0.25:1.0:0.25 --classes 0,1,2,3,4,5,6,7,8,9 --n 10 \
      --output truncation.png

Several truncations (`a,b,c` or `start:stop:step`) make a truncation grid: one row per value, the same seed
and classes in every row (for our models the same uniforms through the truncated normal's inverse CDF, so a
row is the row above drawn closer to the mode; for released models the same base z scaled by t).

--truncation: for released models t in (0, 1]: z = t·truncnorm(−2, 2) and t selects the stored BN statistics
(TF Hub convention); for our checkpoints the re-sampling threshold of a truncated normal (default: none),
with standing statistics accumulated at that threshold and cached in the checkpoint directory (paper appendix C.1).
"""
from __future__ import annotations

import argparse
import logging
import sys

import numpy as np


def parse_classes(text, num_classes):
    from biggan.imagenet_classes import class_index
    if not text:
        return None
    return [class_index(part, num_classes) for part in text.split(",") if part.strip()]


def interpolation_inputs(rng, sampler, mode, classes, rows, steps, truncation):
    """z and class vectors for `rows` strips of `steps` images (paper figs. 8-9): interpolate z (fixed
    class), the class (fixed z), or both."""
    from biggan import sampling
    num_classes, dim_z = sampler.num_classes, sampler.generator.dim_z
    ends = np.asarray(sampling.sample_latents(rng, 2 * rows, dim_z, truncation, released=sampler.released))
    z0, z1 = ends[:rows], ends[rows:]
    if classes is None or len(classes) == 0:
        classes = list(np.random.default_rng(0).integers(0, num_classes, 2))
    c0, c1 = classes[0], classes[1 % len(classes)]
    alphas = np.linspace(0.0, 1.0, steps, dtype=np.float32)
    z, y = [], []
    for r in range(rows):
        for a in alphas:
            za = z0[r] + a * (z1[r] - z0[r]) if mode in ("z", "both") else z0[r]
            ya = np.zeros(num_classes, np.float32)
            if mode in ("class", "both"):
                ya[c0] += 1 - a
                ya[c1] += a
            else:
                ya[c0] = 1.0
            z.append(za)
            y.append(ya)
    return np.stack(z), np.stack(y)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="train.py workdir or biggan.convert --out directory")
    p.add_argument("--classes", default="", help="comma-separated indices or ImageNet class names")
    p.add_argument("--truncation", default=None,
                   help="a value, or several (a,b,c or start:stop:step) for a truncation grid; default: none")
    p.add_argument("--n", type=int, default=16, help="number of samples (rows for --interpolate)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--latents", default=None, help=".npy of z (n, dim_z), used as given (unscaled)")
    p.add_argument("--output", default="samples.png", help=".png grid or .npy (float32 NHWC in [-1, 1])")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--interpolate", choices=["z", "class", "both"], default=None)
    p.add_argument("--steps", type=int, default=8, help="images per interpolation strip")
    p.add_argument("--ncol", type=int, default=8)
    p.add_argument("--compile_cache", default=None, help="persistent XLA compilation cache directory "
                   "(default: $JAX_COMPILATION_CACHE_DIR or ~/.cache/biggan-jax/xla); empty turns it off")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from biggan import host_memory
    host_memory.retain_freed_memory()  # before the first JAX computation (biggan/host_memory.py)

    import jax
    from biggan import compile_cache, sampling
    compile_cache.enable(args.compile_cache)
    from biggan.images import save_grid
    try:
        truncations = sampling.parse_truncations(args.truncation) if args.truncation else [None]
    except ValueError as e:
        p.error(f"--truncation: {e}")
    sampler = sampling.load_sampler(args.checkpoint)
    if sampler.released and truncations == [None]:
        truncations = [1.0]
    truncation = truncations[0]
    classes = parse_classes(args.classes, sampler.num_classes)
    if len(truncations) > 1:
        if args.interpolate or args.latents:
            p.error("several --truncation values make a truncation grid; use one value with --interpolate or "
                    "--latents")
        rows = [sampler.sample(args.n, truncation=t, seed=args.seed, batch_size=args.batch_size, classes=classes)
                for t in truncations]
        images, ncol = np.concatenate(rows), args.n
    elif args.interpolate:
        z, y = interpolation_inputs(jax.random.key(args.seed), sampler, args.interpolate, classes, args.n,
                                    args.steps, truncation)
        images = sampler.generate(z, y, truncation, args.batch_size)
        ncol = args.steps
    else:
        latents = np.load(args.latents) if args.latents else None
        images = sampler.sample(args.n, truncation=truncation, seed=args.seed, batch_size=args.batch_size,
                                classes=classes, latents=latents)
        ncol = args.ncol
    if args.output.endswith(".npy"):
        np.save(args.output, images.astype(np.float32))
    else:
        save_grid(images, args.output, ncol=ncol, scale=max(1, 64 // images.shape[1]))
    print(f"wrote {len(images)} images to {args.output}")


if __name__ == "__main__":
    sys.exit(main())
