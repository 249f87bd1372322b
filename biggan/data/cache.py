"""Preprocessed cache: a memory-mapped uint8 ``images.npy`` (N, r, r, 3) + ``labels.npy`` (N,) int32
+ ``manifest.json`` (resolution, source, class names, count). Built once with
``python -m biggan.data build-cache --source SOURCE --resolution R --out DIR``; epochs then cost a
memory gather instead of JPEG decodes.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import time

import numpy as np
from tqdm import tqdm

from biggan.data.parallel import ordered_map
from biggan.data.preprocess import CorruptImageError
from biggan.data.sources import ArraySource, DataSourceError, ImageSource
from biggan.runtime import storage

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
IMAGES_FILE = "images.npy"
LABELS_FILE = "labels.npy"
CACHE_FORMAT = "biggan-jax image cache"
CACHE_VERSION = 1


def _shrink_npy_rows(path: str, rows: int) -> None:
    """Cut a v1.0 .npy file to its first ``rows`` rows in place (rewrite header, truncate).

    Used when corrupt inputs were skipped, so the file was allocated for more rows than written;
    avoids copying a possibly very large array. The header keeps its byte length (space padded),
    which the .npy format allows.
    """
    with open(path, "r+b") as f:
        version = np.lib.format.read_magic(f)
        if version != (1, 0):
            raise ValueError(f"{path}: expected .npy format version 1.0, got {version}")
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
        data_offset = f.tell()
        new_shape = (rows,) + tuple(shape[1:])
        header = repr(
            {
                "descr": np.lib.format.dtype_to_descr(dtype),
                "fortran_order": fortran_order,
                "shape": new_shape,
            }
        ).encode("latin1")
        # magic(6) + version(2) + uint16 length(2); header ends with '\n'
        room = data_offset - 10 - 1
        if len(header) > room:
            raise ValueError(f"{path}: new header does not fit ({len(header)} > {room} bytes)")
        f.seek(10)
        f.write(header + b" " * (room - len(header)) + b"\n")
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        f.truncate(data_offset + rows * row_bytes)


def build_cache(
    source: ImageSource,
    out_dir: str | os.PathLike,
    *,
    num_workers: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Preprocess every example of ``source`` into a cache at ``out_dir``; returns the manifest.

    Corrupt examples are skipped, logged and listed in the manifest ('skipped'). Files are
    written under temporary names and the manifest last, so an interrupted build is never
    mistaken for a complete cache.
    """
    out_dir = os.path.abspath(os.fspath(out_dir))
    manifest_path = os.path.join(out_dir, MANIFEST)
    if os.path.exists(manifest_path) and not overwrite:
        raise FileExistsError(
            f"cache {out_dir!r} already exists ({MANIFEST} present); pass "
            "overwrite=True (--overwrite) to rebuild it, or choose another --out."
        )
    os.makedirs(out_dir, exist_ok=True)
    if os.path.exists(manifest_path):
        os.remove(manifest_path)  # the cache is invalid from here until the new manifest is written
    total = len(source)
    res = source.resolution
    images_tmp = os.path.join(out_dir, IMAGES_FILE + ".partial")
    images = np.lib.format.open_memmap(
        images_tmp, mode="w+", dtype=np.uint8, shape=(total, res, res, 3), version=(1, 0)
    )
    labels = np.empty((total,), np.int32)
    skipped: list[str] = []
    start = time.perf_counter()

    def load(index: int):
        try:
            return source.load(index)
        except CorruptImageError as error:
            return error

    arrays = source.arrays()
    written = 0
    with tqdm(
        total=total,
        unit="img",
        desc=f"build-cache {res}px",
        disable=not progress,
        mininterval=1.0,
        smoothing=0.05,
    ) as bar:
        if arrays is not None:  # already preprocessed arrays (digits, another cache): plain copy
            step = 4096
            for lo in range(0, total, step):
                hi = min(total, lo + step)
                images[lo:hi] = arrays[0][lo:hi]
                labels[lo:hi] = arrays[1][lo:hi]
                bar.update(hi - lo)
            written = total
        else:
            workers = num_workers or min(8, os.cpu_count() or 1)
            for index, result in ordered_map(
                load, range(total), num_workers=workers, lookahead=4 * workers + 16
            ):
                if isinstance(result, CorruptImageError):
                    skipped.append(result.where)
                    logger.warning(
                        "build-cache: skipping corrupt image %s (%s)", result.where, result.cause
                    )
                else:
                    images[written], labels[written] = result
                    written += 1
                bar.update(1)
    images.flush()
    del images
    if written == 0:
        raise DataSourceError(
            f"build-cache: none of the {total} images of {source.description} "
            "could be decoded; nothing cached."
        )
    if written < total:
        _shrink_npy_rows(images_tmp, written)
    os.replace(images_tmp, os.path.join(out_dir, IMAGES_FILE))
    np.save(os.path.join(out_dir, LABELS_FILE), labels[:written])
    elapsed = time.perf_counter() - start
    manifest = {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "resolution": res,
        "count": written,
        "source": source.description,
        "class_names": list(source.class_names),
        "num_classes": len(source.class_names),
        "images": IMAGES_FILE,
        "labels": LABELS_FILE,
        "preprocessing": "centre crop along the long edge, PIL BOX (area) resize; uint8 RGB NHWC",
        "skipped": skipped,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "build_seconds": round(elapsed, 2),
    }
    tmp_manifest = manifest_path + ".partial"
    with open(tmp_manifest, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp_manifest, manifest_path)
    logger.info(
        "build-cache: wrote %d images (%d skipped) at %dpx to %s in %.1fs (%.0f img/s)",
        written,
        len(skipped),
        res,
        out_dir,
        elapsed,
        total / max(elapsed, 1e-9),
    )
    return manifest


