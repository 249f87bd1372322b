"""Result files people read: CSV tables, the truncation-sweep plot, training curves and sample
sheets (matplotlib, imported when used)."""

from __future__ import annotations

import csv
import io

from biggan.runtime import storage


def write_csv(path: str, rows: list[dict]) -> None:
    """`rows` as CSV, columns in order of first appearance (a row may lack some)."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    storage.write_text(path, text.getvalue())


def _save_figure(fig, path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    storage.write_bytes(path, buffer.getvalue())


def plot_sweep(path: str, rows: list[dict]) -> None:
    """FID against IS, one point per truncation, annotated (the paper's fig. 17 layout)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    is_values = [r["is_mean"] for r in rows]
    if all("fid" in r for r in rows):
        y_values, y_label = [r["fid"] for r in rows], "FID"
    else:  # no reference moments: IS against truncation only
        y_values, y_label = [r["truncation"] for r in rows], "truncation"
    ax.plot(is_values, y_values, "o-")
    for r, x, y in zip(rows, is_values, y_values):
        ax.annotate(
            f"{r['truncation']:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7
        )
    ax.set_xlabel(f"IS ({rows[0]['feature_network']})")
    ax.set_ylabel(y_label)
    ax.set_title(f"Truncation sweep, {rows[0]['num_samples']} samples per point")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)


def plot_curves(
    path: str, rows: list[dict], panels=(("d_loss", "g_loss"), ("fid",), ("classifier_accuracy",))
) -> None:
    """Training curves from metrics.jsonl rows ({"step": ..., key: value}): one panel per group of
    keys, each key drawn at the steps that logged it; groups no row has are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [group for group in panels if any(k in row for row in rows for k in group)]
    if not present:
        raise ValueError(f"no rows hold any of {[k for group in panels for k in group]}")
    fig, axes = plt.subplots(
        1, len(present), figsize=(4 * len(present), 3.2), dpi=120, squeeze=False
    )
    for ax, group in zip(axes[0], present):
        for key in group:
            points = [(row["step"], row[key]) for row in rows if key in row]
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, "-" if len(points) > 20 else "o-", label=key, lw=1)
        ax.set_xlabel("step")
        ax.set_title(", ".join(group))
        ax.grid(alpha=0.3)
        if len(group) > 1:
            ax.legend(fontsize=7)
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)


def plot_study(path: str, curves: dict, metrics=("fid", "classifier_accuracy")) -> None:
    """An ablation study's evaluation curves: one panel per metric, one line per variant (the mean
    over seeds at each evaluated step, a band of ± one sample std where there are several seeds).
    `curves`: {variant: {metric: [(step, mean, std or nan), ...]}} (biggan.ablate.summarise per
    step)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    present = [m for m in metrics if any(m in c for c in curves.values())]
    if not present:
        raise ValueError(f"no run of the study logged any of {list(metrics)}")
    fig, axes = plt.subplots(
        1, len(present), figsize=(4.5 * len(present), 3.4), dpi=120, squeeze=False
    )
    for ax, metric in zip(axes[0], present):
        for variant, by_metric in curves.items():
            points = by_metric.get(metric)
            if not points:
                continue
            steps, mean, std = (np.array(column, float) for column in zip(*points))
            ax.plot(steps, mean, "o-", ms=3, lw=1, label=variant)
            ax.fill_between(steps, mean - std, mean + std, alpha=0.15)
        ax.set_xlabel("step")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)


def plot_sample_sheet(path: str, grids: dict) -> None:
    """Sample grids side by side, each titled: `grids` = {title: path of a PNG grid} (e.g. a study's
    variants)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not grids:
        raise ValueError("no sample grid to draw")
    # ~300 pixels a grid: 8 columns of 32² samples at about their own size
    fig, axes = plt.subplots(1, len(grids), figsize=(3.0 * len(grids), 3.7), dpi=100, squeeze=False)
    for ax, (title, grid_path) in zip(axes[0], grids.items()):
        ax.imshow(
            plt.imread(io.BytesIO(storage.read_bytes(grid_path)), format="png"),
            interpolation="nearest",
        )
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)
