"""Input pipeline throughput: images/s at 128² from an image folder of JPEGs and from
the preprocessed memmap cache, on this machine.

    python bench/input_pipeline.py            # writes bench/results/input_pipeline.json

Generates ``--num-images`` photo-like JPEGs of 300-500 px (smooth colour fields plus noise, so
they compress and decode like photos rather than like white noise) in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np
import PIL
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from biggan import data  # noqa: E402  pylint: disable=wrong-import-position
from biggan.data.sources import ArraySource  # noqa: E402  pylint: disable=wrong-import-position


def make_jpeg_folder(root: str, count: int, num_classes: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for k in range(count):
        width, height = (int(v) for v in rng.integers(300, 501, size=2))
        coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)  # smooth colour field ...
        field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.int16)
        noise = rng.normal(0, 12, (height, width, 3))  # ... plus texture
        pixels = np.clip(field + noise, 0, 255).astype(np.uint8)
        class_dir = os.path.join(root, f"class_{k % num_classes:03d}")
        os.makedirs(class_dir, exist_ok=True)
        Image.fromarray(pixels).save(os.path.join(class_dir, f"{k:05d}.jpg"), quality=90)


def images_per_second(iterator, batch_size: int, min_images: int, min_seconds: float) -> float:
    next(iterator)  # warm-up: thread start, first epoch order, page cache
    start = time.perf_counter()
    images = 0
    while images < min_images or time.perf_counter() - start < min_seconds:
        batch = next(iterator)
        images += len(batch["label"])
    return images / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num-images", type=int, default=512)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0, help="decode threads (0 = min(8, CPUs))")
    parser.add_argument(
        "--big-cache",
        type=int,
        default=20000,
        help="also time a synthetic cache of this many images (0 = skip)",
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="minimum time per measurement")
    parser.add_argument(
        "--out",
        default=os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "results", "input_pipeline.json"
        ),
    )
    args = parser.parse_args(argv)
    res, batch = args.resolution, args.batch_size
    rows = []

    def record(name, rate, note=""):
        rows.append({"pipeline": name, "images_per_s": round(rate, 1), "note": note})
        print(f"  {name:<34} {rate:>10.1f} img/s  {note}", flush=True)

    with tempfile.TemporaryDirectory(prefix="biggan_bench_") as tmp:
        folder = os.path.join(tmp, "jpegs")
        start = time.perf_counter()
        make_jpeg_folder(folder, args.num_images, num_classes=8)
        mean_kb = (
            np.mean(
                [os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs]
            )
            / 1024
        )
        print(
            f"generated {args.num_images} JPEGs (300-500 px, mean {mean_kb:.0f} KiB) in "
            f"{time.perf_counter() - start:.1f}s; {os.cpu_count()} CPUs",
            flush=True,
        )
        config = data.default_data_config()
        config.update(
            source="folder", path=folder, resolution=res, random_flip=True, num_workers=args.workers
        )
        with data.make_pipeline(config, local_batch_size=batch, seed=0) as it:
            record(
                f"folder JPEG -> {res}px (exact)",
                images_per_second(it, batch, 2 * args.num_images, args.seconds),
                f"batch {batch}, {it.num_workers} decode threads, BOX resize",
            )
        config.fast_jpeg = True
        with data.make_pipeline(config, local_batch_size=batch, seed=0) as it:
            record(
                f"folder JPEG -> {res}px (fast_jpeg)",
                images_per_second(it, batch, 2 * args.num_images, args.seconds),
                f"batch {batch}, {it.num_workers} decode threads, draft decode + BOX",
            )

        cache_dir = os.path.join(tmp, "cache")
        start = time.perf_counter()
        data.build_cache(
            data.FolderSource(folder, res), cache_dir, num_workers=args.workers, progress=False
        )
        record(
            "build-cache from folder",
            args.num_images / (time.perf_counter() - start),
            "one pass, exact decode",
        )
        config.update(source="cache", path=cache_dir, fast_jpeg=False)
        for cache_batch in (batch, 256):
            with data.make_pipeline(config, local_batch_size=cache_batch, seed=0) as it:
                record(
                    f"cache {args.num_images} -> batches of {cache_batch}",
                    images_per_second(it, cache_batch, 20 * args.num_images, args.seconds),
                    "memmap gather + random flip, prefetch thread",
                )

        if args.big_cache:
            big_dir = os.path.join(tmp, "big_cache")
            rng = np.random.default_rng(0)
            images = rng.integers(0, 256, (args.big_cache, res, res, 3), dtype=np.uint8)
            source = ArraySource(
                images,
                np.arange(args.big_cache, dtype=np.int32) % 1000,
                [str(i) for i in range(1000)],
                "synthetic",
            )
            data.build_cache(source, big_dir, progress=False)
            del images, source
            size_mb = os.path.getsize(os.path.join(big_dir, "images.npy")) / 2**20
            config.update(path=big_dir)
            with data.make_pipeline(config, local_batch_size=256, seed=0) as it:
                record(
                    f"cache {args.big_cache} -> batches of 256",
                    images_per_second(it, 256, 2 * args.big_cache, args.seconds),
                    f"{size_mb:.0f} MiB memmap (page cache), random flip",
                )

    result = {
        "benchmark": "input_pipeline",
        "resolution": res,
        "num_jpegs": args.num_images,
        "jpeg_mean_kib": round(float(mean_kb), 1),
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "pillow": PIL.__version__,
            "numpy": np.__version__,
            # other jobs share this machine: high load depresses the decode figures
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        },
        "command": "python " + " ".join([os.path.relpath(__file__)] + (argv or sys.argv[1:])),
        "rows": rows,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
