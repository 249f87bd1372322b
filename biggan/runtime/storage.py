"""Run files on a local disk or on object storage (`gs://bucket/run`) through one interface:
etils.epath, which orbax already depends on (gcsfs for `gs://`: `pip install -e ".[gcs]"`).

Object storage has no append and no rename: a file is written whole, as one object (an upload either
lands completely or not at all). Local files are written to a temporary name and renamed, so that a
reader never sees half a file there either. Local paths stay plain absolute paths.
"""

from __future__ import annotations

import io
import os

import numpy as np
from etils import epath
from etils.epath import backend as epath_backend


class StorageError(RuntimeError):
    """A bucket that does not exist or cannot be reached with these credentials."""


def is_remote(path) -> bool:
    """True for object-storage URLs (gs://, s3://, ...); False for local paths."""
    return "://" in os.fspath(path)


def resolve(path) -> str:
    """An absolute local path, or the URL unchanged."""
    path = os.fspath(path)
    return path.rstrip("/") if is_remote(path) else os.path.abspath(os.path.expanduser(path))


def check_bucket(path) -> None:
    """Object storage: raise StorageError (one line naming the fix) unless `path`'s bucket exists
    and these credentials can list it; asked once, before a run writes anything. Local paths:
    nothing to check."""
    path = os.fspath(path)
    if not is_remote(path):
        return
    scheme, rest = path.split("://", 1)
    bucket = f"{scheme}://{rest.split('/')[0]}"
    try:
        found = epath.Path(bucket).exists()
    except Exception as e:  # 401/403, no credentials, an unreachable endpoint
        detail = str(e).splitlines()[0] if str(e) else ""
        raise StorageError(
            f"cannot read bucket {bucket} for {path} ({type(e).__name__}: {detail}); check the "
            f"credentials (gcloud auth application-default login) and their access to it"
        ) from e
    if not found:
        raise StorageError(
            f"bucket {bucket} does not exist or these credentials cannot see it: create it "
            f"(gcloud storage buckets create {bucket}) or fix the path {path}"
        )


def refresh(path) -> None:
    """Object storage: drop the listing cache of etils.epath's fsspec filesystem (one instance per
    scheme, shared with orbax), since another process or host may have written since this one last
    listed: a stale listing hides new checkpoints and a stale size reads a file short. Local paths:
    nothing to do."""
    path = os.fspath(path)
    if is_remote(path):
        try:
            epath_backend.fsspec_backend.fs(path).invalidate_cache()
        # epath reads URLs through TensorFlow here (EPATH_USE_TF): no fsspec cache
        except ImportError:
            pass


def _current(path) -> epath.Path:
    refresh(path)
    return epath.Path(path)


def exists(path) -> bool:
    return _current(path).exists()


def isdir(path) -> bool:
    return _current(path).is_dir()


def isfile(path) -> bool:
    return _current(path).is_file()


def makedirs(path) -> None:
    epath.Path(path).mkdir(parents=True, exist_ok=True)


def glob(directory, pattern: str) -> list[str]:
    """Sorted paths (str) in `directory` matching `pattern`; [] if the directory does not exist."""
    root = _current(directory)
    return sorted(os.fspath(p) for p in root.glob(pattern)) if root.exists() else []


def read_bytes(path) -> bytes:
    return _current(path).read_bytes()


def read_text(path) -> str:
    return _current(path).read_text()


def write_bytes(path, data: bytes) -> None:
    """Write a whole file: one object upload remotely, temporary file + rename locally."""
    path = os.fspath(path)
    if is_remote(path):
        epath.Path(path).parent.mkdir(parents=True, exist_ok=True)
        epath.Path(path).write_bytes(data)
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode())


def copy(source, destination) -> None:
    write_bytes(destination, read_bytes(source))


def save_npz(path, **arrays) -> None:
    """np.savez to `path` exactly (no '.npz' appended), written whole."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_bytes(path, buffer.getvalue())


def load_npz(path) -> dict[str, np.ndarray]:
    """All arrays of an .npz file (no pickles)."""
    with np.load(io.BytesIO(read_bytes(path)), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def load_npy(path) -> np.ndarray:
    return np.load(io.BytesIO(read_bytes(path)), allow_pickle=False)


class NpyRows:
    """The rows of a .npy file on object storage, each read on demand with one ranged read: what
    np.load(path, mmap_mode="r") gives for a local file, for `shape`, `dtype`, `ndim`, `len()` and
    `rows[i]`."""

    def __init__(self, path):
        self.path = os.fspath(path)
        with _current(self.path).open("rb") as f:
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(
                    f"{self.path}: .npy format version {version} is not supported (1.0 or 2.0)"
                )
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            self.shape, fortran_order, self.dtype = read_header(f)
            self._offset = f.tell()
        if fortran_order or not self.shape:
            raise ValueError(
                f"{self.path}: expected a C-ordered array with rows, got shape {self.shape}"
            )
        self.ndim = len(self.shape)
        self._row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def __len__(self) -> int:
        return int(self.shape[0])

    def __getitem__(self, index) -> np.ndarray:
        index = int(index)  # one row (the pipeline reads rows in parallel threads)
        if not 0 <= index < self.shape[0]:
            raise IndexError(f"row {index} of {self.path} (it has {self.shape[0]})")
        start = self._offset + index * self._row_bytes
        data = epath_backend.fsspec_backend.fs(self.path).cat_file(
            self.path, start=start, end=start + self._row_bytes
        )
        return np.frombuffer(data, self.dtype).reshape(self.shape[1:])
