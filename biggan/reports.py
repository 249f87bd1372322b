"""Result files people read: CSV tables and the truncation-sweep plot (matplotlib, imported when used)."""
from __future__ import annotations

import csv
import os


def write_csv(path: str, rows: list[dict]) -> None:
    """`rows` as CSV, columns in order of first appearance (a row may lack some)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


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
        ax.annotate(f"{r['truncation']:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel(f"IS ({rows[0]['feature_network']})")
    ax.set_ylabel(y_label)
    ax.set_title(f"Truncation sweep, {rows[0]['num_samples']} samples per point")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
