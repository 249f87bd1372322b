r"""The README's pictures: train the embedded default exactly as the README's first command does, then draw its
last sample grid, a truncation grid and its training curves into docs/images/, with the run's final figures
in docs/images/digits_run.json.

  python scripts/make_readme_pictures.py                  # python train.py, then sample.py (README › Results)
  python scripts/make_readme_pictures.py --workdir W --out D -- --config configs/digits.py:runlocal   # smoke

Arguments after `--` go to train.py. An existing run directory resumes (a finished one is only drawn), as
train.py always does.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from biggan.evaluation import reports  # noqa: E402

TRUNCATION_GRID = [
    "--truncation",
    "0.25:1.0:0.25",
    "--classes",
    "0,1,2,3,4,5,6,7,8,9",
    "--n",
    "10",
    "--standing_stats",
    "20",
]  # the config's 20 x 100 (sample.py asks before accumulating >4,096)


def run(command: list[str]) -> float:
    """Runs a command from the repository root; returns its wall time in seconds."""
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, *command], cwd=ROOT, check=True)
    return time.perf_counter() - start


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    train_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", default="workdirs/digits")
    parser.add_argument("--out", default="docs/images")
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    workdir, out = (
        os.path.join(ROOT, p) if not os.path.isabs(p) else p for p in (args.workdir, args.out)
    )
    os.makedirs(out, exist_ok=True)

    train_s = run(["train.py", "--workdir", workdir, *train_args])
    grids = sorted(glob.glob(os.path.join(workdir, "samples", "step_*.png")))
    if not grids:
        raise SystemExit(
            f"{workdir}/samples holds no sample grid: set log.sample_every > 0 (configs/digits.py)"
        )
    shutil.copyfile(grids[-1], os.path.join(out, "digits_samples.png"))
    sample_s = run(
        [
            "sample.py",
            "--checkpoint",
            workdir,
            *TRUNCATION_GRID,
            "--output",
            os.path.join(out, "digits_truncation.png"),
        ]
    )
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    reports.plot_curves(os.path.join(out, "digits_curves.png"), rows)

    import jax  # after the subprocesses, so that this process holds no accelerator while they run

    evals = [row for row in rows if "fid" in row or "classifier_accuracy" in row]
    summary = {
        "commands": [
            " ".join(["python train.py", "--workdir", args.workdir, *train_args]),
            " ".join(["python sample.py", "--checkpoint", args.workdir, *TRUNCATION_GRID]),
        ],
        "final_step": rows[-1]["step"] if rows else None,
        "last_evaluation": evals[-1] if evals else None,
        "evaluations": evals,
        "sample_grid": os.path.basename(grids[-1]),
        "train_wall_s": round(train_s, 1),
        "sample_wall_s": round(sample_s, 1),
        "device": jax.devices()[0].device_kind,
        "host": platform.processor() or platform.machine(),
    }
    with open(os.path.join(out, "digits_run.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(
        json.dumps(
            {k: summary[k] for k in ("final_step", "last_evaluation", "train_wall_s", "device")}
        )
    )
    return summary


if __name__ == "__main__":
    main()
