"""The train loop's entry point: `make_pipeline(data_config, ...)` -> a resumable batch iterator.

Order: epoch e visits a permutation of all N examples drawn from (seed, e); process p of P takes
every P-th element of it (perm[p::P]), so the processes' shards are disjoint, cover the data
each epoch, and are reshuffled globally every epoch. The stream of a process is the
concatenation of its epochs; a batch may straddle an epoch boundary (nothing is dropped). The
iterator's position is (epoch, offset into this process's shard), a small JSON-able dict, so a
restored iterator yields exactly the batches the uninterrupted one would have. Random flips are
a function of (seed, epoch, example), so they replay too.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any

import ml_collections
import numpy as np

from biggan.data.cache import CacheSource
from biggan.data.parallel import BackgroundIterator, ordered_map
from biggan.data.preprocess import CorruptImageError
from biggan.data.sources import DataSourceError, DigitsSource, FolderSource, ImageSource
from biggan.data.tfds_source import (
    TfdsSource,  # imports tensorflow_datasets only when a TFDS source is built
)
from biggan.runtime import storage

logger = logging.getLogger(__name__)

SOURCES = ("digits", "folder", "cache", "tfds")
CLASS_MAPPING_FILE = "data_classes.json"
_PERMUTATION_STREAM = 0  # SeedSequence stream ids: independent randomness per purpose
_FLIP_STREAM = 1


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
            "prefetch_steps": 2,  # the trainer's global batches (a step's worth each) stacked and placed
            # on the devices ahead by a background thread (biggan/train/prefetch.py); 0 = none
            "max_examples": 0,  # use only the first N examples (debugging, limited-data studies); 0 = all
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
    """A source spec ('digits' | 'folder:PATH' | 'cache:PATH' | 'tfds:NAME[:SPLIT]') -> a data ConfigDict
    (the spec's split, when given, wins over ``split``)."""
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


class ShardedBatchIterator:
    """Infinite iterator of ``{'image': uint8 (b, r, r, 3), 'label': int32 (b,)}`` for one process.

    ``get_state()`` / ``set_state()`` save and restore the position (a JSON-able dict). Decoding
    sources are decoded by ``num_workers`` threads and ``prefetch_batches`` batches are prepared
    ahead in a background thread. Corrupt examples are skipped (logged once per file, counted in
    ``stats()``); the batch is filled from the next examples, deterministically.
    """

    def __init__(
        self,
        source: ImageSource,
        *,
        local_batch_size: int,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
        random_flip: bool = False,
        num_workers: int = 0,
        prefetch_batches: int = 2,
    ):
        n = len(source)
        if not (isinstance(local_batch_size, (int, np.integer)) and local_batch_size >= 1):
            raise ValueError(
                f"local_batch_size={local_batch_size!r}; expected an int >= 1 (the global "
                "batch divided by process_count)."
            )
        if not (
            isinstance(process_count, (int, np.integer))
            and process_count >= 1
            and 0 <= process_index < process_count
        ):
            raise ValueError(
                f"process_index={process_index!r}, process_count={process_count!r}; "
                "expected 0 <= process_index < process_count (jax.process_index(), "
                "jax.process_count())."
            )
        if n < process_count:
            raise DataSourceError(
                f"{source.description} has {n} examples, fewer than process_count="
                f"{process_count}; every process needs at least one."
            )
        if not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seed={seed!r}; expected an int.")
        self.source = source
        self.local_batch_size = int(local_batch_size)
        self.seed = int(seed)
        self.process_index = int(process_index)
        self.process_count = int(process_count)
        self.random_flip = bool(random_flip)
        self.num_workers = int(num_workers) or min(8, os.cpu_count() or 1)
        self.prefetch_batches = int(prefetch_batches)
        self.num_examples = n
        self.shard_size = len(range(self.process_index, n, self.process_count))
        self._arrays = source.arrays()
        self._epoch_cache: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        self._state = (0, 0)  # (epoch, offset) of the next example to deliver
        self._lock = threading.Lock()
        self._skipped: dict[str, int] = {}
        self._stop: threading.Event | None = None
        self._batch_iter = (
            None  # a generator of (batch, state after it), or a BackgroundIterator of it
        )

    # -- order -----------------------------------------------------------------------------------
    def _seed_words(self, epoch: int, stream: int) -> list[int]:
        return [self.seed % (1 << 64), epoch, stream]

    def epoch_order(self, epoch: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(global indices of this process's shard in visiting order, flip flags or None) for ``epoch``."""
        cached = self._epoch_cache.get(epoch)
        if cached is None:
            rng = np.random.default_rng(self._seed_words(epoch, _PERMUTATION_STREAM))
            order = rng.permutation(self.num_examples)[self.process_index :: self.process_count]
            flips = None
            if self.random_flip:
                flip_all = (
                    np.random.default_rng(self._seed_words(epoch, _FLIP_STREAM)).random(
                        self.num_examples
                    )
                    < 0.5
                )
                flips = flip_all[order]
            cached = (order, flips)
            if len(self._epoch_cache) >= 2:
                self._epoch_cache.pop(min(self._epoch_cache))
            self._epoch_cache[epoch] = cached
        return cached

    def _take(self, state: tuple[int, int], count: int):
        """The next ``count`` positions from ``state``: (indices, flips, state after)."""
        epoch, offset = state
        indices, flips = [], []
        while count:
            order, epoch_flips = self.epoch_order(epoch)
            take = min(count, self.shard_size - offset)
            indices.append(order[offset : offset + take])
            flips.append(
                epoch_flips[offset : offset + take]
                if epoch_flips is not None
                else np.zeros(take, bool)
            )
            count -= take
            offset += take
            if offset == self.shard_size:
                epoch, offset = epoch + 1, 0
        return np.concatenate(indices), np.concatenate(flips), (epoch, offset)

    def _positions(self, state: tuple[int, int]):
        """Infinite stream of (global index, flip, state after this example)."""
        while True:
            indices, flips, after = self._take(state, self.shard_size - state[1])
            epoch = state[0]
            for k, (index, flip) in enumerate(zip(indices.tolist(), flips.tolist())):
                offset = state[1] + k + 1
                yield (
                    index,
                    flip,
                    ((epoch + 1, 0) if offset == self.shard_size else (epoch, offset)),
                )
            state = after

    # -- batches ---------------------------------------------------------------------------------
    def _array_batches(self, state, stop):
        images, labels = self._arrays
        while not stop.is_set():
            indices, flips, state = self._take(state, self.local_batch_size)
            batch_images = np.asarray(images[indices])  # fancy index: a copy, also from a memmap
            if flips.any():
                batch_images[flips] = batch_images[flips, :, ::-1]
            yield {"image": batch_images, "label": np.asarray(labels[indices], np.int32)}, state

    def _load(self, position):
        index, flip, _ = position
        try:
            image, label = self.source.load(index)
        except CorruptImageError as error:
            return (
                error  # recorded in stream order by _decoded_batches, so counts are deterministic
            )
        return (image[:, ::-1] if flip else image), label

    def _record_skip(self, error: CorruptImageError) -> None:
        with self._lock:
            first = error.where not in self._skipped
            self._skipped[error.where] = self._skipped.get(error.where, 0) + 1
            total = sum(self._skipped.values())
        if first:
            logger.warning(
                "skipping corrupt or unreadable image %s (%s); %d skipped so far",
                error.where,
                error.cause,
                total,
            )

    def _decoded_batches(self, state, stop):
        b = self.local_batch_size
        images, labels, bad_streak = [], [], 0
        stream = ordered_map(
            self._load,
            self._positions(state),
            num_workers=self.num_workers,
            lookahead=max(2 * b, 4 * self.num_workers),
            stop=stop,
        )
        try:
            for (_, _, after), result in stream:
                if isinstance(result, CorruptImageError):
                    self._record_skip(result)
                    bad_streak += 1
                    if bad_streak >= self.shard_size:
                        raise DataSourceError(
                            f"{self.source.description}: all {self.shard_size} examples of "
                            f"process {self.process_index}'s shard failed to decode; see "
                            "the warnings above for the files."
                        )
                    continue
                bad_streak = 0
                images.append(result[0])
                labels.append(result[1])
                if len(images) == b:
                    yield {"image": np.stack(images), "label": np.asarray(labels, np.int32)}, after
                    images, labels = [], []
        finally:
            stream.close()

    def _batches(self, state, stop):
        if self._arrays is not None:
            return self._array_batches(state, stop)
        return self._decoded_batches(state, stop)

    # -- background prefetch ---------------------------------------------------------------------
    def _start(self) -> None:
        self._stop = threading.Event()
        batches = self._batches(self._state, self._stop)
        if self.prefetch_batches <= 0:
            self._batch_iter = batches
        else:
            self._batch_iter = BackgroundIterator(
                batches, depth=self.prefetch_batches, name="biggan-data-prefetch", stop=self._stop
            )

    def close(self) -> None:
        """Stop background work (restarted on the next ``next()``)."""
        if self._stop is not None:
            self._stop.set()
        if self._batch_iter is not None:
            self._batch_iter.close()
        self._batch_iter = self._stop = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._stop is None:
            self._start()
        try:
            batch, self._state = next(self._batch_iter)
        except BaseException:
            self.close()
            raise
        return batch

    # -- state -----------------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        """Epoch of the next example to be delivered."""
        return self._state[0]

    def get_state(self) -> dict[str, Any]:
        """JSON-able position: restoring it replays exactly the batches that followed."""
        return {
            "epoch": self._state[0],
            "offset": self._state[1],
            "seed": self.seed,
            "process_index": self.process_index,
            "process_count": self.process_count,
            "num_examples": self.num_examples,
            "source": self.source.description,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue from a position returned by `get_state` (of the same data, seed and sharding)."""
        expected = {
            "seed": self.seed,
            "process_index": self.process_index,
            "process_count": self.process_count,
            "num_examples": self.num_examples,
        }
        mismatched = {k: (state.get(k), v) for k, v in expected.items() if state.get(k) != v}
        if mismatched:
            details = ", ".join(
                f"{k}: saved {a!r} vs now {b!r}" for k, (a, b) in mismatched.items()
            )
            raise ValueError(
                f"data iterator state does not fit this pipeline ({details}); resume with "
                "the same data, seed and process layout, or start the data stream afresh."
            )
        epoch, offset = int(state["epoch"]), int(state["offset"])
        if epoch < 0 or not 0 <= offset < self.shard_size:
            raise ValueError(
                f"data iterator state epoch={epoch}, offset={offset}; expected epoch >= 0 "
                f"and 0 <= offset < {self.shard_size} (this process's shard size)."
            )
        if state.get("source") != self.source.description:
            logger.warning(
                "resuming data position saved for %r on %r (same size; order assumed equal)",
                state.get("source"),
                self.source.description,
            )
        self.close()
        self._state = (epoch, offset)

    def stats(self) -> dict[str, Any]:
        """Skipped-example counts: every skip so far, counted again each epoch it recurs.

        Counted in stream order up to the batch being built, so with prefetch the count runs up
        to ``prefetch_batches`` batches ahead of the batches consumed.
        """
        with self._lock:
            return {
                "skipped": sum(self._skipped.values()),
                "skipped_files": len(self._skipped),
                "skipped_paths": sorted(self._skipped),
            }

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.source.class_names

    @property
    def num_classes(self) -> int:
        return self.source.num_classes


def make_pipeline(
    data_config,
    *,
    local_batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    run_dir: str | os.PathLike | None = None,
) -> ShardedBatchIterator:
    """The iterator the train loop consumes: local batches of this process (see module doc).

    run_dir: when given, the class mapping is saved there on first use (process 0) and checked
    on every later start; a changed mapping raises DataSourceError.
    """
    source = make_source(data_config)
    if run_dir is not None:
        save_or_check_class_mapping(run_dir, source, write=process_index == 0)
    return ShardedBatchIterator(
        source,
        local_batch_size=local_batch_size,
        seed=seed,
        process_index=process_index,
        process_count=process_count,
        random_flip=data_config.random_flip,
        num_workers=int(data_config.num_workers),
        prefetch_batches=int(data_config.prefetch_batches),
    )
