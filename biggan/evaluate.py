"""Command line of the evaluation library (biggan/evaluation/evaluator.py).

  python -m biggan.evaluate moments --config configs/biggan_128.py --out moments.npz   # the config's training data
  python -m biggan.evaluate moments --data folder:DIR|cache:DIR|tfds:NAME[:SPLIT]|digits --out moments.npz
  python -m biggan.evaluate score --checkpoint DIR --num_samples 50000 --truncation 1.0 --moments F
  python -m biggan.evaluate sweep --checkpoint DIR --truncations 0.1:1.0:0.1 --moments F

Multi-process (scripts/launch_local.py, a TPU pod, Slurm): the command joins the job like train.py (same
flags, or the JAX_* environment; biggan.runtime.distributed.initialize); every process computes the same
results (biggan/evaluation/evaluator.py) and only process 0 prints and writes.
"""

from __future__ import annotations

import json
import os
import sys

import jax

from biggan import config as cfg
from biggan.data import DataSourceError
from biggan.evaluation import evaluator as evaluation
from biggan.evaluation import metrics, reference, reports
from biggan.runtime import cli, distributed, storage
from biggan.sampling import sampler as sampling


def _add_feature_args(parser):
    parser.add_argument(
        "--feature_network",
        default="auto",
        help="inception | digits | auto (moments: digits for --data digits, else inception; "
        "score/sweep: the network named in --moments, else inception)",
    )
    parser.add_argument(
        "--inception_weights",
        default=None,
        help="pt_inception-2015-12-05-6726825d.pth (default $BIGGAN_INCEPTION_WEIGHTS or "
        "~/.cache/biggan/)",
    )
    parser.add_argument(
        "--digits_cache_dir",
        default=None,
        help="where the digits classifier is cached (default ~/.cache/biggan/digits_classifier)",
    )
    parser.add_argument("--feature_batch_size", type=int, default=None)


