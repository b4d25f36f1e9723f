"""Statistics of the figures: correlations and ranks (scipy.stats), the binomial standard error of a top-1."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from scipy import stats


def _array(x) -> np.ndarray:
    return torch.as_tensor(x, dtype=torch.float64).numpy()


def _correlation(fn, x, y) -> float:
    """``fn(x, y).statistic``; NaN below 3 points or where an input is constant."""
    x, y = _array(x), _array(y)
    if len(x) < 3:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return float(fn(x, y).statistic)


def pearson(x, y) -> float:
    return _correlation(stats.pearsonr, x, y)


def spearman(x, y) -> float:
    """Spearman's rank correlation, ties given their average rank."""
    return _correlation(stats.spearmanr, x, y)


def row_spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per row Spearman between two (R, C) tensors (ties broken by order); NaN where a row is constant."""
    ra = stats.rankdata(a.numpy(), method="ordinal", axis=1)
    rb = stats.rankdata(b.numpy(), method="ordinal", axis=1)
    r = torch.from_numpy(np.asarray(stats.pearsonr(ra, rb, axis=1).statistic, dtype=np.float64))

    def constant(t: torch.Tensor) -> torch.Tensor:
        return t.max(1).values - t.min(1).values <= 1e-15 * t.abs().max(1).values.clamp_min(1e-300)

    return torch.where(constant(a) | constant(b), torch.full_like(r, math.nan), r)


def top1_se(r: dict) -> float:
    """Binomial standard error of a metrics row's top-1 (percentage points): 100·sqrt(p(1 − p)/n_eval)."""
    p, n = r["top1"] / 100, r.get("n_eval") or 0
    return 100 * math.sqrt(p * (1 - p) / n) if n else math.nan


def paired_difference(a, b) -> tuple[float, float]:
    """Mean of ``a − b`` over the same images and its standard error ``sd(a − b)/√n`` (a paired comparison: two
    models' outcomes on one image are correlated, so this s.e. is far smaller than two independent ones)."""
    diff = _array(a) - _array(b)
    n = len(diff)
    if n < 2:
        return (float(diff.mean()) if n else math.nan), math.nan
    return float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(n))
