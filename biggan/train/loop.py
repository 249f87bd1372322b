"""The training loop: data-parallel, checkpointed, resumable, monitored (train.py calls `train`).

Flat on purpose (big_vision style): build → restore → loop {step, guard, log, σ, samples, eval,
save}. Only process 0 writes logs, metrics and sample grids; every process takes part in
checkpoints.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import tempfile
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from biggan import checkpoints, core_config
from biggan import config as cfg
from biggan.data import make_pipeline
from biggan.evaluation import evaluator as evaluation
from biggan.gan import regularisers
from biggan.runtime import distributed, sharding, storage
from biggan.sampling import export, images
from biggan.sampling import sampler as sampling
from biggan.techniques import registry
from biggan.techniques.base import micro_batch_size
from biggan.train import collapse, event_file, finetune, prefetch
from biggan.train import state as train_state
from biggan.train import step as ts

log = logging.getLogger("biggan.train")


class NonFiniteError(RuntimeError):
    pass


class MetricWriter:
    """metrics.jsonl + TensorBoard events, process 0 only.

    A local workdir's metrics.jsonl is appended to. Object storage has no append (an append through
    gcsfs overwrites), so for a gs:// workdir both files live in a local staging directory,
    metrics.jsonl starting from the workdir's existing lines (a resumed run keeps its history), and
    are uploaded whole after each write. A failed upload is logged and retried at the next write:
    nothing logged is lost.
    """

    def __init__(self, workdir):
        self.enabled = jax.process_index() == 0
        if not self.enabled:
            return
        self.workdir, self.remote = workdir, storage.is_remote(workdir)
        self.local = tempfile.mkdtemp(prefix="biggan-metrics-") if self.remote else workdir
        jsonl = os.path.join(self.local, "metrics.jsonl")
        if self.remote and storage.exists(os.path.join(workdir, "metrics.jsonl")):
            storage.copy(os.path.join(workdir, "metrics.jsonl"), jsonl)
        self.jsonl = open(jsonl, "a")
        self.tb = event_file.ScalarEventWriter(os.path.join(self.local, "tensorboard"))

    def write(self, step, metrics):
        if not self.enabled:
            return
        metrics = {k: float(v) for k, v in metrics.items()}
        self.jsonl.write(json.dumps({"step": int(step), **metrics}) + "\n")
        self.jsonl.flush()
        for k, v in metrics.items():
            self.tb.add_scalar(k, v, int(step))
        self.tb.flush()  # TensorBoard shows each logged step as it is written
        if self.remote:
            self._upload()

    def _upload(self):
        names = ["metrics.jsonl"] + [
            os.path.join("tensorboard", f)
            for f in sorted(os.listdir(os.path.join(self.local, "tensorboard")))
        ]
        try:
            for name in names:
                storage.copy(os.path.join(self.local, name), os.path.join(self.workdir, name))
        except Exception as e:  # a storage outage must not stop training; the next write retries
            log.warning(
                "could not upload metrics to %s (%s: %s); they are kept in %s and uploaded at the next "
                "write",
                self.workdir,
                type(e).__name__,
                e,
                self.local,
            )
            return False
        return True

    def close(self):
        if not self.enabled:
            return
        self.jsonl.close()
        self.tb.close()
        if self.remote and self._upload():
            shutil.rmtree(self.local, ignore_errors=True)


def _fixed_grid_inputs(config, seed):
    """Fixed z and y for sample grids: one row per class (up to 10 classes), 8 samples per row; an
    unconditional model (num_classes 0): 4 rows of samples."""
    m = config.model
    if m.num_classes:
        rows = min(m.num_classes, 10)
        classes = np.repeat(np.arange(rows) * (m.num_classes // rows), 8).astype(np.int32)
    else:
        classes = np.zeros(4 * 8, np.int32)
    # the run's latent (appendix E)
    z = np.asarray(
        sampling.sample_latents(
            jax.random.key(seed + 777), len(classes), m.dim_z, latent=sampling.latent_of(config)
        )
    )
    return z, classes


def _make_grid_fn(mdl):
    @jax.jit
    def grid_fn(ema_params, g_state, z, y):
        # Training-mode BN over the grid batch (fixed z, y): cheap and independent of the running
        # stats of the non-averaged G; the evaluation path uses standing statistics instead (paper
        # appendix C.1).
        return nnx.merge(mdl.g_graphdef, ema_params, g_state, copy=True)(z, y, train=True)

    return grid_fn


def _make_sv_fn():
    @jax.jit
    def sv_fn(g_params, d_params):
        out = {}
        for name, params in (("G", g_params), ("D", d_params)):
            for path, svs in regularisers.singular_value_summary(
                nnx.to_pure_dict(params), k=3
            ).items():
                for i in range(3):
                    out[f"sv/{name}/{path}/sigma{i}"] = svs[i]
        return out

    return sv_fn


def check_workdir_config(workdir: str, config: ml_collections.ConfigDict):
    """Refuse to resume a workdir written by a different architecture; record the config
    otherwise."""
    if storage.exists(os.path.join(workdir, "config.json")):
        old = cfg.read_config(workdir)
        diff = checkpoints.model_differences(old.model, config.model)
        if diff:
            raise ValueError(
                f"{workdir} holds a checkpoint of a different model: "
                f"{old.model.arch} {old.model.resolution}² vs the requested {config.model.arch} "
                f"{config.model.resolution}²; differing model keys (workdir → requested): "
                + ", ".join(f"{k}: {a!r} → {b!r}" for k, (a, b) in diff.items())
                + ". Nothing was overwritten; use another --workdir or the matching config."
            )
    checkpoints.record_config(workdir, config)


def train(config: ml_collections.ConfigDict, workdir: str, *, progress: bool = True) -> dict:
    """Train (or resume) `config` in `workdir`. Returns the last logged metrics."""
    t, lg = config.train, config.log
    workdir = storage.resolve(workdir)  # local (made absolute) or gs://
    storage.check_bucket(workdir)
    # a resumed run keeps its rollback changes
    num_rollbacks = collapse.reapply_rollbacks(config, workdir)
    mesh = sharding.make_mesh()
    micro = micro_batch_size(t)
    sharding.check_batch_divides(micro, mesh, "train.batch_size / train.num_accumulations")
    check_workdir_config(workdir, config)
    ckpt = checkpoints.Checkpointer(
        workdir,
        keep=lg.keep_checkpoints,
        best_metric=lg.best_metric,
        timeout_s=lg.checkpoint_timeout_s,
        best_mode="max" if lg.best_metric in ("is", "classifier_accuracy") else "min",
    )

    pipeline = make_pipeline(
        config.data,
        local_batch_size=micro // jax.process_count(),
        seed=config.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        run_dir=workdir,
    )
    note = pipeline.source.note
    log.info(
        "data: %s, %d images, %d classes%s",
        pipeline.source.description,
        pipeline.num_examples,
        pipeline.num_classes,
        f" ({note})" if note else "",
    )
    if not config.model.num_classes:
        log.info("model.num_classes=0: an unconditional BigGAN, the data's labels are not used")
    elif pipeline.num_classes != config.model.num_classes:
        raise ValueError(
            f"the data has {pipeline.num_classes} classes but model.num_classes="
            f"{config.model.num_classes}; set --config.model.num_classes={pipeline.num_classes}"
        )
    if config.data.resolution != config.model.resolution:
        raise ValueError(
            f"data.resolution={config.data.resolution} differs from model.resolution="
            f"{config.model.resolution}; they must be equal"
        )

    start = ckpt.latest_step()
    if start is None:
        if t.init_from:  # fine-tuning: trained weights, fresh optimisers (biggan/train/finetune.py)
            mdl, _ = jax.eval_shape(
                lambda: train_state.init_state(config, jax.random.key(config.seed))
            )
            state = finetune.initial_state(config, jax.random.key(config.seed))
        else:
            mdl, state = train_state.init_state(config, jax.random.key(config.seed))
        state = sharding.replicate(state, mesh)
        start = 0
    else:
        mdl, abstract = train_state.abstract_models_and_state(config, mesh)
        state, data_state = ckpt.restore(start, abstract)
        # a rollback's new technique
        state = sharding.replicate(
            train_state.with_technique_state(registry.enabled(config), state), mesh
        )
        # Every process's position is saved; another process layout is mapped
        # (biggan/runtime/distributed.py).
        if data_state:
            pipeline.set_state(
                distributed.local_data_state(data_state, jax.process_index(), jax.process_count())
            )
        else:  # a run converted from another codebase (biggan/convert/biggan_pytorch_run.py)
            log.info("the checkpoint records no input position: the data stream starts afresh")
        log.info("resumed from %s at step %d", ckpt.directory, start)

    step_fn = _jit_step(config, mdl, mesh)
    batches = prefetch.GlobalBatchPrefetcher(
        pipeline,
        (t.num_d_steps, t.num_accumulations),
        NamedSharding(mesh, P(None, None, sharding.DATA_AXIS)),
        depth=config.data.prefetch_steps,
    )
    first_nonfinite = jax.device_put(np.int32(-1), sharding.replicated(mesh))
    writer = MetricWriter(workdir)
    grid_z, grid_y = _fixed_grid_inputs(config, config.seed)
    grid_fn, sv_fn = _make_grid_fn(mdl), _make_sv_fn()
    evaluator = evaluation.make_training_evaluator(config, workdir) if lg.eval_every else None
    monitor = collapse.CollapseMonitor.from_config(lg) if lg.collapse_window else None
    sigma0_fn = collapse.make_sigma0_max_fn(regularisers.ortho_filter) if monitor else None

    def check_finite(step, host_metrics=None):
        """Raise if any step so far had a non-finite loss or parameter (a host read: log/save/eval
        steps)."""
        bad, host_metrics = jax.device_get((first_nonfinite, host_metrics))
        if int(bad) >= 0:
            shown = {k: float(v) for k, v in (host_metrics or {}).items() if k != "all_finite"}
            raise NonFiniteError(
                f"non-finite loss or parameter at step {int(bad)} (metrics at step {step}: {shown}); "
                f"nothing was saved. The last good checkpoint is step {ckpt.latest_step()} in {ckpt.directory}: "
                f"resume from it with a changed setting (for example a lower --config.train.lr_g), see "
                f"BUILD_NOTES 'collapse'"
            )
        return host_metrics

    stop = {"signal": None}
    previous_handler = signal.signal(
        signal.SIGTERM, lambda signum, frame: stop.update(signal=signum)
    )
    bar = None
    if progress and jax.process_index() == 0:
        bar = tqdm(total=t.num_steps, initial=start, unit="step", dynamic_ncols=True)
    base_key = jax.random.key(config.seed)
    last = {}
    images_per_step = t.num_d_steps * t.batch_size
    tic, steps_since = time.time(), 0
    step = start
    stopping = False
    compiled_step, compile_seconds = None, None
    try:
        while step < t.num_steps:
            # No device->host read on a plain step: the batch comes from the prefetch thread and the
            # non-finite guard stays on the device (`first_nonfinite`) until a log/save/eval step
            # reads it.
            args = (state, first_nonfinite, next(batches), jax.random.fold_in(base_key, step))
            if compiled_step is None:  # compiled ahead of the first call, to report its time
                tic_compile = time.perf_counter()
                compiled_step = step_fn.lower(*args).compile()
                compile_seconds = time.perf_counter() - tic_compile
                log.info("train step compiled in %.1f s", compile_seconds)
                # All processes start the step together (its collectives' set-up tolerates little
                # skew).
                distributed.wait_for_all_processes(
                    f"biggan.train.loop.step_compiled:{step}:{num_rollbacks}"
                )
            state, first_nonfinite, metrics = compiled_step(*args)
            step += 1
            steps_since += 1
            if bar is not None:
                bar.update(1)
            if jax.process_count() == 1:
                stopping = bool(stop["signal"])
            elif step % lg.preemption_check_every == 0 or step % lg.checkpoint_every == 0:
                # A signal reaches the hosts at different steps; they agree every few steps (a
                # collective at the same step on all), so all save the same step together.
                stopping = distributed.any_process(bool(stop["signal"]))
            evaluate_now = evaluator is not None and (
                step % lg.eval_every == 0 or step == t.num_steps
            )
            # With log.best_metric, every evaluated step is saved too, so the best-by-metric policy
            # sees every evaluation (the latest log.keep_checkpoints plus the best one are kept).
            save_now = (
                step % lg.checkpoint_every == 0
                or step == t.num_steps
                or stopping
                or (evaluate_now and bool(lg.best_metric))
            )
            if step % lg.log_every == 0 or step == t.num_steps:
                host_metrics = check_finite(step, metrics)
                dt = time.time() - tic
                last = {k: float(v) for k, v in host_metrics.items() if k != "all_finite"}
                last.update(
                    lr_g=t.lr_g,
                    lr_d=t.lr_d,
                    images_per_sec=images_per_step * steps_since / max(dt, 1e-9),
                )
                writer.write(step, last)
                if bar is not None:
                    bar.set_postfix(
                        d=f"{last['d_loss']:.3f}",
                        g=f"{last['g_loss']:.3f}",
                        img_s=f"{last['images_per_sec']:.1f}",
                    )
                tic, steps_since = time.time(), 0
                event = monitor and monitor.update(
                    step, float(sigma0_fn(state.g_params)), last["d_loss"], last["g_loss"]
                )
                if event:
                    writer.write(step, {"collapse_flagged": 1.0})
                    if t.rollback_steps:
                        num_rollbacks += 1
                        state, step = _rollback(
                            config, workdir, ckpt, mesh, batches, event, num_rollbacks
                        )
                        step_fn, compiled_step = _jit_step(config, mdl, mesh), None
                        monitor.reset()
                        if bar is not None:
                            bar.n = step
                            bar.refresh()
                        continue
                    log.warning(
                        "collapse flagged at step %d: %s (train.rollback_steps=0: logged only)",
                        event.step,
                        event.reason,
                    )
            if lg.sv_every and step % lg.sv_every == 0:
                writer.write(step, sv_fn(state.g_params, state.d_params))
            if lg.sample_every and (step % lg.sample_every == 0 or step == t.num_steps):
                grid = grid_fn(state.ema_params, state.g_state, grid_z, grid_y)
                if jax.process_index() == 0:
                    images.save_grid(
                        np.asarray(grid),
                        os.path.join(workdir, "samples", f"step_{step:07d}.png"),
                        ncol=8,
                        scale=max(1, 64 // config.model.resolution),
                    )
            eval_metrics = None
            if evaluate_now:
                check_finite(step)
                eval_metrics = evaluator(
                    nnx.merge(mdl.g_graphdef, state.ema_params, state.g_state), step
                )
                writer.write(step, eval_metrics)
                last.update(eval_metrics)
            if save_now:
                check_finite(step)  # nothing non-finite is ever saved
                ckpt.save(
                    step,
                    state,
                    distributed.gather_data_state(batches.consumed_state),
                    eval_metrics,
                    wait=stopping,
                )
            if stopping:
                stop["signal"] = stop["signal"] or signal.SIGTERM
                log.warning(
                    "SIGTERM: saved step %d to %s; exiting (restart the same command to resume)",
                    step,
                    ckpt.directory,
                )
                break
        ckpt.wait()
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        if bar is not None:
            bar.close()
        writer.close()
        batches.close()
        pipeline.close()
        ckpt.close()
    last["step"] = step
    last["preempted"] = bool(stopping)
    last["compile_seconds"] = compile_seconds
    return last


def _jit_step(config, mdl, mesh):
    """The jitted train step plus the on-device non-finite guard: `first_nonfinite` keeps the first
    step whose loss or parameters were non-finite (-1: none), so the host need not read every step's
    flag."""
    step_fn = ts.make_train_step(config, mdl, mesh)

    def guarded_step(state, first_nonfinite, batch, rng):
        state, metrics = step_fn(state, batch, rng)
        newly_bad = jnp.logical_and(first_nonfinite < 0, jnp.logical_not(metrics["all_finite"]))
        first_nonfinite = jnp.where(newly_bad, state.step, first_nonfinite).astype(
            first_nonfinite.dtype
        )
        return state, first_nonfinite, metrics

    return jax.jit(guarded_step, donate_argnums=0)


def _rollback(config, workdir, ckpt, mesh, batches, event, num_rollbacks):
    """Return to the checkpoint ≥ train.rollback_steps before a flagged collapse and apply
    train.rollback_overrides to `config` in place (biggan/train/collapse.py). Newer checkpoints are
    deleted: they hold the collapsing run, and the retried run saves the same step numbers again.
    The best checkpoint by log.best_metric, if among them, is kept as an exported EMA generator in
    WORKDIR/best_before_rollback/step_N (sample.py and biggan.evaluate read it with --checkpoint).
    The overrides are written to config.json, what sample.py and biggan.evaluate rebuild the run
    from."""
    t = config.train
    if num_rollbacks > t.rollback_max:
        raise collapse.CollapseError(
            f"collapse flagged at step {event.step} ({event.reason}) after "
            f"{t.rollback_max} rollbacks (train.rollback_max); giving up"
        )
    ckpt.wait()
    target = collapse.pick_rollback_step(ckpt.all_steps(), event.step, t.rollback_steps)
    best = ckpt.best_step()
    if best is not None and best > target:
        mdl, abstract = train_state.abstract_models_and_state(config, mesh)
        best_state, _ = ckpt.restore(best, abstract)
        directory = os.path.join(workdir, "best_before_rollback", f"step_{best:07d}")
        if jax.process_index() == 0 and not export.is_exported_generator(directory):
            export.save_generator(
                directory,
                config,
                nnx.merge(mdl.g_graphdef, best_state.ema_params, best_state.g_state),
            )
        log.warning(
            "the best checkpoint by %s (step %d) is newer than the rollback target: its EMA generator "
            "is kept in %s",
            config.log.best_metric,
            best,
            directory,
        )
    ckpt.delete_newer_than(target)
    state, data_state = ckpt.restore(target, train_state.abstract_state(config, mesh))
    batches.restart_from(
        distributed.local_data_state(data_state, jax.process_index(), jax.process_count())
    )
    overrides = core_config.parse_kwargs(t.rollback_overrides, "train.rollback_overrides")
    collapse.apply_overrides(config, overrides)
    # a technique switched on starts
    state = sharding.replicate(
        train_state.with_technique_state(registry.enabled(config), state), mesh
    )
    checkpoints.record_config(workdir, config)
    if jax.process_index() == 0:
        collapse.record_rollback(workdir, event.step, target, event.reason, overrides)
    log.warning(
        "collapse flagged at step %d (%s): rolled back to step %d with %s",
        event.step,
        event.reason,
        target,
        overrides or "no config change",
    )
    return state, target
