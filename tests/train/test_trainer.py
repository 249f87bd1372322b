"""The training loop: resume bit for bit (also after SIGTERM), non-finite guard, bad workdirs,
failed saves."""

import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from runs import TINY, assert_states_identical, run_config, saved_state

from biggan import checkpoints
from biggan.train import loop as trainer
from biggan.train import step as ts


@pytest.mark.slow
def test_resume_reaches_the_same_parameters_bit_for_bit(tmp_path):
    s = 2
    trainer.train(run_config(2 * s), str(tmp_path / "straight"), progress=False)
    trainer.train(run_config(s), str(tmp_path / "resumed"), progress=False)
    assert saved_state(str(tmp_path / "resumed"))[0] == s
    trainer.train(run_config(2 * s), str(tmp_path / "resumed"), progress=False)
    step_a, state_a, data_a = saved_state(str(tmp_path / "straight"))
    step_b, state_b, data_b = saved_state(str(tmp_path / "resumed"))
    assert step_a == step_b == 2 * s
    assert data_a == data_b
    assert_states_identical(state_a, state_b)


@pytest.mark.slow
def test_sigterm_saves_and_the_resumed_run_matches_an_uninterrupted_one(tmp_path):
    workdir = str(tmp_path / "preempted")
    proc = subprocess.Popen(
        [
            sys.executable,
            "train.py",
            "--config",
            "configs/digits.py:runlocal",
            "--workdir",
            workdir,
            "--config.train.num_steps=100000",
            "--config.log.log_every=1",
            "--config.log.checkpoint_every=100000",
            *TINY,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    metrics = os.path.join(workdir, "metrics.jsonl")
    deadline = time.time() + 300
    while time.time() < deadline and not (
        os.path.exists(metrics) and open(metrics).read().count("\n") >= 2
    ):
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "SIGTERM: saved step" in out
    stopped = saved_state(workdir)[0]
    assert 2 <= stopped < 100000
    trainer.train(run_config(stopped + 2), workdir, progress=False)
    trainer.train(run_config(stopped + 2), str(tmp_path / "straight"), progress=False)
    assert_states_identical(saved_state(workdir)[1], saved_state(str(tmp_path / "straight"))[1])


@pytest.mark.slow
def test_non_finite_guard_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    workdir = str(tmp_path / "nan")
    trainer.train(run_config(2, checkpoint_every=1), workdir, progress=False)
    real = ts.make_train_step

    def poisoned(config, mdl, mesh=None, unroll=None):
        step = real(config, mdl, mesh, unroll)

        def poisoned_step(state, batch, rng):
            state, metrics = step(state, batch, rng)
            bad = jax.tree.map(lambda p: p * jax.numpy.nan, state.g_params)
            metrics = dict(metrics, all_finite=jax.numpy.array(False))
            return state.replace(g_params=bad), metrics

        return poisoned_step

    monkeypatch.setattr(ts, "make_train_step", poisoned)
    with pytest.raises(
        trainer.NonFiniteError,
        match=r"non-finite loss or parameter at step 3.*"
        r"last good checkpoint is step 2",
    ):
        trainer.train(run_config(4, checkpoint_every=1), workdir, progress=False)
    step, state, _ = saved_state(workdir)
    assert step == 2
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(state.g_params))


# The conversions of a jax.Array that copy its value to the host (np.asarray goes through
# __array__).
HOST_READS = (
    "__bool__",
    "__float__",
    "__int__",
    "__index__",
    "__complex__",
    "__array__",
    "item",
    "tolist",
    "block_until_ready",
)


def count_host_reads(monkeypatch) -> collections.Counter:
    counts = collections.Counter()
    array_class = type(jax.numpy.zeros(()))  # the concrete jax.Array

    def counting(name, real):
        def wrapper(self, *args, **kwargs):
            counts[name] += 1
            return real(self, *args, **kwargs)

        return wrapper

    for name in HOST_READS:
        monkeypatch.setattr(array_class, name, counting(name, getattr(array_class, name)))
    return counts


@pytest.mark.slow
def test_host_reads_do_not_grow_with_the_number_of_steps(tmp_path, monkeypatch):
    """The loop never waits on the host in steady state: with logging, checkpoint, samples and
    evaluation only at the last step, 10 and 40 steps read device values equally often."""
    counts = count_host_reads(monkeypatch)
    reads = {}
    for num_steps in (2, 10, 40):
        workdir = tmp_path / f"steps{num_steps}"
        # the digits classifier and reference moments the first run cached: equal work
        if num_steps > 2:
            shutil.copytree(tmp_path / "steps2" / "eval", workdir / "eval")
        c = run_config(
            num_steps,
            log_every=num_steps,
            checkpoint_every=num_steps,
            sample_every=num_steps,
            eval_every=num_steps,
        )
        c.eval.num_samples = 16
        counts.clear()
        trainer.train(c, str(workdir), progress=False)
        reads[num_steps] = dict(counts)
        assert os.path.exists(workdir / "samples" / f"step_{num_steps:07d}.png")
    assert sum(reads[10].values()) > 0, (
        "the counting seam saw no read at all: it no longer wraps jax.Array"
    )
    assert reads[40] == reads[10], reads


def test_workdir_of_another_architecture_is_refused_and_untouched(tmp_path):
    workdir = str(tmp_path / "w")
    c = run_config(1)
    trainer.check_workdir_config(workdir, c)
    before = open(os.path.join(workdir, "config.json")).read()
    other = run_config(1)
    other.model.update(arch="biggan_deep", ch_g=8)
    with pytest.raises(
        ValueError,
        match=r"different model: biggan 32² vs the requested biggan_deep 32².*"
        r"arch: 'biggan' → 'biggan_deep'.*Nothing was overwritten",
    ):
        trainer.train(other, workdir, progress=False)
    assert open(os.path.join(workdir, "config.json")).read() == before


def test_unknown_config_key_on_the_command_line_names_the_closest_key():
    out = subprocess.run(
        [sys.executable, "train.py", "--config.train.lr_gg=1"], capture_output=True, text=True
    )
    assert out.returncode != 0
    assert "unknown config key --config.train.lr_gg; did you mean --config.train.lr_g" in out.stderr


@pytest.mark.slow
def test_failed_save_keeps_the_previous_checkpoint_and_stops_with_a_message(tmp_path, monkeypatch):
    workdir = str(tmp_path / "full")
    trainer.train(run_config(1, checkpoint_every=1), workdir, progress=False)
    real_save = checkpoints.ocp.CheckpointManager.save

    def disk_full(self, step, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoints.ocp.CheckpointManager, "save", disk_full)
    with pytest.raises(
        checkpoints.CheckpointError,
        match=r"saving the checkpoint of step 2 .* failed "
        r"\(OSError.*No space left.*last complete checkpoint is step 1",
    ):
        trainer.train(run_config(3, checkpoint_every=1), workdir, progress=False)
    monkeypatch.setattr(checkpoints.ocp.CheckpointManager, "save", real_save)
    step, state, _ = saved_state(workdir)
    assert step == 1 and all(
        np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(state.g_params)
    )


def test_workdir_written_before_a_model_key_existed_still_resumes(tmp_path):
    workdir = str(tmp_path / "old")
    c = run_config(1)
    trainer.check_workdir_config(workdir, c)
    path = os.path.join(workdir, "config.json")
    old = json.load(open(path))
    del old["model"]["d_minibatch_kernels"]  # as written before minibatch discrimination existed
    json.dump(old, open(path, "w"))
    trainer.check_workdir_config(workdir, c)  # the missing key had its default: same model
    c.model.d_minibatch_kernels = 4  # but a real change is still refused
    with pytest.raises(ValueError, match=r"d_minibatch_kernels: 0 → 4"):
        trainer.check_workdir_config(workdir, c)


def test_best_checkpoint_survives_reopening(tmp_path):
    """The best-by-metric checkpoint is kept beside the latest N, also by the Checkpointer of a
    resumed run (its metrics are written with the checkpoint, not only held in memory)."""
    state, data = {"w": jnp.ones(2)}, {"position": 0}
    ckpt = checkpoints.Checkpointer(str(tmp_path), keep=1, best_metric="fid")
    for step, fid in [(1, 5.0), (2, 9.0), (3, 7.0)]:
        ckpt.save(step, state, data, {"fid": fid}, wait=True)
    assert ckpt.all_steps() == [1, 3] and ckpt.best_step() == 1
    ckpt.close()
    ckpt = checkpoints.Checkpointer(str(tmp_path), keep=1, best_metric="fid")
    assert ckpt.best_step() == 1
    ckpt.save(4, state, data, {"fid": 8.0}, wait=True)
    ckpt.save(5, state, data, None, wait=True)  # a checkpoint without an evaluation
    assert ckpt.all_steps() == [1, 5] and ckpt.best_step() == 1
    ckpt.close()
    accuracy = checkpoints.Checkpointer(
        str(tmp_path / "acc"), keep=1, best_metric="classifier_accuracy", best_mode="max"
    )
    for step, value in [(1, 0.5), (2, 0.9), (3, 0.7)]:
        accuracy.save(step, state, data, {"classifier_accuracy": value}, wait=True)
    assert accuracy.all_steps() == [2, 3] and accuracy.best_step() == 2
    accuracy.close()
