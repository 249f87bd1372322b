r"""Sample from a BigGAN: our training checkpoints (the EMA generator) or converted released weights.

  python sample.py --checkpoint workdirs/digits --n 40 --output digits.png
  python sample.py --checkpoint biggan-deep-128 --classes "golden retriever",980 --truncation 0.4 --output dogs.png
  python sample.py --checkpoint biggan-deep-128 --latents z.npy --classes 207 --truncation 0.4 --output x.npz
  python sample.py --checkpoint biggan-deep-128 --interpolate both --classes 207,980 --steps 8 --output strip.png
  python sample.py --checkpoint biggan-128 --sheet --classes 1,207,980,999 --n 8 --truncation 0.5 --output sheet.png
  python sample.py --checkpoint biggan-128 --truncation 0.2:1.0:0.2 --classes 207 --n 8 --output truncation.png

Pictures: a grid (default); a class sheet (--sheet: one row per class, the same latents in every column,
as BigGAN-PyTorch's sample_sheets draws one class per row); a truncation grid (several --truncation values,
`a,b,c` or `start:stop:step`: one row per value, the same seed and classes in every row); interpolation
strips (--interpolate z|class|both, paper figs. 8-9). --output x.npz keeps images, z, classes and truncation
so that a sample can be reproduced (x.npy: the images only).

--truncation: for released TF Hub models t: z = t·truncnorm(−2, 2) and t selects the stored BN statistics
(biggan-deep: 0 < t ≤ 1; biggan: 0.02 ≤ t ≤ 1); for our checkpoints and BigGAN-PyTorch weights the
re-sampling threshold of a truncated normal (default: none).

BN statistics: what the weights ship with — TF Hub exports their per-truncation table, BigGAN-PyTorch
exports their stored statistics (its evaluation mode), our training runs standing statistics (paper
appendix C.1, config.sample.standing_stats_batches, cached beside the checkpoint; more than 4,096 samples
not yet cached run only when asked for with --standing_stats). --standing_stats N
accumulates standing statistics over N batches instead (announced, with a progress bar; cached);
--standing_stats 0 uses the stored ones. The line printed first says which are in use.
"""

from __future__ import annotations

import io
import logging
import sys

import numpy as np

from biggan.runtime import cli, storage

# Standing statistics larger than this (training-mode samples) run only when asked for with
# --standing_stats: about a minute of a small model on a CPU; the paper's 100 x 256 at 128² is over
# an hour there.
STANDING_STATS_UNASKED = 4096


def parse_classes(text, num_classes):
    from biggan.data.imagenet_classes import class_index

    if not text:
        return None
    return [class_index(part, num_classes) for part in text.split(",") if part.strip()]


def interpolation_inputs(sampler, seed, mode, classes, rows, steps, truncation):
    """z and class vectors for `rows` strips of `steps` images (paper figs. 8-9): interpolate z
    (fixed class), the class (fixed z), or both."""
    num_classes = sampler.num_classes
    ends = sampler.latents(2 * rows, truncation=truncation, seed=seed)
    z0, z1 = ends[:rows], ends[rows:]
    if classes is None or len(classes) == 0:
        classes = list(np.random.default_rng(seed).integers(0, num_classes, 2))
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


def default_sheet_classes(num_classes, count=10):
    """Evenly spaced classes for a class sheet when none are given."""
    return sorted({int(i) for i in np.linspace(0, num_classes - 1, min(count, num_classes))})


def draw(args, sampler, classes, truncations):
    """(images, z, y, truncation per image, columns) for the requested picture."""
    n = args.n
    if args.sheet:
        classes = classes or default_sheet_classes(sampler.num_classes)
        t = truncations[0]
        # one latent per column, shared by the rows
        base = sampler.latents(n, truncation=t, seed=args.seed)
        z = np.concatenate([base] * len(classes))
        y = np.repeat(np.asarray(classes, np.int32), n)
        ts = [t] * len(z)
        return sampler.generate(z, y, t, args.batch_size), z, y, ts, n
    if len(truncations) > 1:
        y = sampler.labels(n, seed=args.seed, classes=classes)  # the same classes in every row
        zs = [sampler.latents(n, truncation=t, seed=args.seed) for t in truncations]
        images = [sampler.generate(z, y, t, args.batch_size) for z, t in zip(zs, truncations)]
        return (
            np.concatenate(images),
            np.concatenate(zs),
            np.tile(y, len(truncations)),
            [t for t in truncations for _ in range(n)],
            n,
        )
    t = truncations[0]
    if args.interpolate:
        z, y = interpolation_inputs(sampler, args.seed, args.interpolate, classes, n, args.steps, t)
        return sampler.generate(z, y, t, args.batch_size), z, y, [t] * len(z), args.steps
    if args.latents:
        z = sampler.check_latents(storage.load_npy(args.latents))
    else:
        z = sampler.latents(n, truncation=t, seed=args.seed)
    y = sampler.labels(len(z), seed=args.seed, classes=classes)
    return sampler.generate(z, y, t, args.batch_size), z, y, [t] * len(z), args.ncol


