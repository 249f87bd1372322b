"""scikit-learn's bundled digits (1,797 grey 8x8 images, 10 classes) as a tiny RGB image dataset.

Used for smoke runs and tests: it ships with scikit-learn, so it needs no download. The file is read
where scikit-learn installed it, without importing scikit-learn (a second per process;
BUILD_NOTES.md, Dependencies), exactly as `sklearn.datasets.load_digits` reads it
(tests/data/test_data.py compares the two).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os

import numpy as np
from PIL import Image

DIGITS_NUM_CLASSES = 10
DIGITS_COUNT = 1797
_DIGITS_MAX_VALUE = 16  # load_digits pixel values are integers 0..16


def digits_csv_path() -> str:
    """sklearn/datasets/data/digits.csv.gz: 64 pixel values then the label per row, as load_digits
    reads it."""
    # locates the package without running its (slow) import
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the digits dataset ships with scikit-learn; install it: pip install scikit-learn"
        )
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path}: scikit-learn's bundled digits are not there; reinstall scikit-learn "
            "(pip install --force-reinstall scikit-learn)"
        )
    return path


def load_digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` as ``sklearn.datasets.load_digits()`` gives ``.images`` and ``.target``:
    float64 ``(1797, 8, 8)`` in 0..16 and int ``(1797,)``."""
    with gzip.open(digits_csv_path(), "rt") as f:
        table = np.loadtxt(f, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)


@functools.lru_cache(maxsize=8)
def _digits_arrays_cached(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    images, target = load_digits_raw()
    grey8 = np.rint(images * (255.0 / _DIGITS_MAX_VALUE)).astype(np.uint8)  # (N, 8, 8)
    if resolution == 8:
        grey = grey8
    else:
        # Bilinear upscaling: an 8x8 source has nothing to antialias, and bilinear gives smooth
        # strokes without the ringing (over/undershoot) of bicubic or Lanczos.
        grey = np.stack(
            [
                np.asarray(
                    Image.fromarray(g, mode="L").resize((resolution, resolution), Image.BILINEAR)
                )
                for g in grey8
            ]
        )
    rgb = np.repeat(grey[..., None], 3, axis=-1)  # grey -> RGB by channel replication
    labels = target.astype(np.int32)
    rgb.setflags(write=False)
    labels.setflags(write=False)
    return rgb, labels


def digits_arrays(resolution: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images, labels)``: uint8 NHWC RGB ``(1797, r, r, 3)`` and int32 ``(1797,)`` in
    0..9.

    Pixel values 0..16 are scaled to 0..255 (white digit on black), then upscaled bilinearly
    from 8x8 to ``resolution`` x ``resolution``. The returned arrays are read-only copies shared
    between calls; ``.copy()`` them to modify.
    """
    if (
        not isinstance(resolution, (int, np.integer))
        or isinstance(resolution, bool)
        or resolution < 8
    ):
        raise ValueError(
            f"digits_arrays: resolution={resolution!r}; expected an int >= 8 (the digits are 8x8 and "
            "are only ever upscaled). Pass e.g. resolution=32."
        )
    return _digits_arrays_cached(int(resolution))
