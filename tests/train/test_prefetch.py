"""Global-batch prefetch (biggan/train/prefetch.py): same batches as without it, the consumed
position saved, producer errors raised in the consumer, in the trainer too."""

import numpy as np
import pytest
import stepping
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from biggan.data import make_pipeline
from biggan.data.pipeline import ShardedBatchIterator
from biggan.data.sources import DataSourceError
from biggan.runtime import sharding
from biggan.train import loop as trainer
from biggan.train import prefetch


def digits_pipeline():
    c = stepping.tiny_config()
    c.data.max_examples = 40  # epochs of 5 batches: the positions cross epoch boundaries
    return make_pipeline(c.data, local_batch_size=8, seed=0)


def global_sharding():
    return NamedSharding(sharding.make_mesh(), P(None, None, sharding.DATA_AXIS))


def take(batches, count):
    return [{k: np.asarray(v) for k, v in next(batches).items()} for _ in range(count)]


def test_prefetched_batches_and_positions_equal_the_synchronous_ones():
    synchronous = prefetch.GlobalBatchPrefetcher(
        digits_pipeline(), (2, 1), global_sharding(), depth=0
    )
    ahead = prefetch.GlobalBatchPrefetcher(digits_pipeline(), (2, 1), global_sharding(), depth=3)
    for _ in range(4):
        a, b = take(synchronous, 1)[0], take(ahead, 1)[0]
        assert a["image"].shape == (2, 1, 8, 32, 32, 3)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
        # The position is that of the batches handed out, not of those waiting in the queue.
        assert ahead.consumed_state == synchronous.consumed_state
    saved = ahead.consumed_state
    expected = take(synchronous, 2)
    ahead.close()  # rewinds the pipeline to the consumed position
    assert ahead.pipeline.get_state() == saved
    for a, b in zip(expected, take(ahead, 2)):
        np.testing.assert_array_equal(a["image"], b["image"])
    resumed = prefetch.GlobalBatchPrefetcher(digits_pipeline(), (2, 1), global_sharding(), depth=2)
    resumed.restart_from(saved)
    for a, b in zip(expected, take(resumed, 2)):
        np.testing.assert_array_equal(a["label"], b["label"])
    ahead.close()
    resumed.close()


def fail_on_call(monkeypatch, failing_call):
    """Make the pipeline's `failing_call`-th batch raise a DataSourceError; returns the call
    counter."""
    real = ShardedBatchIterator.__next__
    calls = {"n": 0}

    def failing(self):
        calls["n"] += 1
        if calls["n"] == failing_call:
            raise DataSourceError("/data/train/n01440764/broken.JPEG: the disk went away")
        return real(self)

    monkeypatch.setattr(ShardedBatchIterator, "__next__", failing)
    return calls


def test_a_producer_error_reaches_the_consumer_with_its_message(monkeypatch):
    batches = prefetch.GlobalBatchPrefetcher(digits_pipeline(), (1, 1), global_sharding(), depth=2)
    fail_on_call(monkeypatch, 3)
    take(batches, 2)
    with pytest.raises(DataSourceError, match="broken.JPEG: the disk went away"):
        take(batches, 1)
    batches.close()


@pytest.mark.slow
def test_the_trainer_stops_with_the_producers_message(tmp_path, monkeypatch):
    calls = fail_on_call(monkeypatch, 4)
    c = stepping.tiny_config(
        num_steps=10, log={"sv_every": 0, "sample_every": 0, "checkpoint_every": 2}
    )
    assert c.data.prefetch_steps > 0
    with pytest.raises(DataSourceError, match="broken.JPEG: the disk went away"):
        trainer.train(c, str(tmp_path / "run"), progress=False)
    assert calls["n"] == 4
