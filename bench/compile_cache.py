r"""The persistent compilation cache: a second `train.py` start against the first.

  python bench/compile_cache.py                                  # configs/digits.py, one step per start
  python bench/compile_cache.py --config configs/biggan_128.py:runlocal

Three starts of the same command (fresh workdirs; one cache directory created empty for this run): the
first fills the cache, the second reads it, the third runs with `--compile_cache=` (off) as the control.
Reported per start: the train step's compile time (train.py logs it) and the wall time of the whole
command. Prints a table and writes bench/results/compile_cache.json.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import report  # noqa: E402


def start(config, workdir, cache):
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    argv = [
        sys.executable,
        "train.py",
        "--config",
        config,
        "--workdir",
        workdir,
        f"--compile_cache={cache}",
        "--config.train.num_steps=1",
        "--config.log.sample_every=0",
        "--config.log.sv_every=0",
        "--config.log.eval_every=0",
    ]
    tic = time.perf_counter()
    out = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - tic
    if out.returncode:
        raise SystemExit(f"{' '.join(argv)} failed:\n{out.stderr[-3000:]}")
    compiled = re.search(r"train step compiled in ([0-9.]+) s", out.stderr)
    return float(compiled.group(1)), wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/digits.py")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, "xla_cache")
        rows = []
        for name, cache_dir in (
            ("first start (empty cache)", cache),
            ("second start (cache filled)", cache),
            ("cache off (--compile_cache=)", ""),
        ):
            compile_s, wall_s = start(args.config, os.path.join(tmp, f"run{len(rows)}"), cache_dir)
            rows.append({"start": name, "step_compile_s": compile_s, "command_wall_s": wall_s})
        entries = sum(len(files) for _, _, files in os.walk(cache))
    first = rows[0]
    for row in rows:
        row["compile_ratio_to_first"] = row["step_compile_s"] / first["step_compile_s"]
        row["wall_ratio_to_first"] = row["command_wall_s"] / first["command_wall_s"]
    report(
        "compile_cache",
        rows,
        extra={
            "command": "python bench/compile_cache.py " + " ".join(sys.argv[1:]),
            "config": args.config,
            "cache_files": entries,
        },
    )


if __name__ == "__main__":
    main()
