"""Global batches built ahead on a background thread: while the devices run step k, the host stacks
step k+1's local batches and places them on the mesh (`jax.make_array_from_process_local_data`).

The input position saved in checkpoints is that of the batches the model consumed
(`consumed_state`), not of the ones waiting in the queue: `close()` rewinds the pipeline to it, so a
resume (or a rollback) replays exactly the batches an uninterrupted run would have seen. An
exception in the producer is raised in the consumer's `next()` with its own type and message.
"""

from __future__ import annotations

import jax
import numpy as np

from biggan.data.parallel import BackgroundIterator


class GlobalBatchPrefetcher:
    """Iterator of global batches {'image', 'label'} with lead dims `lead_shape` (num_d_steps,
    num_accumulations), each made of prod(lead_shape) consecutive local batches of `pipeline`.

    depth: global batches prepared ahead (bounded queue); 0 builds each batch when asked (no
    thread).
    """

    def __init__(self, pipeline, lead_shape: tuple[int, ...], sharding, *, depth: int = 2):
        self.pipeline, self.lead_shape, self.sharding = pipeline, tuple(lead_shape), sharding
        self.depth = int(depth)
        self.consumed_state = pipeline.get_state()
        self._background: BackgroundIterator | None = None

    def _build(self):
        """One global batch and the pipeline position after it."""
        local = [next(self.pipeline) for _ in range(int(np.prod(self.lead_shape)))]
        batch = {
            k: np.stack([b[k] for b in local]).reshape(self.lead_shape + local[0][k].shape)
            for k in ("image", "label")
        }
        batch = {
            k: jax.make_array_from_process_local_data(self.sharding, v) for k, v in batch.items()
        }
        return batch, self.pipeline.get_state()

    def _built_batches(self):
        while True:
            yield self._build()

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self.depth <= 0:
            batch, self.consumed_state = self._build()
            return batch
        if self._background is None:
            self._background = BackgroundIterator(
                self._built_batches(), depth=self.depth, name="biggan-global-batch-prefetch"
            )
        try:
            batch, self.consumed_state = next(self._background)
        except BaseException:
            self.close()
            raise
        return batch

    def close(self) -> None:
        """Stop the producer and rewind the pipeline to the consumed position (a later `next()`
        restarts)."""
        if self._background is not None:
            self._background.close()
            self._background = None
            self.pipeline.set_state(self.consumed_state)

    def restart_from(self, data_state: dict) -> None:
        """Continue from a saved position (this process's, as `pipeline.set_state` takes it)."""
        self.close()
        self.pipeline.set_state(data_state)
        self.consumed_state = self.pipeline.get_state()
