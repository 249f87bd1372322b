"""Training checkpoints with orbax: the whole TrainState, the input pipeline position and the
config; and the EMA generator restored from them (`load_ema_generator`, what sampling and evaluation
read).

Kept: the last `keep` checkpoints plus the best one by the configured metric. Saves are asynchronous
and atomic (orbax writes a temporary directory and renames it), so a failed or interrupted save
never replaces a good checkpoint. Nothing non-finite is ever saved (the trainer checks first).
"""

from __future__ import annotations

import logging
import os
import threading

import jax
import ml_collections
import orbax.checkpoint as ocp
from flax import nnx
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from biggan import core_config
from biggan.models import factory as models
from biggan.runtime import sharding, storage

log = logging.getLogger(__name__)
# With a best metric set, orbax warns at every save without one; checkpoints between evaluations are
# expected.
logging.getLogger("absl").addFilter(
    lambda record: "did not provide metrics" not in record.getMessage()
)


class CheckpointError(RuntimeError):
    pass


class Checkpointer:
    def __init__(
        self,
        workdir: str,
        *,
        keep: int = 3,
        best_metric: str = "",
        best_mode: str = "min",
        timeout_s: float = 1800,
    ):
        self.directory = os.path.join(storage.resolve(workdir), "checkpoints")  # local or gs://
        storage.refresh(self.directory)  # list what is there now, also what other processes wrote
        policies = [pp.LatestN(keep)]
        if best_metric:
            policies.append(
                pp.BestN(
                    get_metric_fn=lambda metrics: metrics[best_metric],
                    reverse=best_mode == "min",
                    n=1,
                    keep_checkpoints_without_metrics=False,
                )
            )
        # best_fn too: without it orbax keeps the metrics in memory only (not in the checkpoint), so
        # a resumed run's BestN would see no scored checkpoint and best_step() none.
        best = (
            dict(best_fn=lambda metrics: metrics[best_metric], best_mode=best_mode)
            if best_metric
            else {}
        )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=pp.AnyPreservationPolicy(policies),
            enable_async_checkpointing=True,
            create=True,
            **best,
        )
        # Handlers named up front, so that a fresh process can read a checkpoint's metadata (the
        # extras it holds, `_stored_extras`) before restoring anything.
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=options,
            item_handlers={
                "state": ocp.StandardCheckpointHandler(),
                "data": ocp.JsonCheckpointHandler(),
            },
        )
        self.best_metric, self.best_mode = best_metric, best_mode
        # The newest save known to be complete, and the one in flight (asynchronous): an error names
        # the former without asking storage, which may be what failed.
        self._complete, self._in_flight = self.manager.latest_step(), None
        self.timeout_s, self._failed = timeout_s, False

    def latest_step(self):
        return self.manager.latest_step()

    def all_steps(self):
        return list(self.manager.all_steps())

    def best_step(self):
        """The kept step with the best `best_metric` (None without a metric or a scored
        checkpoint)."""
        if not self.best_metric:
            return None
        scored = [
            (metrics[self.best_metric], step)
            for step in self.all_steps()
            if (metrics := self.manager.metrics(step)) and self.best_metric in metrics
        ]
        if not scored:
            return None
        return (min if self.best_mode == "min" else max)(scored)[1]

    def delete_newer_than(self, step: int):
        """Delete every checkpoint after `step` (a rollback: they hold the run being abandoned)."""
        self._finish(self._in_flight)
        for newer in [s for s in self.all_steps() if s > step]:
            self.manager.delete(newer)
        if self._complete is not None and self._complete > step:
            self._complete = step

    def save(
        self, step: int, state, data_state: dict, metrics: dict | None = None, *, wait: bool = False
    ):
        """Start an asynchronous save; errors of the previous save surface here (or with
        wait=True)."""
        metrics = {k: float(v) for k, v in (metrics or {}).items()} if self.best_metric else None
        if self.best_metric and (metrics is None or self.best_metric not in metrics):
            metrics = None
        try:
            self._finish(step)  # the previous save: its errors surface here
            self.manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)
                ),
                metrics=metrics,
                force=True,
            )
            self._in_flight = step
            if wait:
                self._finish(step)
        except CheckpointError:
            raise
        except Exception as e:  # disk full, permissions, a lost bucket...
            self._fail(step, e)

    def _finish(self, step):
        try:
            self._wait_until_finished()
        except Exception as e:
            self._fail(self._in_flight if self._in_flight is not None else step, e)
        if self._in_flight is not None:
            self._complete, self._in_flight = self._in_flight, None

    def _wait_until_finished(self):
        """orbax's wait, bounded by `timeout_s` (its own waits have no deadline)."""
        errors, waiter = (
            [],
            threading.Thread(
                daemon=True, target=lambda: _capture(self.manager.wait_until_finished, errors)
            ),
        )
        waiter.start()
        waiter.join(self.timeout_s)
        if waiter.is_alive():
            raise TimeoutError(
                f"the save did not finish within {self.timeout_s:g} s (log.checkpoint_timeout_s)"
            )
        if errors:
            raise errors[0]

    def _fail(self, step, error):
        self._failed = True
        last = "none" if self._complete is None else f"step {self._complete}"
        raise CheckpointError(
            f"saving the checkpoint of step {step} to {self.directory} failed ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); the last complete checkpoint is {last}, which "
            f"is intact. The run stops here: fix the cause and restart the same command to resume from it."
        ) from error

    def restore(self, step: int, abstract_state):
        """Restore step `step` into the structure/shardings of `abstract_state` (ShapeDtypeStructs).

        The techniques' extras are those the checkpoint holds: a technique a rollback override
        switched on after it was written starts its state when the step runs (biggan/train/state.py
        technique_state), and one it switched off is read and dropped."""
        wanted = getattr(abstract_state, "extras", None)
        if wanted is not None:
            abstract_state = abstract_state.replace(
                extras=self._stored_extras(step, wanted, abstract_state)
            )
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()
            ),
        )
        state = restored["state"]
        if wanted is not None and set(state.extras) - set(wanted):
            state = state.replace(extras={k: v for k, v in state.extras.items() if k in wanted})
        return state, restored["data"]

    def _stored_extras(self, step, wanted: dict, abstract_state) -> dict:
        """The abstract extras of the checkpoint's entries: `wanted`'s where it has them, else from
        the checkpoint's metadata (replicated like the rest of `abstract_state`)."""
        metadata = self.manager.item_metadata(step)["state"]
        stored = (getattr(metadata, "tree", metadata) or {}).get("extras") or {}
        sharding = jax.tree.leaves(abstract_state)[0].sharding
        return {
            key: wanted[key]
            if key in wanted
            else jax.tree.map(
                lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
                stored[key],
                is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"),
            )
            for key in stored
        }

    def wait(self):
        self._finish(self._in_flight)

    def close(self):
        # after a failed save orbax's close would wait on the storage that failed
        if not self._failed:
            self.manager.close()


