"""Ablation studies like the paper's table 1: variants × seeds, one run after another.

    python -m biggan.ablate configs/digits_ablation.py --seeds 2 [--workdir DIR]
    python -m biggan.ablate configs/digits_ablation.py --list          # the variants and their overrides
    python -m biggan.ablate configs/digits_ablation.py --seeds 2 --jobs  # one command per run (cluster)

A study config is an ordinary experiment config plus `config.ablation`:
    ablation.variants = {name: overrides}   overrides: `variant({'model.shared': False})`, i.e. the
                                            dotted keys of the base config stored as a nested ConfigDict
                                            (ml_collections refuses dots in keys of a copyable ConfigDict)
    ablation.metrics  = final metrics to tabulate (default fid, classifier_accuracy, is, d_loss, g_loss)
Run `name`, seed i trains in WORKDIR/name/seed_i with config.seed = base seed + i (trainer.train);
runs go seed-major (seed 0 of every variant first); a finished run leaves result.json and is skipped,
so re-running the command resumes an interrupted study (an unfinished run resumes from its own checkpoint). results.csv / results.md give mean ± sample
std (ddof=1) over the finished seeds of every variant; study_curves.png draws the evaluated metrics against the
step (mean ± std over seeds, from each run's metrics.jsonl); study_samples.png shows each variant's last sample
grid (its first finished seed).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
import sys
import time

import ml_collections

from biggan import config as cfg
from biggan.evaluation import reports
from biggan.runtime import cli, storage
from biggan.train import loop as trainer

DEFAULT_METRICS = ("fid", "classifier_accuracy", "is", "d_loss", "g_loss")


def variant(overrides: dict) -> ml_collections.ConfigDict:
    """{'model.shared': False} → ConfigDict(model=ConfigDict(shared=False)) (see module
    docstring)."""
    nested = ml_collections.ConfigDict()
    for dotted, value in overrides.items():
        node = nested
        *parents, leaf = dotted.split(".")
        for p in parents:
            if p not in node:
                node[p] = ml_collections.ConfigDict()
            node = node[p]
        node[leaf] = value
    return nested


def load_study(spec: str):
    """(base experiment config, ablation section) from `path/to/study.py[:arg]`."""
    path = spec.partition(":")[0]
    config = cfg.run_config_file(spec)
    if (
        "ablation" not in config
        or "variants" not in config.ablation
        or not config.ablation.variants
    ):
        raise ValueError(
            f"{path} has no config.ablation.variants; a study config must list "
            f"{{name: ablate.variant({{'dotted.key': value}})}}"
        )
    # The study section with its optional keys completed: one seed, the default metrics.
    ablation = ml_collections.ConfigDict(dict(seeds=1, metrics=DEFAULT_METRICS))
    ablation.update(config.ablation)
    with config.unlocked():
        del config["ablation"]
    cfg.check_keys(config, cfg.base_config())
    return config, ablation


def variant_overrides(ablation) -> dict[str, dict]:
    return {name: cfg.flatten(v) for name, v in ablation.variants.items()}


def apply_overrides(base: ml_collections.ConfigDict, overrides: dict) -> ml_collections.ConfigDict:
    """A copy of `base` with dotted overrides; unknown keys raise with the closest valid ones."""
    config = ml_collections.ConfigDict(base.to_dict())
    cfg.set_overrides(config, overrides, "ablation override")
    return config


def run_config(base, overrides: dict, seed_index: int) -> ml_collections.ConfigDict:
    config = apply_overrides(base, overrides)
    config.seed = base.seed + seed_index
    return config


def run_dir(study_dir: str, name: str, seed_index: int) -> str:
    return os.path.join(study_dir, name, f"seed_{seed_index}")


def read_result(directory: str):
    path = os.path.join(directory, "result.json")
    if not storage.exists(path):
        return None
    return json.loads(storage.read_text(path))


def _share_eval_cache(study_dir: str, directory: str):
    # The digits classifier and reference moments are identical for every run: train/compute them
    # once (first run) and copy them into later runs' eval dirs instead of redoing it per run.
    _copy_new_files(os.path.join(study_dir, "_shared_eval"), os.path.join(directory, "eval"))


def _collect_eval_cache(study_dir: str, directory: str):
    _copy_new_files(os.path.join(directory, "eval"), os.path.join(study_dir, "_shared_eval"))


def _copy_new_files(source_dir: str, destination_dir: str):
    """Copy the .npz files of `source_dir` that `destination_dir` lacks (local or gs://)."""
    for f in storage.glob(source_dir, "*.npz"):
        destination = os.path.join(destination_dir, os.path.basename(f))
        if not storage.exists(destination):
            storage.copy(f, destination)


def run_study(
    base,
    ablation,
    study_dir: str,
    seeds: int,
    *,
    only: str | None = None,
    seed_index: int | None = None,
    train_fn=None,
    log=print,
) -> list[dict]:
    """Run every unfinished (variant, seed); write results.csv / results.md; return the table
    rows."""
    if train_fn is None:
        train_fn = trainer.train
    variants = variant_overrides(ablation)
    if only is not None and only not in variants:
        raise ValueError(
            f"--only {only!r} is not a variant of this study; variants: {', '.join(variants)}"
        )
    if seeds < 1:
        raise ValueError(f"--seeds must be ≥ 1, got {seeds}")
    # Seed-major order: an interrupted study already has every variant at its first seeds.
    todo = [
        (n, i)
        for i in range(seeds)
        for n in variants
        if (only is None or n == only) and (seed_index is None or i == seed_index)
    ]
    for k, (name, i) in enumerate(todo):
        directory = run_dir(study_dir, name, i)
        if read_result(directory) is not None:
            log(f"[{k + 1}/{len(todo)}] {name} seed {i}: finished, skipped")
            continue
        log(f"[{k + 1}/{len(todo)}] {name} seed {i}: training in {directory}")
        tic = time.time()
        storage.makedirs(directory)
        _share_eval_cache(study_dir, directory)
        result = train_fn(run_config(base, variants[name], i), directory)
        if result.get("preempted"):
            log(
                f"{name} seed {i} was preempted at step {result.get('step')}; re-run the command to resume"
            )
            break
        result = dict(result, variant=name, seed_index=i, seconds=time.time() - tic)
        storage.write_text(
            os.path.join(directory, "result.json"), json.dumps(result, indent=1, default=float)
        )
        _collect_eval_cache(study_dir, directory)
        log(
            f"{name} seed {i}: done in {result['seconds']:.0f} s: "
            + ", ".join(f"{m}={result[m]:.4g}" for m in ablation.metrics if m in result)
        )
    return write_results(study_dir, variants, seeds, tuple(ablation.metrics))


def summarise(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; nan for one value)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return mean, std


def write_results(
    study_dir: str, variants: dict, seeds: int, metrics=DEFAULT_METRICS
) -> list[dict]:
    rows = []
    for name, overrides in variants.items():
        results = [
            r
            for r in (read_result(run_dir(study_dir, name, i)) for i in range(seeds))
            if r is not None
        ]
        row = {
            "variant": name,
            "overrides": " ".join(f"{k}={v}" for k, v in overrides.items()) or "(base)",
            "seeds_done": len(results),
        }
        for m in metrics:
            mean, std = summarise([float(r[m]) for r in results if m in r])
            row[f"{m}_mean"], row[f"{m}_std"] = mean, std
        rows.append(row)
    reports.write_csv(os.path.join(study_dir, "results.csv"), rows)
    fmt = lambda mean, std: (
        "–"
        if math.isnan(mean)
        else (f"{mean:.4g}" if math.isnan(std) else f"{mean:.4g} ± {std:.2g}")
    )
    lines = [
        "| variant | overrides | seeds | " + " | ".join(metrics) + " |",
        "|" + "---|" * (3 + len(metrics)),
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['overrides']} | {r['seeds_done']}/{seeds} | "
            + " | ".join(fmt(r[f"{m}_mean"], r[f"{m}_std"]) for m in metrics)
            + " |"
        )
    lines.append("")
    lines.append(
        f"mean ± sample std (ddof=1) over finished seeds; final metrics of each run ({study_dir})."
    )
    storage.write_text(os.path.join(study_dir, "results.md"), "\n".join(lines) + "\n")
    evaluated = [
        m for m in metrics if m not in ("d_loss", "g_loss")
    ]  # logged every step, not evaluated
    curves = study_curves(study_dir, variants, seeds, evaluated)
    if any(curves.values()):
        summary = {
            name: {
                m: [(step, *summarise(values)) for step, values in sorted(by_step.items())]
                for m, by_step in by_metric.items()
            }
            for name, by_metric in curves.items()
        }
        reports.plot_study(os.path.join(study_dir, "study_curves.png"), summary, evaluated)
    grids = final_sample_grids(study_dir, variants, seeds)
    if grids:
        reports.plot_sample_sheet(os.path.join(study_dir, "study_samples.png"), grids)
    return rows


