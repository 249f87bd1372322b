"""Multi-process evaluation: `python -m biggan.evaluate` run unchanged as N processes.

Reference: the 1-process run of the same command and seed. Chunk k of `batch_size` samples is
computed by process k mod P and every process feeds the gathered chunks in chunk order, so the
numbers must be the same bit for bit; only process 0 may write.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading

import jax
import numpy as np
import pytest

from biggan.evaluation import reference
from biggan.runtime import distributed
from biggan.train import state as train_state

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import launch_local  # noqa: E402

# --------------------------------------------------------------------------------------------------
# chunk dealing, without processes


@pytest.mark.parametrize(
    "num_items,batch_size,processes",
    [(60, 16, 2), (60, 16, 3), (64, 16, 4), (5, 16, 3), (100, 7, 5), (0, 4, 2), (33, 1, 1)],
)
def test_deal_chunks_disjoint_covering_in_order(num_items, batch_size, processes):
    rounds = distributed.deal_chunks(num_items, batch_size, processes)
    assert all(len(row) == processes for row in rounds)
    # Rounds in order, processes in order: the chunks of one process, in item order, none missing.
    flat = [chunk for row in rounds for chunk in row if chunk is not None]
    assert flat == [(s, min(batch_size, num_items - s)) for s in range(0, num_items, batch_size)]
    items = [i for start, num in flat for i in range(start, start + num)]
    assert items == list(range(num_items))  # disjoint and covering
    for r, row in enumerate(rounds):
        for p, chunk in enumerate(row):
            if chunk is not None:  # chunk k = r*P + p goes to process k mod P
                assert chunk[0] == (r * processes + p) * batch_size
            else:  # only the last round runs short, and only at its end
                assert r == len(rounds) - 1 and all(c is None for c in row[p:])


def test_deal_chunks_rejects_bad_arguments():
    for args in ((10, 0, 2), (10, 4, 0), (-1, 4, 2)):
        with pytest.raises(ValueError, match="deal_chunks"):
            distributed.deal_chunks(*args)


class _ThreadJob:
    """P 'processes' as threads with an all-gather of dicts (the role of
    distributed.allgather_arrays)."""

    def __init__(self, processes):
        self.processes = processes
        self.slots = [None] * processes
        self.barrier = threading.Barrier(processes, timeout=30)

    def allgather_for(self, p):
        def allgather(local):
            self.slots[p] = local
            self.barrier.wait()
            gathered = list(self.slots)
            self.barrier.wait()  # nobody overwrites a slot before everyone has read it
            return gathered

        return allgather

    def run(self, fn):
        results, errors = [None] * self.processes, [None] * self.processes

        def target(p):
            try:
                results[p] = fn(p, self.allgather_for(p))
            except Exception as e:  # noqa: BLE001 - examined by the test
                errors[p] = e

        threads = [threading.Thread(target=target, args=(p,)) for p in range(self.processes)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        return results, errors


@pytest.mark.parametrize("processes", [2, 3, 5])
def test_chunk_results_in_order_on_every_process(processes):
    num_items, batch_size = 50, 8  # 7 chunks: the last round runs short for P = 2, 3, 5
    computed = []

    def run(p, allgather):
        def compute(start, num):
            computed.append((p, start))
            return {"x": np.arange(start, start + num, dtype=np.float64) / 3}

        return [
            c["x"]
            for c in distributed.chunk_results_in_order(
                compute,
                num_items,
                batch_size,
                process_index=p,
                process_count=processes,
                allgather=allgather,
            )
        ]

    results, errors = _ThreadJob(processes).run(run)
    assert errors == [None] * processes
    single = [
        c["x"]
        for c in distributed.chunk_results_in_order(
            lambda s, n: {"x": np.arange(s, s + n, dtype=np.float64) / 3},
            num_items,
            batch_size,
            process_count=1,
        )
    ]
    for got in results:
        assert len(got) == len(single) and all(np.array_equal(a, b) for a, b in zip(got, single))
    # Each chunk computed once, by process (chunk index) mod P.
    assert sorted(computed, key=lambda c: c[1]) == [
        ((s // batch_size) % processes, s) for s in range(0, num_items, batch_size)
    ]


def test_chunk_failure_is_raised_on_every_process():
    def run(p, allgather):
        def compute(start, num):
            if start == 24:  # chunk 3: process 1 of 2, round 1
                raise ValueError("bad chunk")
            return {"x": np.zeros(num)}

        return list(
            distributed.chunk_results_in_order(
                compute, 40, 8, process_index=p, process_count=2, allgather=allgather
            )
        )

    _, errors = _ThreadJob(2).run(run)
    assert isinstance(errors[1], ValueError) and str(errors[1]) == "bad chunk"  # its own exception
    assert isinstance(errors[0], RuntimeError)  # the other one is told, instead of waiting forever
    assert "process 1 failed on items 24..31: ValueError: bad chunk" in str(errors[0])


# --------------------------------------------------------------------------------------------------
# the CLI as 1 process and as 2 processes x 2 CPU devices


# Runs `python -m biggan.evaluate ...` recording every file this process opens for writing, renames
# or creates under AUDIT_ROOT (a Python audit hook), into AUDIT_ROOT/audit/<process_id>.json at
# exit.
AUDIT_WRAPPER = r"""
import atexit, json, os, runpy, sys
root, written = os.path.realpath(os.environ["AUDIT_ROOT"]), []
pid = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--process_id=")), "single")
WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND
def hook(event, args):
    if event == "open" and isinstance(args[0], (str, os.PathLike)):
        mode, flags = args[1], args[2] or 0
        if (any(c in mode for c in "wax+") if isinstance(mode, str) else flags & WRITE):
            written.append(os.fspath(args[0]))
    elif event in ("os.rename", "os.mkdir", "os.remove") and isinstance(args[0], (str, os.PathLike)):
        written.append(os.fspath(args[1] if event == "os.rename" else args[0]))
