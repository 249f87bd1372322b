"""Random-access image sources behind one interface.

Every source has a length, class names (index = position) and gives the uint8
``(resolution, resolution, 3)`` image and int label of example ``i``. Array-backed sources
(digits, cache) also expose whole arrays so batches are gathered in one numpy indexing call;
decoding sources (image folder, TFDS) are decoded per example in worker threads.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence

import numpy as np
from etils import epath

from biggan.data.digits import digits_arrays
from biggan.data.preprocess import CorruptImageError, load_image_file
from biggan.runtime import storage

# Extensions (lower-cased) the folder source treats as images; anything else is ignored.
IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".webp",
    ".tif",
    ".tiff",
    ".ppm",
    ".pgm",
    ".pbm",
)


class DataSourceError(ValueError):
    """A data source is missing, empty or inconsistent (configuration error, not a bad example)."""


class ImageSource(abc.ABC):
    """Random access to ``len(self)`` examples at a fixed resolution."""

    description: str  # e.g. 'folder:/data/train'; stored in cache manifests and class-mapping files
    resolution: int
    class_names: tuple[str, ...]
    note: str = ""  # what a user should know of the labels (the trainer's first data line shows it)

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def load(self, index: int) -> tuple[np.ndarray, int]:
        """Image uint8 (r, r, 3) and label of example ``index``; raises CorruptImageError if bad."""

    def where(self, index: int) -> str:
        """Human-readable location of an example (a path where there is one), for logs."""
        return f"{self.description}[{index}]"

    def arrays(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(images (N, r, r, 3) uint8, labels (N,) int32) when the data is array-backed, else
        None."""
        return None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


class ArraySource(ImageSource):
    """In-memory or memory-mapped arrays that are already preprocessed."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], description: str
    ):
        if (
            images.ndim != 4
            or images.shape[-1] != 3
            or images.shape[1] != images.shape[2]
            or (images.dtype != np.uint8)
        ):
            raise DataSourceError(
                f"{description}: images have shape {images.shape} dtype {images.dtype};"
                " expected uint8 (N, r, r, 3)"
            )
        if labels.shape != (images.shape[0],):
            raise DataSourceError(
                f"{description}: labels have shape {labels.shape}; expected "
                f"({images.shape[0]},) to match the images"
            )
        self._images = images
        self._labels = labels
        self.class_names = tuple(class_names)
        self.description = description
        self.resolution = int(images.shape[1])

    def __len__(self) -> int:
        return int(self._images.shape[0])

    def load(self, index: int) -> tuple[np.ndarray, int]:
        return np.asarray(self._images[index]), int(self._labels[index])

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return self._images, self._labels


class DigitsSource(ArraySource):
    """scikit-learn's 8x8 digits upscaled to ``resolution`` (see `digits_arrays`)."""

    def __init__(self, resolution: int = 32):
        images, labels = digits_arrays(resolution)
        super().__init__(images, labels, [str(d) for d in range(10)], f"digits@{resolution}")


def scan_image_folder(root: str | os.PathLike) -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    """List an image folder with one sub-folder per class, or one class of the images directly in
    it.

    Class index = position of the sub-folder name in sorted order (Python string order, as
    torchvision's ImageFolder). Images are found recursively inside each class folder, sorted by
    relative path, so the example order is deterministic. Hidden entries (leading '.') are ignored.
    A folder without sub-folders is one class, named after the folder (`FolderSource.note` says so).
    Returns (paths, labels int32, class_names).
    """
    root = os.fspath(root)
    if not storage.isdir(root):
        raise DataSourceError(
            f"image folder {root!r} does not exist or is not a directory; expected a directory with "
            "one sub-folder of images per class (e.g. ROOT/cat/1.jpg, ROOT/dog/2.png)."
        )
    entries = [(p.name, p.is_dir()) for p in epath.Path(root).iterdir()]  # local or gs://
    class_names = sorted(name for name, is_dir in entries if is_dir and not name.startswith("."))
    if not class_names:
        found = sorted(_image_files(root))
        if not found:
            raise DataSourceError(
                f"image folder {root!r} holds no images and no class sub-folders; expected images "
                f"(ending in {', '.join(IMAGE_EXTENSIONS)}) directly in it (one class) or one sub-folder of "
                f"images per class (e.g. {root}/cat/1.jpg)."
            )
        name = os.path.basename(os.path.normpath(root)) or "images"
        return found, np.zeros(len(found), np.int32), (name,)
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(class_names):
        class_dir = os.path.join(root, name)
        found = _image_files(class_dir)
        if not found:
            raise DataSourceError(
                f"class folder {class_dir!r} contains no images; expected files ending in "
                f"{', '.join(IMAGE_EXTENSIONS)} (any case). Add images or remove the folder (class "
                "indices are the sorted folder names, so removing it renumbers later classes)."
            )
        found.sort()
        paths.extend(found)
        labels.extend([label] * len(found))
    return paths, np.asarray(labels, dtype=np.int32), tuple(class_names)


def _image_files(class_dir: str) -> list[str]:
    """Image files anywhere below `class_dir`, skipping hidden files and folders (order: caller
    sorts)."""
    # Object storage: epath's walk (one listing per folder level; it yields folders without their
    # gs://); local: os.walk, following symlinked folders.
    remote = storage.is_remote(class_dir)
    walk = epath.Path(class_dir).walk() if remote else os.walk(class_dir, followlinks=True)
    scheme = class_dir.split("://", 1)[0] + "://" if remote else ""
    found = []
    for dirpath, dirnames, filenames in walk:
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        folder = os.fspath(dirpath)
        folder = folder if not remote or storage.is_remote(folder) else scheme + folder
        found.extend(
            os.path.join(folder, f)
            for f in filenames
            if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)
        )
    return found


class FolderSource(ImageSource):
    """Image files under ROOT/<class name>/..., decoded and preprocessed on access."""

    def __init__(self, root: str | os.PathLike, resolution: int, *, fast_jpeg: bool = False):
        self.root = storage.resolve(root)
        self.paths, self.labels, self.class_names = scan_image_folder(self.root)
        self.resolution = int(resolution)
        self.fast_jpeg = fast_jpeg
        self.description = f"folder:{self.root}"
        has_class_folders = any(
            p.is_dir() and not p.name.startswith(".") for p in epath.Path(self.root).iterdir()
        )
        self.note = (
            "" if has_class_folders else "no class sub-folders: one class, every image labelled 0"
        )

    def __len__(self) -> int:
        return len(self.paths)

    def where(self, index: int) -> str:
        return self.paths[index]

    def load(self, index: int) -> tuple[np.ndarray, int]:
        image = load_image_file(self.paths[index], self.resolution, fast_jpeg=self.fast_jpeg)
        return image, int(self.labels[index])


__all__ = [
    "ArraySource",
    "CorruptImageError",
    "DataSourceError",
    "DigitsSource",
    "FolderSource",
    "IMAGE_EXTENSIONS",
    "ImageSource",
    "scan_image_folder",
]
