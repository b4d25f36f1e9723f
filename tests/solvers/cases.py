"""Small rounding problems with known optima (brute force) for the solver tests.

Each case is ViT-like (correlated channels, per-channel offsets) and covers one hard feature: outlier columns
(heavy activation channels and large weight columns), clamped elements (a clipped grid: one candidate), a
dual-uniform row (per-element scale with two column sets), per-row M, and the samples objective.
"""

from __future__ import annotations

import functools

import torch

from roundlab.problem import RoundingProblem
from roundlab.solvers import get_solver
from roundlab.testing.synthetic import vit_like_samples

KINDS = ("outlier", "clamped", "dual", "perrow", "samples")
SEEDS = (0, 1, 2)


def make_problem(kind: str, seed: int, R: int = 4, d: int = 12, N: int = 64, bits: int = 4) -> RoundingProblem:
    g = torch.Generator().manual_seed(1000 * KINDS.index(kind) + seed)
    X = vit_like_samples(N, d, outliers=2 if kind != "clamped" else 1, outlier_scale=15.0, generator=g)
    w = torch.randn(R, d, generator=g, dtype=torch.float64) * 0.05
    L = 2 ** bits - 1
    if kind == "outlier":
        w[:, :2] *= 8.0                                   # outlier weight columns
    clip = 0.75 if kind == "clamped" else 1.0
    lo, hi = w.amin(1, keepdim=True) * clip, w.amax(1, keepdim=True) * clip
    scale = (hi - lo) / L
    zero = torch.round(-lo / scale)
    if kind == "dual":                                    # row 0: two column sets with their own grids
        cols = torch.zeros(d, dtype=torch.bool)
        cols[: d // 4] = True
        w[0, cols] *= 6.0
        scale = scale.expand(R, d).clone()
        zero = zero.expand(R, d).clone()
        for part in (cols, ~cols):
            lo_p, hi_p = w[0, part].min(), w[0, part].max()
            scale[0, part] = (hi_p - lo_p) / L
            zero[0, part] = torch.round(-lo_p / scale[0, part])
    if kind == "samples":
        return RoundingProblem.from_grid(w, scale, zero, bits, X=X)
    if kind == "perrow":
        Ms = torch.stack([(X[r::2].T @ X[r::2]) / X[r::2].shape[0] for r in range(R)])
        return RoundingProblem.from_grid(w, scale, zero, bits, M=Ms)
    return RoundingProblem.from_grid(w, scale, zero, bits, M=X.T @ X / N)


@functools.lru_cache(maxsize=None)
def case(kind: str, seed: int) -> RoundingProblem:
    return make_problem(kind, seed)


@functools.lru_cache(maxsize=None)
def optimum(kind: str, seed: int) -> torch.Tensor:
    """Brute-force per-row optimum (R,) of ``case(kind, seed)``."""
    return get_solver("brute")(case(kind, seed)).objective


ALL_CASES = [(k, s) for k in KINDS for s in SEEDS]