def _capture(fn, errors: list):
    try:
        fn()
    except Exception as e:  # handed to the waiting thread
        errors.append(e)


def record_config(workdir: str, config: ml_collections.ConfigDict):
    """Write the run's config.json (process 0), what sample.py and biggan.evaluate rebuild the run
    from."""
    if jax.process_index() == 0:
        storage.write_text(os.path.join(workdir, "config.json"), config.to_json(indent=2))


def _norm(v):
    return list(v) if isinstance(v, (tuple, list)) else v


def model_differences(
    old: ml_collections.ConfigDict, new: ml_collections.ConfigDict, ignore=()
) -> dict:
    """{key: (old value, new value)} of the model keys that differ, sorted (`old` read with
    read with a read_config, so it has every key of its schema)."""
    old, new = old.to_dict(), new.to_dict()
    return {
        k: (old.get(k), new.get(k))
        for k in sorted(set(old) | set(new))
        if k not in ignore and _norm(old.get(k)) != _norm(new.get(k))
    }


# TrainState.extras entry of a checkpoint converted from BigGAN-PyTorch
# (biggan/convert/biggan_pytorch_run.py): its G_ema's own SN vectors and BN statistics, with which
# that step samples as the author's code does. Training reads and drops it (no technique has this
# name), so later checkpoints sample with G's state.
EMA_G_STATE = "ema_g_state"


def load_ema_generator(workdir, step=None):
    """(config, EMA generator with G's SN/BN state, step) from a training workdir's checkpoint.

    Only the EMA weights and G's state are read (orbax's partial restore), into G's structure built
    from `config.model` alone: sampling and evaluation need neither D, the optimisers nor the
    techniques. A checkpoint that holds the EMA generator's own state (EMA_G_STATE) samples with
    it."""
    config = core_config.read_config(workdir)
    directory = os.path.join(storage.resolve(workdir), "checkpoints")
    storage.refresh(directory)
    # Read-only, with the handler of partial restores (the Checkpointer's reads and writes whole
    # states).
    manager = ocp.CheckpointManager(
        directory,
        options=ocp.CheckpointManagerOptions(create=False, read_only=True),
        item_handlers={"state": ocp.PyTreeCheckpointHandler()},
    )
    step = manager.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"{workdir}/checkpoints holds no checkpoint yet")
    graphdef, params, g_state = nnx.split(models.abstract_generator(config.model), nnx.Param, ...)
    replicated = sharding.replicated(sharding.make_mesh())
    wanted = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated),
        {"ema_params": params, "g_state": g_state},
    )
    metadata = manager.item_metadata(step)["state"]
    stored_extras = (getattr(metadata, "tree", metadata) or {}).get("extras") or {}
    own_state = EMA_G_STATE in stored_extras
    if own_state:
        wanted = {"ema_params": wanted["ema_params"], "extras": {EMA_G_STATE: wanted["g_state"]}}
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(
                wanted,
                restore_args=ocp.checkpoint_utils.construct_restore_args(wanted),
                partial_restore=True,
            )
        ),
    )["state"]
    manager.close()
    g_state = restored["extras"][EMA_G_STATE] if own_state else restored["g_state"]
    return config, nnx.merge(graphdef, restored["ema_params"], g_state), step