def final_sample_grids(study_dir: str, variants: dict, seeds: int) -> dict:
    """{"variant (seed i, step s)": path} of the last sample grid of each variant's first finished
    seed."""
    grids = {}
    for name in variants:
        for i in range(seeds):
            directory = run_dir(study_dir, name, i)
            found = (
                storage.glob(os.path.join(directory, "samples"), "step_*.png")
                if read_result(directory)
                else []
            )
            if found:
                last = max(found)  # step_%07d.png: the name orders the steps
                step = int(os.path.basename(last)[len("step_") : -len(".png")])
                grids[f"{name} (seed {i}, step {step})"] = last
                break
    return grids


def study_curves(study_dir: str, variants: dict, seeds: int, metrics) -> dict:
    """{variant: {metric: {step: [value per finished seed]}}} of `metrics` from each finished run's
    metrics.jsonl."""
    curves = {}
    for name in variants:
        by_metric = {}
        for i in range(seeds):
            directory = run_dir(study_dir, name, i)
            path = os.path.join(directory, "metrics.jsonl")
            if read_result(directory) is None or not storage.exists(path):
                continue
            for line in storage.read_text(path).splitlines():
                row = json.loads(line)
                for m in metrics:
                    if m in row:
                        by_metric.setdefault(m, {}).setdefault(int(row["step"]), []).append(
                            float(row[m])
                        )
        curves[name] = by_metric
    return curves


