"""Multi-host training on one machine: N JAX processes with CPU devices and gloo collectives.

The reference for every multi-process result is the single-process run of the same config and seed:
2 processes x 4 devices must train exactly like 1 process x 8 devices (float32 reduction order
aside), checkpoints must move between the two layouts, and bad launches must fail with a message.
Single-process runs share a persistent compilation cache (1 x 8 devices compiles once per session).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import ml_collections
import numpy as np
import pytest

from biggan.data import make_pipeline
from biggan.runtime import distributed
from biggan.train import state as train_state

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import launch_local  # noqa: E402

# configs/digits.py:runlocal with a global batch of 8 (one example per device), one D step per step
# (half the program to compile; nothing multi-host depends on it), no σ summaries. adam_eps=1e-3:
# G's conv biases feed batch norm, so their gradient is exactly 0 and what is computed is rounding
# noise (~1e-8) whose sign depends on the reduction order; Adam with eps=1e-6 turns it into steps of
# up to ~lr, which the BN running means then carry. The larger eps keeps that noise noise-sized (how
# the layouts are compared: see STATE_RTOL).
TRAIN_ARGS = [
    "train.py",
    "--config",
    "configs/digits.py:runlocal",
    "--config.train.batch_size=8",
    "--config.train.adam_eps=0.001",
    "--config.train.num_d_steps=1",
    "--config.log.sv_every=0",
    "--config.log.checkpoint_every=2",
    "--config.log.keep_checkpoints=3",
    "--config.log.sample_every=2",
]
RUN_TIMEOUT_S = 600


# --------------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(tmp_path_factory.mktemp("jax_cache"))
    e = dict(
        os.environ,
        JAX_COMPILATION_CACHE_DIR=cache,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    return e


def _check(proc, what, log_path):
    # bytes: text=True would turn tqdm's \r into lines
    proc.stdout = proc.stdout.decode(errors="replace")
    with open(log_path, "a", newline="") as f:
        f.write(proc.stdout)
    if proc.returncode != 0:
        lines = [
            ln for ln in proc.stdout.splitlines() if "[Gloo]" not in ln and "  File " not in ln
        ]
        raise AssertionError(
            f"{what} failed with status {proc.returncode}:\n" + "\n".join(lines)[-8000:]
        )
    return proc.stdout


def run_single(env, workdir, steps, devices=8):
    """`python train.py` in one process with `devices` CPU devices."""
    cmd = [
        sys.executable,
        *TRAIN_ARGS,
        f"--config.train.num_steps={steps}",
        f"--workdir={workdir}",
        f"--local_device_count={devices}",
    ]
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        env={**launch_local.process_env(devices), **_cache_vars(env)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=RUN_TIMEOUT_S,
    )
    return _check(proc, f"1 process x {devices} devices", f"{workdir}.log")


def run_multi(env, workdir, steps, processes=2, devices=4):
    """The same through scripts/launch_local.py: `processes` processes x `devices` CPU devices."""
    cmd = [
        sys.executable,
        "scripts/launch_local.py",
        "-n",
        str(processes),
        "--devices",
        str(devices),
        "--",
        *TRAIN_ARGS,
        f"--config.train.num_steps={steps}",
        f"--workdir={workdir}",
    ]
    # The persistent cache is shared by the processes, as on a pod (measured: a 2-step 2 x 4 run 64
    # s -> 48 s when an earlier 2 x 4 run filled it).
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=RUN_TIMEOUT_S,
    )
    return _check(proc, f"{processes} processes x {devices} devices", f"{workdir}.log")


def _cache_vars(env):
    return {
        k: v
        for k, v in env.items()
        if k.startswith("JAX_PERSISTENT") or k == "JAX_COMPILATION_CACHE_DIR"
    }


def load_checkpoint(workdir, step):
    """(TrainState as numpy, data state) of `workdir`'s checkpoint `step`, restored in this
    process."""
    from biggan import checkpoints
    from biggan.runtime import sharding

    with open(os.path.join(workdir, "config.json")) as f:
        config = ml_collections.ConfigDict(json.load(f))
    ckpt = checkpoints.Checkpointer(workdir)
    try:
        assert step in ckpt.all_steps(), f"{workdir} has checkpoints {ckpt.all_steps()}, not {step}"
        state, data_state = ckpt.restore(
            step, train_state.abstract_state(config, sharding.make_mesh())
        )
    finally:
        ckpt.close()
    return jax.device_get(state), data_state


def losses(workdir):
    """{step: metrics} from metrics.jsonl (the last line of a step wins: resumed runs append)."""
    out = {}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            if "d_loss" in row:
                out[row["step"]] = row
    return out


# How the layouts are compared. Two layouts of the same run differ only in the order of float32
# sums: 2 x 4 devices assemble each global batch from the processes' strided shards, so the samples
# meet the cross-device sums in another order than on 1 x 8. Reordered float32 sums differ by a few
# ulps of the magnitude of the terms summed, i.e. of the tensor, not of each result entry (an entry
# near 0 is a cancellation of larger terms), hence tolerances relative to each tensor's scale:
# STATE_RTOL of max |leaf| (~170 ulps, a few steps of reordered sums), plus STATE_ATOL for leaves
# that are themselves rounding noise (G's conv biases feed a BN, so their true gradient is 0; see
# adam_eps below). Losses are global means: LOSS_RTOL. One computation is ill-conditioned and is not
# compared elementwise: G's gradient from a fresh start. Its BN backward over a batch of 8 cancels
# heavily, so the reordered sums already make G's first gradient differ by up to 2e-4 of its scale
# (measured on an AMD EPYC: 4,093 of 4,096 entries of the first linear's gradient), which the
# following steps carry into G's parameters, EMA, Adam moments and SN vectors. There, the losses of
# the next step (functions of G after the first update) are the comparison. Runs that resume from
# the same checkpoint are compared leaf by leaf, except G's Adam moments: they are G's gradient
# itself (beta1_g = 0, so m is the last gradient) and its running square, and that gradient stays
# ill-conditioned after the first step. On an Intel Xeon (AVX-512), runs resumed from one checkpoint
# (losses equal to 2e-7) reach G moments up to 2e-3 of a tensor's scale apart in many entries, 1e-3
# in relative L2 norm (6e-3 from a fresh start; on an AMD EPYC they passed the entrywise 2e-5). They
# are compared as whole tensors: relative L2 distance under GRAD_RTOL, 10x the largest measured, far
# below the O(1) difference of a wrong batch, step or restored moment, plus STATE_ATOL per entry (in
# L2) for the moments of G's conv biases, which are rounding noise (see STATE_ATOL). Every other
# leaf, G's parameters and EMA included, is compared entry by entry.
STATE_RTOL, STATE_ATOL, LOSS_RTOL, LOSS_ATOL, GRAD_RTOL = 2e-5, 2e-6, 1e-5, 1e-6, 1e-2
LOSS_KEYS = ("d_loss", "g_loss", "d_loss_real", "d_loss_fake", "ortho_penalty")


def assert_same_state(dir_a, dir_b, step, *, groups=None):
    """Every leaf of the TrainState saved at `step` (of the top-level `groups` only, when given)
    agrees within STATE_ATOL + STATE_RTOL · max |leaf|."""
    state_a, _ = load_checkpoint(dir_a, step)
    state_b, _ = load_checkpoint(dir_b, step)
    leaves_a = jax.tree_util.tree_flatten_with_path(state_a)[0]
    leaves_b = jax.tree_util.tree_flatten_with_path(state_b)[0]
    assert [p for p, _ in leaves_a] == [p for p, _ in leaves_b]
    names = [jax.tree_util.keystr(p) for p, _ in leaves_a]
    assert any("g_state" in n and "['mean']" in n for n in names), "no BN running mean in g_state"
    assert any("g_state" in n and "['var']" in n for n in names), "no BN running var in g_state"
    compared = 0
    for name, (_, a), (_, b) in zip(names, leaves_a, leaves_b):
        if groups is not None and not name.lstrip(".").startswith(groups):
            continue
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if name.startswith(".g_opt") and (".mu[" in name or ".nu[" in name):  # see GRAD_RTOL
            distance = float(np.linalg.norm(a - b))
            assert distance <= GRAD_RTOL * float(np.linalg.norm(b)) + STATE_ATOL * np.sqrt(
                b.size
            ), (
                f"{name} differs between {dir_a} and {dir_b} at step {step}: relative L2 distance "
                f"{distance / max(float(np.linalg.norm(b)), 1e-30):.2e} > {GRAD_RTOL}"
            )
            compared += 1
            continue
        scale = float(np.max(np.abs(b))) if b.size else 0.0
        np.testing.assert_allclose(
            a,
            b,
            rtol=0,
            atol=STATE_ATOL + STATE_RTOL * scale,
            err_msg=f"{name} differs between {dir_a} and {dir_b} at step {step}",
        )
        compared += 1
    assert compared, f"no leaf of {groups} compared"


def assert_same_losses(dir_a, dir_b, steps):
    la, lb = losses(dir_a), losses(dir_b)
    for s in steps:
        for key in LOSS_KEYS:
            np.testing.assert_allclose(
                la[s][key],
                lb[s][key],
                rtol=LOSS_RTOL,
                atol=LOSS_ATOL,
                err_msg=f"{key} at step {s}: {dir_a} vs {dir_b}",
            )


def copy_run(src, dst, keep_step):
    """A copy of workdir `src` as if stopped right after step `keep_step`: only that checkpoint, and
    no metrics of later steps (so the losses compared afterwards are the resumed run's own)."""
    shutil.copytree(src, dst)
    for name in os.listdir(os.path.join(dst, "checkpoints")):
        if name.isdigit() and int(name) != keep_step:
            shutil.rmtree(os.path.join(dst, "checkpoints", name))
    path = os.path.join(dst, "metrics.jsonl")
    with open(path) as f:
        kept = [line for line in f if json.loads(line)["step"] <= keep_step]
    with open(path, "w") as f:
        f.writelines(kept)
    return dst


# --------------------------------------------------------------------------------------------------
# the equivalence runs (module-scoped: each layout compiles once)


@pytest.fixture(scope="module")
def runs(env, tmp_path_factory):
    base = tmp_path_factory.mktemp("multihost")
    times = {}

    def timed(name, fn, *args, **kw):
        t = time.time()
        out = fn(env, *args, **kw)
        times[name] = time.time() - t
        return out

    d = {k: str(base / k) for k in ("single", "multi", "multi_to_single", "single_to_multi")}
    # Reference: 1 process x 8 devices, steps 0 -> 4 (checkpoints at 2 and 4).
    timed("1x8 0->4", run_single, d["single"], 4)
    # 2 processes x 4 devices, 0 -> 2; what it wrote is listed now (the resume below appends).
    out_multi = timed("2x4 0->2", run_multi, d["multi"], 2)
    written = {
        name: sorted(os.listdir(os.path.join(d["multi"], name)))
        for name in ("tensorboard", "samples")
    }
    with open(os.path.join(d["multi"], "metrics.jsonl")) as f:
        written["loss_steps"] = [json.loads(line)["step"] for line in f if "d_loss" in line]
    # Its checkpoint resumed by one process with ONE device (2 -> 4): also shows the cross-process
    # BN statistics are those of the whole global batch (one device holds all of it).
    copy_run(d["multi"], d["multi_to_single"], 2)
    timed("1x1 2->4 (from 2x4)", run_single, d["multi_to_single"], 4, devices=1)
    # The 2-process run resumed by 2 processes (2 -> 4): each process continues its own shard.
    timed("2x4 2->4 (from 2x4)", run_multi, d["multi"], 4)
    # The 1x8 checkpoint of step 2 resumed by 2 processes (2 -> 4).
    copy_run(d["single"], d["single_to_multi"], 2)
    timed("2x4 2->4 (from 1x8)", run_multi, d["single_to_multi"], 4)
    print("multihost run times (s):", {k: round(v, 1) for k, v in times.items()})
    return d, out_multi, written


@pytest.mark.slow
def test_two_processes_train_like_one(runs):
    d, _, _ = runs
    # From the same initial state: the losses of both steps and D's whole state (see STATE_RTOL for
    # G's).
    assert_same_losses(d["multi"], d["single"], (1, 2))
    assert_same_state(d["multi"], d["single"], 2, groups=("d_params", "d_opt", "d_state", "step"))


@pytest.mark.slow
def test_checkpoint_moves_between_layouts(runs):
    d, _, _ = runs
    # The 1 x 8 checkpoint of step 2 continued as 2 processes reaches the 1 x 8 run's step 4.
    assert_same_losses(d["single_to_multi"], d["single"], (3, 4))
    assert_same_state(d["single_to_multi"], d["single"], 4)
    # The 2 x 4 checkpoint of step 2 continued in 1 process on ONE device reaches what 2 processes
    # reach from it (one device holds the whole global batch, so the cross-process BN statistics
    # were global).
    assert_same_losses(d["multi_to_single"], d["multi"], (3, 4))
    assert_same_state(d["multi_to_single"], d["multi"], 4)
    _, data_state = load_checkpoint(d["multi"], 4)
    assert [s["process_index"] for s in data_state["processes"]] == [0, 1]
    assert {s["process_count"] for s in data_state["processes"]} == {2}


@pytest.mark.slow
def test_only_process_zero_writes(runs):
    _, out, written = runs
    assert written["loss_steps"] == [1, 2], (
        f"loss lines for steps {written['loss_steps']}: not process 0 alone"
    )
    assert len(written["tensorboard"]) == 1, written
    assert written["samples"] == ["step_0000002.png"], written
    # Progress bar from process 0 only; every line of output carries its process index.
    lines = [ln for ln in out.split("\n") if ln.strip()]  # not splitlines(): tqdm redraws with \r
    assert all(ln.startswith(("[0] ", "[1] ", "[launcher] ")) for ln in lines), lines[:5]
    assert any(ln.startswith("[1] ") for ln in lines)
    assert "step/s" in out and not any("step/s" in ln for ln in lines if ln.startswith("[1] "))


# --------------------------------------------------------------------------------------------------
# input sharding through the real pipeline


@pytest.mark.parametrize("count", [2, 3])
def test_process_shards_disjoint_and_cover_the_data(count):
    from biggan import config as cfg

    data = cfg.base_config().data
    data.update(source="digits", resolution=8, max_examples=100, prefetch_batches=0)
    batch = 7
    shards = []
    for index in range(count):
        it = make_pipeline(
            data, local_batch_size=batch, seed=3, process_index=index, process_count=count
        )
        images, _ = it.source.arrays()
        order, _ = it.epoch_order(0)
        got = np.concatenate([next(it)["image"] for _ in range(-(-it.shard_size // batch))])[
            : it.shard_size
        ]
        np.testing.assert_array_equal(got, images[order])  # what it delivers is its shard, in order
        shards.append(order)
        it.close()
    indices = np.concatenate(shards)
    # disjoint, and together all 100 examples
    assert len(indices) == len(set(indices.tolist())) == 100
    assert sorted(indices.tolist()) == list(range(100))
    # k steps of `count` processes read the same examples as k steps of one process with the global
    # batch.
    single = make_pipeline(data, local_batch_size=batch * count, seed=3)
    expected = set(single.epoch_order(0)[0][: 3 * batch * count].tolist())
    assert set(np.concatenate([s[: 3 * batch] for s in shards]).tolist()) == expected


def _positions(it, num_batches, images):
    """Global example indices of the next `num_batches` batches (identified by their pixels)."""
    lookup = {images[i].tobytes(): i for i in range(len(images))}
    return [lookup[x.tobytes()] for _ in range(num_batches) for x in next(it)["image"]]


@pytest.mark.parametrize("old,new", [(2, 1), (1, 2), (2, 4), (3, 2)])
def test_data_position_moves_between_layouts(old, new):
    """After k global batches of `old` processes, `new` processes continue with the examples that
    the uninterrupted `new`-process run would read next (the mapping of
    distributed.local_data_state)."""
    from biggan import config as cfg

    data = cfg.base_config().data
    data.update(source="digits", resolution=8, max_examples=240, prefetch_batches=0)
    global_batch, k = 12, 5
    its = [
        make_pipeline(
            data, local_batch_size=global_batch // old, seed=1, process_index=p, process_count=old
        )
        for p in range(old)
    ]
    images = its[0].source.arrays()[0]
    assert len({x.tobytes() for x in images}) == len(images), "digits subset has duplicate images"
    for it in its:
        for _ in range(k):
            next(it)
    saved = {**its[0].get_state(), "processes": [it.get_state() for it in its]}
    saved = json.loads(json.dumps(saved))  # as checkpointed
    resumed, fresh = [], []
    for p in range(new):
        it = make_pipeline(
            data, local_batch_size=global_batch // new, seed=1, process_index=p, process_count=new
        )
        it.set_state(distributed.local_data_state(saved, p, new))
        resumed += _positions(it, 2, images)
        ref = make_pipeline(
            data, local_batch_size=global_batch // new, seed=1, process_index=p, process_count=new
        )
        _positions(ref, k, images)
        fresh += _positions(ref, 2, images)
    assert sorted(resumed) == sorted(fresh)


def test_local_data_state_same_layout_is_each_process_own():
    states = [
        {
            "epoch": 1,
            "offset": o,
            "process_index": p,
            "process_count": 2,
            "seed": 0,
            "num_examples": 9,
        }
        for p, o in ((0, 3), (1, 2))
    ]
    saved = {**states[0], "processes": states}
    assert distributed.local_data_state(saved, 1, 2) == states[1]
    # A checkpoint written before the per-process list existed (single process) still resumes.
    assert distributed.local_data_state(states[0] | {"process_count": 1}, 0, 1)["offset"] == 3


# --------------------------------------------------------------------------------------------------
# the launcher and bad launches


def test_launcher_prefixes_output_and_fails_fast():
    program = [
        "-c",
        "import sys, time; i = sys.argv[3].split('=')[1]; print('hello from', i, flush=True); "
        "time.sleep(0.5) if i == '1' else time.sleep(60); sys.exit(3)",
    ]
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "scripts", "launch_local.py"),
            "-n",
            "2",
            "--",
            *program,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 3, proc.stdout
    assert "[0] hello from 0" in proc.stdout and "[1] hello from 1" in proc.stdout
    assert "process 1 exited with status 3" in proc.stdout


def test_launcher_env_mode_joins_any_entry_point():
    """--pass_via=env: a program without train.py's flags joins through biggan.runtime.distributed.initialize()
    and sees 2 processes x 3 devices; a cross-process collective sums every process's index."""
    # Gloo's C++ threads log to stderr, which the launcher merges with stdout, and a log line can
    # land in the middle of ours: after joining, the child sends stderr to /dev/null so the checked
    # lines stay whole.
    program = [
        "-c",
        "import jax, numpy as np, os; from biggan.runtime import distributed; distributed.initialize(); "
        "os.dup2(os.open(os.devnull, os.O_WRONLY), 2); "
        "from jax.experimental import multihost_utils as mu; "
        "g = mu.process_allgather(np.array([jax.process_index() + 1])); "
        # One write of the whole line: Gloo's C++ threads print to the same pipe, and print()
        # with several arguments writes them separately in an unbuffered child.
        "import sys; sys.stdout.write(f'joined {jax.process_index()} {jax.process_count()} "
        "{jax.local_device_count()} {jax.device_count()} {int(np.sum(g))}\\n'); sys.stdout.flush()",
    ]
    proc = subprocess.run(
        [
            sys.executable,
            "scripts/launch_local.py",
            "-n",
            "2",
            "--devices",
            "3",
            "--pass_via=env",
            "--",
            *program,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    # The line names its process index; Gloo's own log lines (written by its threads, not always to
    # stderr) can start a launcher line before it, so the "[i] " prefix is not checked. One short
    # write is atomic on a pipe, so "joined ..." itself is never split.
    assert "joined 0 2 3 6 3" in proc.stdout and "joined 1 2 3 6 3" in proc.stdout, proc.stdout[
        -3000:
    ]


def test_launcher_rejects_missing_program():
    with pytest.raises(SystemExit):
        launch_local.main(["-n", "2"])


def test_unreachable_coordinator_fails_in_bounded_time_naming_it():
    port = launch_local.free_port()  # nobody listens here
    address = f"localhost:{port}"
    t = time.time()
    proc = subprocess.run(
        [
            sys.executable,
            *TRAIN_ARGS,
            f"--coordinator_address={address}",
            "--num_processes=2",
            "--process_id=1",
            "--local_device_count=4",
            "--initialization_timeout=3",
        ],
        cwd=ROOT,
        env=launch_local.process_env(4),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
    )
    elapsed = time.time() - t
    assert proc.returncode != 0
    assert f"could not reach the JAX coordinator at {address} within 3 s" in proc.stdout, (
        proc.stdout[-3000:]
    )
    assert elapsed < 60, f"took {elapsed:.0f} s to give up with --initialization_timeout=3"


def test_processes_with_different_configs_refuse_to_train(tmp_path):
    port = launch_local.free_port()
    procs = []
    for i, extra in enumerate([[], ["--config.train.lr_g=0.001"]]):
        cmd = [
            sys.executable,
            *TRAIN_ARGS,
            *extra,
            f"--workdir={tmp_path / 'run'}",
            f"--coordinator_address=localhost:{port}",
            "--num_processes=2",
            f"--process_id={i}",
            "--local_device_count=4",
            "--initialization_timeout=60",
        ]
        procs.append(
            subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=launch_local.process_env(4),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    try:
        outs = [p.communicate(timeout=180)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outs):
        assert p.returncode != 0, out[-3000:]
        assert "started with different configs" in out, out[-3000:]
        assert "train.lr_g (0.001 vs 0.0002)" in out, out[-3000:]
    assert not os.path.exists(tmp_path / "run" / "checkpoints")


@pytest.mark.slow
def test_sigterm_to_one_process_saves_the_same_step_on_all(tmp_path):
    """A preemption notice reaches one host: the processes agree on it at the next multiple of
    log.preemption_check_every, all save that step together and exit 0 (no host read per step
    between)."""
    port, every = launch_local.free_port(), 3
    workdir = tmp_path / "run"
    procs, logs = [], []
    for i in range(2):
        cmd = [
            sys.executable,
            *TRAIN_ARGS,
            "--config.train.num_steps=100000",
            "--config.log.checkpoint_every=100000",
            "--config.log.sample_every=0",
            "--config.log.log_every=1",
            f"--config.log.preemption_check_every={every}",
            f"--workdir={workdir}",
            f"--coordinator_address=localhost:{port}",
            "--num_processes=2",
            f"--process_id={i}",
            "--local_device_count=4",
            "--initialization_timeout=60",
        ]
        logs.append(open(tmp_path / f"process{i}.log", "w+"))
        procs.append(
            subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=launch_local.process_env(4),
                stdout=logs[-1],
                stderr=subprocess.STDOUT,
            )
        )
    try:
        metrics_path = workdir / "metrics.jsonl"
        deadline = time.time() + RUN_TIMEOUT_S
        while not (metrics_path.exists() and metrics_path.read_text().count("\n") >= 2):
            assert time.time() < deadline and all(p.poll() is None for p in procs), (
                tmp_path / "process0.log"
            ).read_text()[-3000:]
            time.sleep(0.2)
        procs[1].send_signal(signal.SIGTERM)  # process 1 only
        for p in procs:
            p.wait(timeout=RUN_TIMEOUT_S)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    outs = [(tmp_path / f"process{i}.log").read_text() for i in range(2)]
    assert [p.returncode for p in procs] == [0, 0], [out[-3000:] for out in outs]
    saved = [int(out.split("SIGTERM: saved step ")[1].split()[0]) for out in outs]
    assert saved[0] == saved[1] and saved[0] % every == 0 and saved[0] >= 2, saved
    state, _ = load_checkpoint(str(workdir), saved[0])
    assert int(state.step) == saved[0]