def read_manifest(cache_dir: str | os.PathLike) -> dict:
    cache_dir = os.fspath(cache_dir)
    path = os.path.join(cache_dir, MANIFEST)
    if not storage.isfile(path):
        raise DataSourceError(
            f"no image cache at {cache_dir!r}: {MANIFEST} is missing (an interrupted build leaves "
            "none). Build it with `python -m biggan.data build-cache --source SOURCE --resolution R "
            f"--out {cache_dir}`."
        )
    manifest = json.loads(storage.read_text(path))
    if manifest.get("format") != CACHE_FORMAT or manifest.get("version") != CACHE_VERSION:
        raise DataSourceError(
            f"{path}: not a version-{CACHE_VERSION} {CACHE_FORMAT!r} manifest "
            f"(format={manifest.get('format')!r}, version={manifest.get('version')!r});"
            " rebuild the cache with this version of biggan.data."
        )
    return manifest


class CacheSource(ArraySource):
    """A built cache, memory-mapped read-only; on object storage (gs://) each image is a ranged read
    (`storage.NpyRows`) and the pipeline's threads read them in parallel, as they decode image
    files."""

    def __init__(self, cache_dir: str | os.PathLike, resolution: int | None = None):
        self.remote = storage.is_remote(cache_dir)
        cache_dir = storage.resolve(cache_dir)
        manifest = read_manifest(cache_dir)
        if resolution and int(resolution) != manifest["resolution"]:
            raise DataSourceError(
                f"cache {cache_dir!r} holds {manifest['resolution']}px images but resolution="
                f"{resolution} was asked for; set data.resolution={manifest['resolution']} or build a "
                f"cache at {resolution}px with `python -m biggan.data build-cache --resolution "
                f"{resolution} ...`."
            )
        images_path, labels_path = (
            os.path.join(cache_dir, manifest[k]) for k in ("images", "labels")
        )
        if self.remote:
            images, labels = storage.NpyRows(images_path), storage.load_npy(labels_path)
        else:
            images, labels = (
                np.load(images_path, mmap_mode="r"),
                np.load(labels_path, mmap_mode="r"),
            )
        res = manifest["resolution"]
        if images.shape != (manifest["count"], res, res, 3) or labels.shape != (manifest["count"],):
            raise DataSourceError(
                f"cache {cache_dir!r} is inconsistent: images {images.shape}, labels {labels.shape}, "
                f"manifest count {manifest['count']} at {res}px; rebuild it."
            )
        self.manifest = manifest
        self.origin = manifest["source"]
        super().__init__(images, labels, manifest["class_names"], f"cache:{cache_dir}")

    def arrays(self):
        # Remote rows are single ranged reads: whole-array slicing would fetch them one by one on
        # one thread, so callers take the per-example path (parallel, as for image files).
        return None if self.remote else super().arrays()
