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

import logging
import os
import threading
from typing import Any

import numpy as np

from biggan.data.parallel import BackgroundIterator, ordered_map
from biggan.data.preprocess import CorruptImageError
from biggan.data.source_config import make_source, save_or_check_class_mapping
from biggan.data.sources import DataSourceError, ImageSource

logger = logging.getLogger(__name__)
_PERMUTATION_STREAM = 0  # SeedSequence stream ids: independent randomness per purpose
_FLIP_STREAM = 1


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
        """(global indices of this process's shard in visiting order, flip flags or None) for
        ``epoch``."""
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
        """Continue from a position returned by `get_state` (of the same data, seed and
        sharding)."""
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
