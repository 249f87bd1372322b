"""Per-truncation batch-norm statistics of the released BigGAN-deep models (TF Hub; pytorch-pretrained-biggan 0.1.1).

TF Hub / pytorch-pretrained-biggan store, for every BN of G, the statistics measured at 51 truncation
values t = k/50 (k = 0…50), shape (51, C). An export keeps them in `truncation_stats.npz` under
'<bn path>/mean' and '<bn path>/var' (the nnx path of the BN's `mean`/`var` state, e.g.
'blocks/0/bn1/bn/mean'); `apply_truncation_stats` writes the ones for a truncation into G's BN state.

Interpolation reproduces pytorch-pretrained-biggan 0.1.1 exactly, quirk included (pytorch_pretrained_biggan/model.py, BigGANBatchNorm):
    coef, idx = math.modf(t / (1 / (n − 1)))        # float64 Python arithmetic
    coef == 0: row[idx];  else: row[idx]·coef + row[idx+1]·(1 − coef)
The fraction weights the LOWER row, the reverse of a linear interpolation: t = 0.425 (21.25 rows) gives
row21·0.25 + row22·0.75 (= 21.75 rows' worth), not 21.25; midpoints (t = 0.41, 20.5 rows) agree either way.
We keep it because the released weights' samples are defined by that code. Pass t as a Python float:
in float64, 0.3/0.02 and 0.6/0.02 are exactly 15 and 30, but the float32 value 0.3 (0.30000001…) gives
15.0000006 → coef ≈ 6e-7 → ≈ row 16 (the float32 trap); `float(t)` keeps whatever value it is given,
exactly as the reference does.
"""
from __future__ import annotations

import math

import numpy as np
from flax import nnx

from biggan import layers


def check_truncation(truncation) -> float:
    t = float(truncation)
    if not 0.0 < t <= 1.0:
        raise ValueError(f"truncation={truncation!r} is outside (0, 1]: the released models store BN statistics "
                         f"for 0 < t ≤ 1 only (t=1 means untruncated z); choose a value in (0, 1]")
    return t


def interpolation(truncation, n_stats: int):
    """(lower row index, coefficient of the lower row) as pytorch-pretrained-biggan 0.1.1 computes them."""
    t = check_truncation(truncation)
    step = 1.0 / (n_stats - 1)
    coef, idx = math.modf(t / step)  # float64, as in BigGANBatchNorm.forward
    return int(idx), coef


def interpolate(rows, truncation):
    """Statistics (C,) for `truncation` from the (n_stats, C) table, float32 (the reference's tensor dtype)."""
    rows = np.asarray(rows, np.float32)
    idx, coef = interpolation(truncation, rows.shape[0])
    if coef == 0.0:
        return rows[idx]
    # Reversed weights on purpose: the fraction multiplies the LOWER row (module docstring).
    return rows[idx] * np.float32(coef) + rows[idx + 1] * np.float32(1.0 - coef)


def batchnorm_paths(generator) -> dict:
    """{'<bn path>': BatchNorm} for every batch norm of `generator` (the conditional BNs' inner `bn` too)."""
    return {"/".join(map(str, path)): module for path, module in nnx.iter_modules(generator)
            if isinstance(module, layers.BatchNorm)}


def check_stats_match(generator, stats: dict):
    """Raise unless `stats` has exactly '<bn path>/mean' and '/var' for every BN of G, with shape (n, C)."""
    bns = batchnorm_paths(generator)
    expected = {f"{p}/{k}": bn.mean.shape[0] for p, bn in bns.items() for k in ("mean", "var")}
    missing = sorted(set(expected) - set(stats))
    unexpected = sorted(set(stats) - set(expected))
    bad_shape = [f"{k}: {np.shape(stats[k])}, expected (n_stats, {c})" for k, c in expected.items()
                 if k in stats and (np.ndim(stats[k]) != 2 or np.shape(stats[k])[1] != c or np.shape(stats[k])[0] < 2)]
    if missing or unexpected or bad_shape:
        raise ValueError("truncation statistics do not match this generator's batch norms:"
                         + (f"\n  missing: {missing}" if missing else "")
                         + (f"\n  unexpected: {unexpected}" if unexpected else "")
                         + (f"\n  wrong shape: {bad_shape}" if bad_shape else "")
                         + "\n(were they written for a different model? re-run biggan.convert)")
    return bns


def apply_truncation_stats(generator, stats: dict, truncation) -> None:
    """Write the interpolated statistics for `truncation` into every BN's `mean`/`var` of `generator`
    (in place; evaluation-mode forwards then use them)."""
    check_truncation(truncation)
    for path, bn in check_stats_match(generator, stats).items():
        bn.mean.set_value(interpolate(stats[f"{path}/mean"], truncation))
        bn.var.set_value(interpolate(stats[f"{path}/var"], truncation))