def _truncation_arg(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def _build_parser():
    parser = cli.parser("python -m biggan.evaluate", __doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    multiprocess = cli.runtime_flags(multi_process=True)

    p = sub.add_parser(
        "moments",
        help="reference moments of a dataset (the paper: the training set)",
        parents=[multiprocess],
        formatter_class=cli.HELP_FORMAT,
    )
    p.add_argument(
        "--data", default=None, help=reference.DATA_SPEC_HELP + "; default: the --config's data"
    )
    p.add_argument(
        "--config",
        default=None,
        help="training config file[:arg]: its data section and model.resolution (e.g. "
        "configs/biggan_128.py: ImageNet train at 128x128)",
    )
    p.add_argument("--out", required=True, help="output .npz")
    p.add_argument(
        "--format",
        choices=metrics.MOMENT_FORMATS,
        default="biggan",
        help="biggan: ours (mu, sigma, n, feature network, resolution, source); pytorch-fid: mu and "
        "sigma alone, as pytorch-fid --save-stats and TTUR write them (FID Inception only); "
        "`score --moments` reads both",
    )
    p.add_argument(
        "--resolution",
        type=int,
        default=None,
        help="image resolution (default: the --config's, a cache's own, 32 for digits)",
    )
    p.add_argument("--batch_size", type=int, default=500, help="images per feature batch")
    p.add_argument(
        "--max_images", type=int, default=None, help="use only the first N images (default: all)"
    )
    p.add_argument(
        "--keep_features",
        type=int,
        default=10_000,
        help="also store this many feature vectors (for KID and precision/recall)",
    )
    _add_feature_args(p)

    for name, help_text in (
        ("score", "IS/FID of a checkpoint at one truncation"),
        ("sweep", "IS/FID over truncations: CSV + IS-vs-FID plot"),
    ):
        p = sub.add_parser(
            name, help=help_text, parents=[multiprocess], formatter_class=cli.HELP_FORMAT
        )
        p.add_argument(
            "--checkpoint", required=True, help="train.py workdir or biggan.convert --out directory"
        )
        p.add_argument(
            "--num_samples", type=int, default=50_000, help="generated samples (the paper: 50k)"
        )
        p.add_argument("--moments", default=None, help="reference moments .npz (needed for FID)")
        p.add_argument("--batch_size", type=int, default=500, help="samples per generator batch")
        p.add_argument("--seed", type=int, default=0, help="seed of the latents and classes")
        p.add_argument(
            "--standing_stats",
            type=int,
            default=None,
            metavar="BATCHES",
            help="accumulate standing statistics over BATCHES batches (0: the stored statistics); "
            "default: what the checkpoint ships with (as sample.py)",
        )
        if name == "score":
            p.add_argument(
                "--truncation",
                type=_truncation_arg,
                default=None,
                help="threshold (our models) or t (released models); default: none",
            )
            p.add_argument("--out", default=None, help="also write the metrics as JSON here")
        else:
            p.add_argument("--truncations", default="0.1:1.0:0.1", help="start:stop:step or a,b,c")
            p.add_argument("--out_dir", default=None, help="default: CHECKPOINT/truncation_sweep")
        _add_feature_args(p)
    return parser


def _feature_network_for(args, moments_path=None, data=None):
    kind = args.feature_network
    if kind == "auto":
        if moments_path is not None:
            kind = str(storage.load_npz(moments_path).get("feature_network", "inception"))
        else:
            kind = "digits" if data == "digits" else "inception"
    # Process 0 first: it trains and caches the digits classifier if needed; the others then read
    # it.
    return distributed.process_zero_first(
        lambda: evaluation.make_feature_network(
            kind,
            inception_weights=args.inception_weights,
            digits_cache_dir=args.digits_cache_dir,
            batch_size=args.feature_batch_size,
            mesh=distributed.local_mesh(),
        ),
        "feature network",
    )


def main(argv=None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    cli.start(args)  # the host allocator, the multi-process job (like train.py), the compile cache
    lead = jax.process_index() == 0  # prints and writes; every process computes the same results
    if args.command == "moments":
        try:  # a bad spec, path or config: one line and exit status 2, before any work
            config = cfg.load_config_file(args.config) if args.config else None
            load_chunk, count, description = reference.data_chunks(
                args.data, resolution=args.resolution, max_images=args.max_images, config=config
            )
            source = reference.data_section(
                args.data, resolution=args.resolution, config=config
            ).source
        except (ValueError, KeyError, FileNotFoundError, DataSourceError) as e:
            parser.error(f"moments: {e}")
        feature_net = _feature_network_for(args, data=source)
        if args.format == "pytorch-fid" and feature_net.name != metrics.INCEPTION_NAME:
            parser.error(
                f"moments --format pytorch-fid: those files hold FID Inception moments, and this data is "
                f"featurised with {feature_net.name!r}; use --format biggan"
            )
        moments = reference.compute_moments_of_chunks(
            load_chunk,
            count,
            feature_net,
            batch_size=args.batch_size,
            description=description,
            keep_features=args.keep_features,
        )
        if lead:
            metrics.save_moments(args.out, moments, format=args.format)
            if moments.skipped:
                print(
                    f"skipped {len(moments.skipped)} corrupt or unreadable images (first: {moments.skipped[0]})"
                )
            print(
                f"wrote {args.out}: n={moments.n}, {moments.feature_network}, resolution {moments.resolution}, "
                f"{description}"
            )
        return 0

    # Cheap checks first (one line, exit status 2): nothing is loaded or sampled for a command that
    # cannot succeed.
    try:
        truncations = (
            sampling.parse_truncations(args.truncations) if args.command == "sweep" else None
        )
    except ValueError as e:
        parser.error(f"--truncations: {e}")
    try:
        for path in (
            args.checkpoint,
            args.moments,
            getattr(args, "out", None),
            getattr(args, "out_dir", None),
        ):
            if path:
                storage.check_bucket(path)
    except storage.StorageError as e:
        parser.error(str(e))
    if not storage.isdir(args.checkpoint):
        parser.error(
            f"--checkpoint {args.checkpoint}: no such directory; pass a train.py --workdir or the --out "
            f"directory of python -m biggan.convert"
        )
    moments_path = args.moments
    if moments_path and not storage.isfile(moments_path):
        parser.error(
            f"--moments {moments_path}: no such file; compute it with `python -m biggan.evaluate moments`"
        )
    # Every process loads the same checkpoint (a collective restore in a multi-process job); the
    # sampler then runs on this process's devices only (biggan.sampling.sampler.load_sampler).
    try:
        sampler = sampling.load_sampler(args.checkpoint, standing_stats=args.standing_stats)
        for t in truncations or [args.truncation]:
            sampler.check_truncation(t)
    except (FileNotFoundError, ValueError) as e:
        parser.error(f"{args.command}: {str(e).splitlines()[0]}")
    if lead:
        print(
            sampler.describe_stats(truncations[0] if truncations else args.truncation),
            file=sys.stderr,
            flush=True,
        )
    feature_net = _feature_network_for(args, moments_path=moments_path)
    reference_moments = (
        metrics.load_moments(moments_path, feature_network=feature_net.name)
        if moments_path
        else None
    )
    common = dict(
        num_samples=args.num_samples,
        seed=args.seed,
        batch_size=args.batch_size,
        reference_moments=reference_moments,
        progress=lead,
    )
    if args.command == "score":
        result = evaluation.score_sampler(
            sampler, feature_net, truncation=args.truncation, **common
        )
        if lead:
            print(json.dumps(result, indent=2))
            if args.out:
                storage.write_text(args.out, json.dumps(result, indent=2))
        return 0
    out_dir = args.out_dir or os.path.join(args.checkpoint, "truncation_sweep")
    rows = evaluation.sweep_sampler(sampler, feature_net, truncations, **common)
    if lead:
        reports.write_csv(os.path.join(out_dir, "truncation_sweep.csv"), rows)
        reports.plot_sweep(os.path.join(out_dir, "truncation_sweep.png"), rows)
        for row in rows:
            print(json.dumps(row))
        print(f"wrote {out_dir}/truncation_sweep.csv and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
