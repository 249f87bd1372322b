"""Per-truncation batch-norm statistics of the released TF Hub models.

The TF Hub modules store, for every BN of G, statistics measured at a grid of truncation values t
(the module's `truncation` input both scales z and selects them). An export keeps them in
`truncation_stats.npz` under '<bn path>/mean' and '<bn path>/var' (the nnx path of the BN's
`mean`/`var` state, e.g. 'blocks/0/bn1/bn/mean'), and names the grid in
`config.sample.truncation_table`:

- 'pytorch_pretrained_biggan' (BigGAN-deep, biggan-deep-*/1): 51 rows, t = k/50 (k = 0…50), shape (51, C),
  interpolated as pytorch-pretrained-biggan 0.1.1 does (below).
- 'tfhub_biggan' (BigGAN, biggan-*/2): 50 rows, t = 0.02·(k+1) (k = 0…49), as
  ivclab/BigGAN-Generator-Pretrained-Pytorch found them (src/batch_normalization.py); linear interpolation
  between rows, t < 0.02 refused. That code's own in-between rule (weight round(residual/0.02, 2) ∈ [0.5, 1.5]
  on the lower row) equals ours on the rows only; between rows it extrapolates, so we do not copy it.

`apply_truncation_stats` writes the statistics for a truncation into G's BN state.

BigGAN-deep interpolation reproduces pytorch-pretrained-biggan 0.1.1 exactly, quirk included
(pytorch_pretrained_biggan/model.py, BigGANBatchNorm):
    coef, idx = math.modf(t / (1 / (n − 1)))        # float64 Python arithmetic
    coef == 0: row[idx];  else: row[idx]·coef + row[idx+1]·(1 − coef)
The fraction weights the LOWER row, the reverse of a linear interpolation: t = 0.425 (21.25 rows)
gives row21·0.25 + row22·0.75 (= 21.75 rows' worth), not 21.25; midpoints (t = 0.41, 20.5 rows)
agree either way. We keep it because the released weights' samples are defined by that code. Pass t
as a Python float: in float64, 0.3/0.02 and 0.6/0.02 are exactly 15 and 30, but the float32 value
0.3 (0.30000001…) gives 15.0000006 → coef ≈ 6e-7 → ≈ row 16 (the float32 trap); `float(t)` keeps
whatever value it is given, exactly as the reference does.
"""

from __future__ import annotations

import math

import numpy as np
from flax import nnx

from biggan.models import batch_norm

TABLES = ("pytorch_pretrained_biggan", "tfhub_biggan")


def check_truncation(truncation, table="pytorch_pretrained_biggan") -> float:
    t = float(truncation)
    low = 0.02 if table == "tfhub_biggan" else 0.0
    if not (low <= t if low else 0.0 < t) or t > 1.0:
        lower = "0.02 ≤ t" if low else "0 < t"
        raise ValueError(
            f"truncation {truncation!r} is outside the released model's range {lower} ≤ 1 (t = 1: "
            f"untruncated z; its BN statistics are stored for that range only); choose a value in it"
        )
    return t


def interpolation(truncation, n_stats: int, table="pytorch_pretrained_biggan"):
    """(lower row index, coefficient of the lower row) for `truncation` in an `n_stats`-row
    table."""
    t = check_truncation(truncation, table)
    if table == "tfhub_biggan":
        position = t / 0.02 - 1.0  # row k holds t = 0.02·(k+1)
        idx = min(int(math.floor(position)), n_stats - 2)
        # a linear interpolation: the lower row gets 1 − fraction
        return idx, 1.0 - (position - idx)
    step = 1.0 / (n_stats - 1)
    coef, idx = math.modf(t / step)  # float64, as in BigGANBatchNorm.forward
    return int(idx), coef


def interpolate(rows, truncation, table="pytorch_pretrained_biggan"):
    """Statistics (C,) for `truncation` from the (n_stats, C) table, float32 (the references' tensor
    dtype)."""
    rows = np.asarray(rows, np.float32)
    idx, coef = interpolation(truncation, rows.shape[0], table)
    if table == "pytorch_pretrained_biggan" and coef == 0.0:
        return rows[idx]  # exactly on a row (BigGANBatchNorm's `coef != 0` test)
    # pytorch_pretrained_biggan: reversed weights on purpose, the fraction multiplies the LOWER row
    # (module docstring).
    return rows[idx] * np.float32(coef) + rows[idx + 1] * np.float32(1.0 - coef)


def batchnorm_paths(generator) -> dict:
    """{'<bn path>': BatchNorm} for every batch norm of `generator` (the conditional BNs' inner `bn`
    too)."""
    return {
        "/".join(map(str, path)): module
        for path, module in nnx.iter_modules(generator)
        if isinstance(module, batch_norm.BatchNorm)
    }


def check_stats_match(generator, stats: dict):
    """Raise unless `stats` has exactly '<bn path>/mean' and '/var' for every BN of G, with shape
    (n, C)."""
    bns = batchnorm_paths(generator)
    expected = {f"{p}/{k}": bn.mean.shape[0] for p, bn in bns.items() for k in ("mean", "var")}
    missing = sorted(set(expected) - set(stats))
    unexpected = sorted(set(stats) - set(expected))
    bad_shape = [
        f"{k}: {np.shape(stats[k])}, expected (n_stats, {c})"
        for k, c in expected.items()
        if k in stats
        and (np.ndim(stats[k]) != 2 or np.shape(stats[k])[1] != c or np.shape(stats[k])[0] < 2)
    ]
    if missing or unexpected or bad_shape:
        raise ValueError(
            "truncation statistics do not match this generator's batch norms:"
            + (f"\n  missing: {missing}" if missing else "")
            + (f"\n  unexpected: {unexpected}" if unexpected else "")
            + (f"\n  wrong shape: {bad_shape}" if bad_shape else "")
            + "\n(were they written for a different model? re-run biggan.convert)"
        )
    return bns


def apply_truncation_stats(
    generator, stats: dict, truncation, table="pytorch_pretrained_biggan"
) -> None:
    """Write the interpolated statistics for `truncation` into every BN's `mean`/`var` of
    `generator` (in place; evaluation-mode forwards then use them)."""
    if table not in TABLES:
        raise ValueError(f"sample.truncation_table={table!r}: expected one of {TABLES}")
    check_truncation(truncation, table)
    for path, bn in check_stats_match(generator, stats).items():
        bn.mean.set_value(interpolate(stats[f"{path}/mean"], truncation, table))
        bn.var.set_value(interpolate(stats[f"{path}/var"], truncation, table))
