r"""What every run pays before its first step: building the models and tracing the train step, this checkout
against a reference commit (default: the commit before init and tracing were shortened).

  python bench/startup.py                          # tiny digits and BigGAN-deep-128 smoke, against 2a7f2d4
  python bench/startup.py --reference HEAD~3 --configs configs/biggan_128.py:runlocal

Each measurement runs in a fresh process (`python bench/startup.py --_worker ...`), with the code of this
checkout or of the reference (a `git worktree` of it in a temporary directory), twice against one persistent
compilation cache created empty for it: "cold" compiles every program, "warm" loads them from the cache (what a
second `train.py` start does). Reported: `train_state.init_state` wall seconds and the number of XLA programs it
compiles or loads (one per eager operation and shape), and the seconds to trace the jitted step to a jaxpr and to
lower it (what the cache cannot skip). Prints a table and writes bench/results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import report  # noqa: E402

TINY = (
    "configs/digits.py:runlocal"  # with tests/stepping.py's tiny overrides (the test suite's model)
)


def worker(config_name, out):
    """Measure in this process: init (programs compiled), trace, lower."""
    import jax
    import numpy as np

    programs = []

    class Count(logging.Handler):
        def emit(self, record):
            if re.search(r"Compiling \S+", record.getMessage()):
                programs.append(record.getMessage().split()[1])

    logging.getLogger("jax").addHandler(Count())
    logging.getLogger("jax").setLevel(logging.DEBUG)
    # logs each program lowered, whether compiled or loaded
    jax.config.update("jax_log_compiles", True)
    from biggan import config as cfg

    try:
        from biggan.train import state as train_state
        from biggan.train import step as ts
    except ImportError:  # a reference commit from before the subsystem packages
        from biggan import train_step as ts

        train_state = ts

    c = cfg.load_config_file(config_name.removesuffix("+tiny"))
    if config_name.endswith("+tiny"):
        sys.path.insert(0, os.path.join(REPO, "tests"))
        import stepping

        cfg.set_overrides(c, stepping.tiny_overrides(), "bench:")
    tic = time.perf_counter()
    mdl, state = train_state.init_state(c, jax.random.key(0))
    jax.block_until_ready(state)
    init_s, init_programs = time.perf_counter() - tic, len(programs)
    t, r = c.train, c.model.resolution
    lead = (t.num_d_steps, t.num_accumulations, t.batch_size // t.num_accumulations)
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.integers(0, 256, lead + (r, r, 3), dtype=np.uint8),
        "label": rng.integers(0, c.model.num_classes, lead).astype(np.int32),
    }
    step = jax.jit(ts.make_train_step(c, mdl))
    tic = time.perf_counter()
    traced = step.trace(state, batch, jax.random.key(1))
    trace_s = time.perf_counter() - tic
    tic = time.perf_counter()
    traced.lower()
    lower_s = time.perf_counter() - tic
    with open(out, "w") as f:
        json.dump(
            {
                "init_s": init_s,
                "init_programs": init_programs,
                "trace_s": trace_s,
                "lower_s": lower_s,
            },
            f,
        )


def measure(code_dir, config_name, cache):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        env = dict(
            os.environ,
            PYTHONPATH=code_dir,
            JAX_PLATFORMS="cpu",
            JAX_COMPILATION_CACHE_DIR=cache,
            JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
            JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        )
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--_worker", config_name, out.name],
            cwd=code_dir,
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode:
            raise SystemExit(
                f"measuring {config_name} in {code_dir} failed:\n{proc.stderr[-3000:]}"
            )
        with open(out.name) as f:
            return json.load(f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--reference", default="2a7f2d4", help="the commit to compare with (git rev)"
    )
    parser.add_argument(
        "--configs",
        default=f"{TINY}+tiny,configs/biggan_deep_128.py:runlocal",
        help="comma-separated config files; '+tiny' applies the test suite's tiny overrides",
    )
    parser.add_argument("--_worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._worker:
        return worker(*args._worker)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        reference = os.path.join(tmp, "reference")
        subprocess.run(
            ["git", "worktree", "add", "--detach", reference, args.reference],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        try:
            for config_name in args.configs.split(","):
                for label, code in (
                    ("reference " + args.reference, reference),
                    ("this checkout", REPO),
                ):
                    cache = os.path.join(tmp, f"cache{len(rows)}")
                    for start in ("cold", "warm"):
                        m = measure(code, config_name, cache)
                        rows.append({"config": config_name, "code": label, "cache": start, **m})
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", reference], cwd=REPO, check=False
            )
    for row in rows:
        ref = next(r for r in rows if r["config"] == row["config"] and r["cache"] == row["cache"])
        row["init_ratio"] = row["init_s"] / ref["init_s"]
        row["trace_ratio"] = row["trace_s"] / ref["trace_s"]
    report(
        "startup",
        rows,
        extra={
            "command": "python bench/startup.py " + " ".join(sys.argv[1:]),
            "reference": args.reference,
        },
    )


if __name__ == "__main__":
    main()
