"""Order-preserving parallel map with bounded lookahead (threads; PIL and numpy release the GIL)."""
from __future__ import annotations

import collections
import concurrent.futures
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(fn: Callable[[T], R], items: Iterable[T], *, num_workers: int, lookahead: int,
                stop: threading.Event | None = None) -> Iterator[tuple[T, R]]:
  """Yield ``(item, fn(item))`` in input order, running up to ``lookahead`` calls ahead.

  ``items`` may be infinite. Exceptions raised by ``fn`` propagate when their item is reached.
  Setting ``stop`` ends the iteration early and cancels queued work.
  """
  items = iter(items)
  pending: collections.deque = collections.deque()
  with concurrent.futures.ThreadPoolExecutor(max(1, num_workers),
                                             thread_name_prefix="biggan-data") as pool:
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