def save():
    mine = sorted({os.path.relpath(os.path.realpath(w), root) for w in written
                   if os.path.realpath(w).startswith(root + os.sep)})
    os.makedirs(os.path.join(root, "audit"), exist_ok=True)
    with open(os.path.join(root, "audit", pid + ".json"), "w") as f:
        json.dump(mine, f)
sys.addaudithook(hook)
atexit.register(save)
sys.argv = ["biggan.evaluate"] + sys.argv[1:]
runpy.run_module("biggan.evaluate", run_name="__main__")
"""


@pytest.fixture(scope="module")
def evaluation_inputs(tmp_path_factory):
    """A training workdir with one checkpoint (configs/digits.py:runlocal at initialisation), a
    quickly trained digits classifier and digits reference moments (with features, so KID/PR are
    compared too)."""
    from biggan import checkpoints
    from biggan import config as cfg
    from biggan.evaluation import digits_classifier, metrics

    base = tmp_path_factory.mktemp("eval_multihost")
    # 1 epoch (~3 s): the numbers only have to be the same in both layouts, not good.
    model, accuracy = digits_classifier.train_digits_classifier(epochs=1, log=None)
    (base / "classifier").mkdir()
    digits_classifier._save(
        str(base / "classifier" / "digits_cnn_v1_seed0.npz"),
        model,
        {"seed": 0, "test_accuracy": accuracy, "name": digits_classifier.DIGITS_CLASSIFIER_NAME},
    )
    net = digits_classifier.load_or_train_digits_classifier(
        base / "classifier", log=None
    ).feature_network()
    batches, count, _ = reference.data_batches(
        "digits", resolution=32, batch_size=100, max_images=300
    )
    metrics.save_moments(
        base / "moments.npz", reference.compute_moments(batches, net, total=count, progress=False)
    )

    config = cfg.load_config_file(os.path.join(ROOT, "configs", "digits.py:runlocal"))
    workdir = str(base / "workdir")
    checkpoints.record_config(workdir, config)
    _, state = train_state.init_state(config, jax.random.key(config.seed))
    ckpt = checkpoints.Checkpointer(workdir)
    ckpt.save(0, state, {"epoch": 0, "offset": 0}, wait=True)
    ckpt.close()
    return base


def _listing(directory):
    return sorted(
        (
            os.path.relpath(os.path.join(d, f), directory),
            os.path.getsize(os.path.join(d, f)),
            os.path.getmtime(os.path.join(d, f)),
        )
        for d, _, files in os.walk(directory)
        for f in files
    )


def _run(cmd, env, what):
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300
    )
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, (
        f"{what} failed with status {proc.returncode}:\n"
        + "\n".join(ln for ln in out.splitlines() if "[Gloo]" not in ln)[-6000:]
    )
    return out


@pytest.mark.slow
def test_score_as_two_processes_equals_one(evaluation_inputs):
    base = evaluation_inputs
    runs = {}
    # No persistent compilation cache (as tests/runtime/test_multihost.py: it would serve process 0
    # only).
    plain = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("JAX_PERSISTENT") or k == "JAX_COMPILATION_CACHE_DIR")
    }
    for name in ("single", "multi"):
        run_dir = base / name
        run_dir.mkdir()
        # Own copy of the checkpoint: each run computes (and process 0 caches) its standing
        # statistics.
        shutil.copytree(base / "workdir", run_dir / "workdir")
        args = [
            "score",
            "--checkpoint",
            str(run_dir / "workdir"),
            "--num_samples",
            "60",
            "--batch_size",
            "16",
            "--feature_network",
            "digits",
            "--digits_cache_dir",
            str(base / "classifier"),
            "--moments",
            str(base / "moments.npz"),
            "--out",
            str(run_dir / "score.json"),
        ]
        checkpoint_files = _listing(run_dir / "workdir" / "checkpoints")
        env = {**plain, "AUDIT_ROOT": str(run_dir)}
        if name == "single":  # 1 process x 2 CPU devices
            out = _run(
                [sys.executable, "-c", AUDIT_WRAPPER, *args, "--local_device_count=2"],
                {**launch_local.process_env(2), **env},
                "1 process",
            )
        else:  # 2 processes x 2 CPU devices: chunks 0, 2 on process 0 and 1, 3 on process 1
            out = _run(
                [
                    sys.executable,
                    "scripts/launch_local.py",
                    "-n",
                    "2",
                    "--devices",
                    "2",
                    "--",
                    "-c",
                    AUDIT_WRAPPER,
                    *args,
                ],
                env,
                "2 processes",
            )
        # the restore wrote nothing
        assert _listing(run_dir / "workdir" / "checkpoints") == checkpoint_files
        with open(run_dir / "score.json") as f:
            runs[name] = (json.load(f), out)

    single, _ = runs["single"]
    multi, out = runs["multi"]
    assert single["num_samples"] == 60 and {
        "fid",
        "kid_mean",
        "precision",
        "class_accuracy",
    } <= set(single)
    assert multi == single  # bit for bit: JSON floats round-trip exactly
    # Only process 0 printed the result and wrote files (the --out JSON, the standing-stats cache).
    assert "[0] {" in out and "[1] {" not in out
    with open(base / "multi" / "audit" / "0.json") as f:
        written0 = json.load(f)
    with open(base / "multi" / "audit" / "1.json") as f:
        assert json.load(f) == [], "process 1 wrote files"
    assert "score.json" in written0
    assert any(w.startswith("workdir/standing_stats/") for w in written0), written0
