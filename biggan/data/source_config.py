"""The data section of the config (`default_data_config`, a source spec on the command line) and the
image source it selects (`make_source`), with the class-name mapping a run records beside its
checkpoints."""

from __future__ import annotations

import json
import logging
import os

import ml_collections

from biggan.data.cache import CacheSource
from biggan.data.sources import DataSourceError, DigitsSource, FolderSource, ImageSource
from biggan.data.tfds_source import (
    TfdsSource,  # imports tensorflow_datasets only when a TFDS source is built
)
from biggan.runtime import storage

logger = logging.getLogger(__name__)


SOURCES = ("digits", "folder", "cache", "tfds")
CLASS_MAPPING_FILE = "data_classes.json"


def default_data_config() -> ml_collections.ConfigDict:
    """Data settings with their defaults (configs do ``config.data = default_data_config()``)."""
    return ml_collections.ConfigDict(
        {
            # 'digits' (sklearn, no download) | 'folder' (ROOT/<class>/<images>) | 'cache' (built by
            # `python -m biggan.data build-cache`) | 'tfds' (tfds.data_source, array_record format).
            "source": "digits",
            "resolution": 32,  # square output side in pixels (must equal the model's)
            "path": "",  # folder root ('folder') or cache directory ('cache')
            "tfds_name": "imagenet2012",  # 'tfds' only: e.g. 'imagenet2012', 'cifar10'
            "tfds_data_dir": "",  # 'tfds' only: '' = $TFDS_DATA_DIR or ~/tensorflow_datasets
            "split": "train",  # 'tfds' only
            "random_flip": False,  # horizontal flip with p=0.5, replayable from the seed
            "fast_jpeg": False,  # 'folder': DCT-domain JPEG downscale (faster, not bit-exact)
            "num_workers": 0,  # decode threads for folder/tfds; 0 = min(8, CPU count)
            "prefetch_batches": 2,  # local batches decoded ahead in a background thread; 0 = none
            # the trainer's global batches (a step's worth each) stacked and placed
            "prefetch_steps": 2,
            # on the devices ahead by a background thread (biggan/train/prefetch.py); 0 = none
            # use only the first N examples (debugging, limited-data studies); 0 = all
            "max_examples": 0,
        }
    )


SOURCE_SPEC_HELP = "digits | folder:PATH | cache:PATH | tfds:NAME[:SPLIT]"


def data_config_from_spec(
    spec: str,
    resolution: int,
    *,
    split: str = "train",
    tfds_data_dir: str = "",
    fast_jpeg: bool = False,
) -> ml_collections.ConfigDict:
    """A source spec ('digits' | 'folder:PATH' | 'cache:PATH' | 'tfds:NAME[:SPLIT]') -> a data
    ConfigDict (the spec's split, when given, wins over ``split``)."""
    config = default_data_config()
    kind, _, rest = spec.partition(":")
    if kind not in SOURCES or (kind == "digits") != (not rest):
        raise DataSourceError(
            f"data source {spec!r}; expected {SOURCE_SPEC_HELP} (e.g. "
            "folder:/data/imagenet/train or tfds:imagenet2012)."
        )
    config.source = kind
    config.resolution = int(resolution)
    config.split = split
    config.tfds_data_dir = tfds_data_dir
    config.fast_jpeg = fast_jpeg
    if kind == "tfds":
        config.tfds_name, _, spec_split = rest.partition(":")
        config.split = spec_split or split
    elif kind in ("folder", "cache"):
        config.path = rest
    return config


class SubsetSource(ImageSource):
    """The first ``count`` examples of another source (for debugging runs)."""

    def __init__(self, source: ImageSource, count: int):
        self._source = source
        self._count = min(int(count), len(source))
        self.class_names = source.class_names
        self.resolution = source.resolution
        self.description = f"{source.description}[:{self._count}]"
        self.note = source.note

    def __len__(self) -> int:
        return self._count

    def where(self, index: int) -> str:
        return self._source.where(index)

    def load(self, index: int):
        return self._source.load(index)

    def arrays(self):
        arrays = self._source.arrays()
        return None if arrays is None else (arrays[0][: self._count], arrays[1][: self._count])


def make_source(data_config) -> ImageSource:
    """Build the ImageSource named by ``data_config.source``."""
    kind = data_config.source
    resolution = int(data_config.resolution)
    if resolution < 1:
        raise DataSourceError(
            f"data.resolution={resolution}; expected a positive pixel size "
            "(the model resolution, e.g. 128)."
        )
    path = data_config.path
    if kind in ("folder", "cache") and not path:
        raise DataSourceError(
            f"data.source={kind!r} needs data.path (the "
            f"{'image folder root' if kind == 'folder' else 'cache directory'})."
        )
    if kind == "digits":
        source = DigitsSource(resolution)
    elif kind == "folder":
        source = FolderSource(path, resolution, fast_jpeg=data_config.fast_jpeg)
    elif kind == "cache":
        source = CacheSource(path, resolution)
    elif kind == "tfds":
        source = TfdsSource(
            data_config.tfds_name,
            data_config.split,
            resolution,
            data_dir=data_config.tfds_data_dir or None,
        )
    else:
        raise DataSourceError(f"data.source={kind!r}; expected one of {SOURCES}.")
    max_examples = int(data_config.max_examples)
    if max_examples:
        source = SubsetSource(source, max_examples)
    return source


def _format_mapping(names) -> str:
    return "{" + ", ".join(f"{n!r}: {i}" for i, n in enumerate(names)) + "}"


def save_or_check_class_mapping(
    run_dir: str | os.PathLike, source: ImageSource, *, write: bool = True
) -> str:
    """Record the class mapping in ``run_dir`` on first use; on resume refuse a different one.

    The mapping is class name -> index (index = position in ``source.class_names``). Only the
    lead process should pass ``write=True``. Returns the JSON file's path.
    """
    path = os.path.join(os.fspath(run_dir), CLASS_MAPPING_FILE)
    names = list(source.class_names)
    if storage.isfile(path):
        saved = json.loads(storage.read_text(path))
        saved_names = list(saved["class_names"])
        if saved_names != names:
            differences = [
                f"index {i}: saved {a!r}, now {b!r}"
                for i, (a, b) in enumerate(zip(saved_names, names))
                if a != b
            ][:10]
            raise DataSourceError(
                f"class mapping changed since this run started: {path} (source {saved.get('source')!r})"
                f" maps {_format_mapping(saved_names)} but {source.description} maps "
                f"{_format_mapping(names)} ({len(saved_names)} vs {len(names)} classes; first "
                f"differences: {differences}). Labels would silently change meaning: point data.path at"
                " the original data, or start a new run directory."
            )
        return path
    if write:
        storage.write_text(
            path,
            json.dumps(
                {
                    "source": source.description,
                    "num_classes": len(names),
                    "class_names": names,
                    "mapping": {n: i for i, n in enumerate(names)},
                },
                indent=1,
            ),
        )
    return path