def job_commands(spec: str, variants: dict, seeds: int, study_dir: str) -> list[str]:
    return [
        f"python -m biggan.ablate {shlex.quote(spec)} --seeds {seeds} --workdir {shlex.quote(study_dir)} "
        f"--only {shlex.quote(name)} --seed_index {i}"
        for name in variants
        for i in range(seeds)
    ]


def main(argv=None):
    p = cli.parser(
        "python -m biggan.ablate",
        __doc__.split("\n")[0],
        parents=[cli.runtime_flags(multi_process=False)],
    )
    p.add_argument("config", help="study config: path/to/study.py[:arg]")
    p.add_argument(
        "--seeds", type=int, default=None, help="seeds per variant (default: ablation.seeds or 1)"
    )
    p.add_argument(
        "--workdir", default=None, help="study directory (default workdirs/<config name>)"
    )
    p.add_argument("--list", action="store_true", help="print the variants and exit")
    p.add_argument("--jobs", action="store_true", help="print one command per run and exit")
    p.add_argument("--only", default=None, help="run only this variant")
    p.add_argument(
        "--seed_index", "--seed-index", type=int, default=None, help="run only this seed index"
    )
    args = p.parse_args(argv)
    base, ablation = load_study(args.config)
    variants = variant_overrides(ablation)
    for name, ov in variants.items():
        apply_overrides(base, ov)  # fail early on a bad key, before hours of training
    seeds = args.seeds or ablation.seeds
    name = os.path.splitext(os.path.basename(args.config.partition(":")[0]))[0]
    study_dir = storage.resolve(args.workdir or os.path.join("workdirs", name))
    if args.list:
        for n, ov in variants.items():
            print(
                f"{n}: " + (" ".join(f"--config.{k}={v}" for k, v in ov.items()) or "(base config)")
            )
        return 0
    if args.jobs:
        print("\n".join(job_commands(args.config, variants, seeds, study_dir)))
        return 0
    logging.basicConfig(level=logging.INFO)
    cli.start(args)  # the host allocator, the compile cache
    rows = run_study(base, ablation, study_dir, seeds, only=args.only, seed_index=args.seed_index)
    print(storage.read_text(os.path.join(study_dir, "results.md")))
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
