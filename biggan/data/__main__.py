"""Command line: ``python -m biggan.data build-cache --source SOURCE --resolution R --out DIR``.

SOURCE is one of: ``digits``, ``folder:/path/to/root``, ``cache:/path/to/cache``,
``tfds:NAME`` (with ``--split``, ``--tfds-data-dir``).
"""

from __future__ import annotations

import logging
import sys

from biggan.data.cache import build_cache
from biggan.data.source_config import data_config_from_spec, make_source
from biggan.data.sources import DataSourceError
from biggan.runtime import cli


def main(argv=None) -> int:
    parser = cli.parser("python -m biggan.data", __doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser(
        "build-cache",
        help="preprocess a source into a memory-mapped cache",
        formatter_class=cli.HELP_FORMAT,
    )
    build.add_argument(
        "--source", required=True, help="digits | folder:PATH | cache:PATH | tfds:NAME"
    )
    build.add_argument("--resolution", type=int, required=True, help="output side in pixels")
    build.add_argument("--out", required=True, help="cache directory to create")
    build.add_argument("--split", default="train", help="TFDS split (tfds sources only)")
    build.add_argument(
        "--tfds_data_dir",
        "--tfds-data-dir",
        default="",
        help="TFDS data dir (default ~/tensorflow_datasets)",
    )
    build.add_argument("--workers", type=int, default=0, help="decode threads (0 = min(8, CPUs))")
    build.add_argument(
        "--fast_jpeg",
        "--fast-jpeg",
        action="store_true",
        help="DCT-domain JPEG downscale (not exact)",
    )
    build.add_argument("--overwrite", action="store_true", help="replace an existing cache")
    build.add_argument(
        "--no_progress", "--no-progress", action="store_true", help="no progress bar"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = data_config_from_spec(
            args.source,
            args.resolution,
            split=args.split,
            tfds_data_dir=args.tfds_data_dir,
            fast_jpeg=args.fast_jpeg,
        )
        source = make_source(config)
        manifest = build_cache(
            source,
            args.out,
            num_workers=args.workers,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except (DataSourceError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"cache: {args.out}  {manifest['count']} images at {manifest['resolution']}px, "
        f"{manifest['num_classes']} classes, {len(manifest['skipped'])} skipped, "
        f"{manifest['build_seconds']}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