def save(path, images, z, y, truncations, ncol):
    from biggan.sampling.images import save_grid

    if path.endswith(".npz"):
        t = np.asarray([np.nan if v is None else v for v in truncations], np.float32)
        storage.save_npz(
            path,
            images=images.astype(np.float32),
            z=z.astype(np.float32),
            classes=np.asarray(y),
            truncation=t,
        )
    elif path.endswith(".npy"):
        buffer = io.BytesIO()
        np.save(buffer, images.astype(np.float32))
        storage.write_bytes(path, buffer.getvalue())
    else:
        save_grid(images, path, ncol=ncol, scale=max(1, 64 // images.shape[1]))


def main(argv=None):
    p = cli.parser("sample.py", __doc__, parents=[cli.runtime_flags(multi_process=False)])
    p.add_argument(
        "--checkpoint", required=True, help="train.py workdir or biggan.convert --out directory"
    )
    p.add_argument("--classes", default="", help="comma-separated indices or ImageNet class names")
    p.add_argument(
        "--truncation",
        default=None,
        help="a value, or several (a,b,c or start:stop:step) for a truncation grid; default: none "
        "(released TF Hub models: 1.0)",
    )
    p.add_argument(
        "--n",
        type=int,
        default=16,
        help="number of samples (per row for --sheet and truncation grids; rows for --interpolate)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the latents and classes")
    p.add_argument("--latents", default=None, help=".npy of z (n, dim_z), used as given (unscaled)")
    p.add_argument(
        "--output",
        default="samples.png",
        help=".png grid, .npz (images, z, classes, truncation) or .npy (float32 NHWC images in [-1, 1])",
    )
    p.add_argument("--batch_size", type=int, default=32, help="samples per generator call")
    p.add_argument(
        "--interpolate",
        choices=["z", "class", "both"],
        default=None,
        help="interpolation strips between two latents, classes or both (paper figs. 8-9)",
    )
    p.add_argument("--steps", type=int, default=8, help="images per interpolation strip")
    p.add_argument(
        "--sheet", action="store_true", help="class sheet: one row per --classes entry, --n columns"
    )
    p.add_argument("--ncol", type=int, default=8, help="grid columns")
    p.add_argument(
        "--standing_stats",
        type=int,
        default=None,
        metavar="BATCHES",
        help="accumulate standing statistics over BATCHES batches (0: use the stored statistics); "
        "default: what the checkpoint ships with",
    )
    args = p.parse_args(argv)
    # Cheap checks first: nothing is loaded or compiled for a command that cannot succeed.
    try:
        storage.check_bucket(args.checkpoint)
        storage.check_bucket(args.output)
    except storage.StorageError as e:
        p.error(str(e))
    if not storage.isdir(args.checkpoint):
        p.error(
            f"--checkpoint {args.checkpoint}: no such directory; pass a train.py --workdir or the --out "
            f"directory of python -m biggan.convert"
        )
    if args.latents and not storage.isfile(args.latents):
        p.error(f"--latents {args.latents}: no such file; expected a .npy of shape (n, dim_z)")
    if not args.output.endswith((".png", ".jpg", ".npz", ".npy")):
        p.error(f"--output {args.output}: expected a .png/.jpg grid, a .npz or a .npy file")
    if args.n < 1 or args.batch_size < 1 or args.steps < 2:
        p.error("--n and --batch_size must be >= 1 and --steps >= 2")
    if args.standing_stats is not None and args.standing_stats < 0:
        p.error(f"--standing_stats {args.standing_stats}: expected a number of batches >= 0")
    exclusive = [
        name
        for name, on in (
            ("--sheet", args.sheet),
            ("--interpolate", args.interpolate),
            ("--latents", args.latents),
        )
        if on
    ]
    if len(exclusive) > 1:
        p.error(f"{' and '.join(exclusive)} draw different pictures; use one of them")
    from biggan.sampling import sampler as sampling

    try:
        truncations = sampling.parse_truncations(args.truncation) if args.truncation else [None]
    except ValueError as e:
        p.error(f"--truncation: {e}")
    if len(truncations) > 1 and exclusive:
        p.error(
            f"several --truncation values make a truncation grid; use one value with {exclusive[0]}"
        )

    logging.basicConfig(level=logging.WARNING)
    cli.start(args)  # the host allocator, the compile cache
    try:
        sampler = sampling.load_sampler(args.checkpoint, standing_stats=args.standing_stats)
    except (FileNotFoundError, ValueError) as e:
        p.error(f"--checkpoint {args.checkpoint}: {e}")
    if sampler.released and truncations == [None]:
        truncations = [1.0]
    if not sampler.num_classes:
        asked = [f for f, v in (("--classes", args.classes), ("--sheet", args.sheet)) if v]
        asked += ["--interpolate class"] if args.interpolate in ("class", "both") else []
        if asked:
            p.error(
                f"{asked[0]}: this model is unconditional (model.num_classes=0); sample it without "
                "classes (--interpolate z for strips)"
            )
    try:
        for t in truncations:
            sampler.check_truncation(t)
        classes = parse_classes(args.classes, sampler.num_classes)
        if args.latents:
            sampler.check_latents(storage.load_npy(args.latents))
    except (ValueError, OSError) as e:  # OSError: --latents is not a .npy file
        p.error(str(e).splitlines()[0])
    # No command that draws a handful of images starts a long accumulation unasked (it is cached
    # afterwards).
    pending = sum(sampler.pending_standing_samples(t) for t in dict.fromkeys(truncations))
    if args.standing_stats is None and pending > STANDING_STATS_UNASKED:
        s = sampler.config.sample
        p.error(
            f"this draw would first accumulate standing statistics (paper appendix C.1) over {pending:,} "
            f"training-mode samples ({s.standing_stats_batches} batches x {s.standing_stats_batch_size} per "
            f"truncation, not cached yet); pass --standing_stats {s.standing_stats_batches} to run it (cached "
            f"afterwards), fewer batches for a quicker estimate, or --standing_stats 0 for the stored statistics"
        )
    for t in dict.fromkeys(truncations):
        print(sampler.describe_stats(t), file=sys.stderr, flush=True)
    images, z, y, ts, ncol = draw(args, sampler, classes, truncations)
    save(args.output, images, z, y, ts, ncol)
    print(f"wrote {len(images)} images to {args.output}")


if __name__ == "__main__":
    sys.exit(main())
