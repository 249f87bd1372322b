"""Shared helpers of the bench/ scripts: timing, a table printer and the JSON writer."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time


def timeit(fn, repeats=3, warmup=1):
    """Median wall seconds of fn() over `repeats` calls after `warmup` calls (fn must block until
    done)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def in_own_process(script, argv, malloc_policy):
    """Run `python script *argv --_worker_out FILE` under BIGGAN_HOST_MALLOC=malloc_policy (an
    allocator policy is per process: biggan/runtime/host_memory.py) and return the JSON the worker
    wrote to FILE."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [sys.executable, os.path.abspath(script), *argv, "--_worker_out", out.name],
            check=True,
            env=dict(os.environ, BIGGAN_HOST_MALLOC=malloc_policy),
        )
        with open(out.name) as f:
            return json.load(f)


def report(name, rows, extra=None):
    """Print rows (list of dicts) as a table and write bench/results/<name>.json."""
    keys = list(rows[0])
    widths = [max(len(k), *(len(_fmt(r[k])) for r in rows)) for k in keys]
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths)))
    for r in rows:
        print("  ".join(_fmt(r[k]).ljust(w) for k, w in zip(keys, widths)))
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"{name}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(
            {
                "rows": rows,
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                **(extra or {}),
            },
            f,
            indent=2,
        )
    print(f"wrote {out}")


def _fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)
