"""Background work for the input pipelines (threads; PIL, numpy and JAX's transfers release the
GIL): an order-preserving parallel map with bounded lookahead, and an iterator produced ahead on a
thread."""

from __future__ import annotations

import collections
import concurrent.futures
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    num_workers: int,
    lookahead: int,
    stop: threading.Event | None = None,
) -> Iterator[tuple[T, R]]:
    """Yield ``(item, fn(item))`` in input order, running up to ``lookahead`` calls ahead.

    ``items`` may be infinite. Exceptions raised by ``fn`` propagate when their item is reached.
    Setting ``stop`` ends the iteration early and cancels queued work.
    """
    items = iter(items)
    pending: collections.deque = collections.deque()
    with concurrent.futures.ThreadPoolExecutor(
        max(1, num_workers), thread_name_prefix="biggan-data"
    ) as pool:
        try:
            exhausted = False
            while True:
                while not exhausted and len(pending) < max(1, lookahead):
                    try:
                        item = next(items)
                    except StopIteration:
                        exhausted = True
                        break
                    pending.append((item, pool.submit(fn, item)))
                if not pending or (stop is not None and stop.is_set()):
                    return
                item, future = pending.popleft()
                yield item, future.result()
        finally:
            for _, future in pending:
                future.cancel()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


class BackgroundIterator:
    """The items of ``items`` produced on a daemon thread, up to ``depth`` ahead in a bounded queue.

    An exception in the producer is raised by ``next()`` with its own type and message. ``close()``
    stops the producer (it notices within 50 ms once it is waiting to put an item; ``stop`` is also
    set, for an ``items`` that watches it) and closes ``items`` on the producer's own thread.
    """

    def __init__(
        self, items: Iterator, *, depth: int, name: str, stop: threading.Event | None = None
    ):
        if depth < 1:
            raise ValueError(
                f"depth={depth}; expected >= 1 (0 means no background thread: iterate directly)"
            )
        self.name = name
        self._stop = stop or threading.Event()
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._produce, args=(items,), name=name, daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def _produce(self, items) -> None:
        try:
            for item in items:
                if not self._put(item):
                    return
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised in __next__
            self._put(_Failure(error))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            try:
                item = self._queue.get(timeout=1.0)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    self.close()
                    raise RuntimeError(
                        f"the {self.name} thread ended without an item or an error"
                    ) from None
        if isinstance(item, _Failure):
            self.close()
            raise item.error
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
