"""A certified lower bound on one row from Shor's SDP strengthened by the pair (McCormick) inequalities.

For flips ``x ∈ {0,1}^k`` (``qcr.py``: ``L(x) = f⁰ + cᵀx + xᵀQx``) every pair ``i < j`` satisfies

    x_i x_j ≥ 0,   x_i (1 − x_j) ≥ 0,   (1 − x_i) x_j ≥ 0,   (1 − x_i)(1 − x_j) ≥ 0.

In Shor's ±1 form (``s = 2x − 1``, homogenised by ``s_0 = 1``, ``Y ≈ ssᵀ``; ``bound.py``) these are the triangle
inequalities through the homogenising coordinate, ``σ_i Y_0i + σ_j Y_0j + σ_i σ_j Y_ij ≥ −1`` for the four sign
pairs ``σ ∈ {±1}²`` (``(1 + σ_i s_i)(1 + σ_j s_j) ≥ 0``). Shor's SDP ignores them; with them it is the doubly
non-negative relaxation's pair part, which on ViT-like rows closes a large share of Shor's gap (cvxpy on three
synthetic d = 64 rows: 6.1 → 2.4 %, 1.2 → 0.2 %, 1.3 → 0.0 %).

They enter by Lagrangian relaxation, as in BiqMac (Rendl, Rinaldi & Wiegele 2010): for multipliers ``μ ≥ 0`` (one
per pair and sign pattern)

    g(μ) = min { ⟨C − Σ_t μ_t A_t, Y⟩ : diag Y = 1, Y ⪰ 0 } − Σ_t μ_t  ≤  min over Shor's set with the cuts,

so every ``μ`` gives a bound, certified exactly as Shor's (``Σ y + n·λ_min(C' − diag y)`` at any ``y``, with a
margin for the eigenvalue error and the round-off of the sums). ``μ`` is fitted by projected subgradient steps of
Polyak's length towards the incumbent (``∂g/∂μ_t`` is minus the constraint's slack at the SDP's solution), the
mixing method warm-started between steps; the step length halves when five steps bring nothing. The bound returned
is the best seen, never below the ``μ = 0`` (plain Shor) bound of the same solve.

Cost: per step some mixing sweeps and one eigen-decomposition of a ``(k+1)²`` matrix — ~10 ms at k = 128, ~0.1 s at
k = 384, ~2.5 s at k = 1536 (one thread, loaded machine). ``bnb`` spends at most ``triangle_steps`` of them and
``triangle_seconds`` on each row its search leaves open, to tighten the certified gap it reports (as a search form
it bounded fewer nodes than it cost on Table 1's open d = 128 rows).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from roundlab.solvers.bound import MIXING_RTOL, pm1_form
from roundlab.solvers.qcr import RowQP

# σ_i, σ_j of the four products (1 + σ_i s_i)(1 + σ_j s_j) ≥ 0: x_i x_j, x_i(1 − x_j), (1 − x_i)x_j, (1 − x_i)(1 − x_j)
_SI = np.array([1.0, 1.0, -1.0, -1.0])
_SJ = np.array([1.0, -1.0, 1.0, -1.0])
_SIJ = _SI * _SJ

#: Relative round-off allowance per term summed into a certified value (× the number of terms, × magnitudes).
_EPS = 8 * np.finfo(float).eps


@dataclass
class TriangleBound:
    """Certified lower bounds on ``min L`` (same units as ``L``): ``shor`` at ``μ = 0``, ``bound`` the best seen
    (≥ ``shor``); ``steps`` taken; ``cuts`` multipliers left positive."""

    bound: float
    shor: float
    steps: int
    cuts: int


def shor_matrix(qp: RowQP) -> tuple[np.ndarray, float, float]:
    """``(C, K, scale)``: ``L(x)/scale = K + zᵀCz`` for ``z = (1, 2x − 1)`` (``bound.pm1_form``, one row)."""
    C, K, scale = pm1_form(torch.from_numpy(qp.Q)[None], torch.from_numpy(qp.c)[None],
                           torch.tensor([qp.f0], dtype=torch.float64))
    return C[0].numpy(), float(K[0]), float(scale[0])


def penalised(C: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """``C − Σ_t μ_t A_t`` for ``mu`` (4, k, k) upper-triangular (pair ``i < j``, sign pattern t)."""
    w = np.tensordot(_SIJ, mu, 1)
    a0 = np.tensordot(_SI, mu, 1).sum(1) + np.tensordot(_SJ, mu, 1).sum(0)
    Cp = C.copy()
    Cp[1:, 1:] -= (w + w.T) / 2
    Cp[0, 1:] -= a0 / 2
    Cp[1:, 0] -= a0 / 2
    return Cp


def slacks(Y: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Each cut's ``⟨A_t, Y⟩ + 1`` (negative: violated), (4, k, k), zero off the upper triangle."""
    y0, Yij = Y[0, 1:], Y[1:, 1:]
    return (_SI[:, None, None] * y0[None, :, None] + _SJ[:, None, None] * y0[None, None, :]
            + _SIJ[:, None, None] * Yij[None] + 1.0) * upper


def certified(Cp: np.ndarray, V: np.ndarray, K: float, mu_sum: float) -> float:
    """``K + Σ y + n·λ_min(C' − diag y) − Σ μ`` at ``y = diag(C' VVᵀ)`` minus round-off: a lower bound on
    ``g(μ) + K`` whatever ``V``."""
    n = Cp.shape[0]
    y = np.einsum("ij,ji->i", Cp, V @ V.T)
    ev = np.linalg.eigvalsh(Cp - np.diag(y))
    lam = float(ev[0]) - _EPS * n * float(np.abs(ev).max())             # eigenvalue error (backward stable)
    terms = abs(K) + float(np.abs(y).sum()) + n * abs(lam) + mu_sum
    return K + float(y.sum()) + n * lam - mu_sum - _EPS * n * terms


def triangle_bound(qp: RowQP, ub: float, steps: int = 100, sweeps: int = 40, first_sweeps: int = 300,
                   theta: float = 1.0, seed: int = 0, seconds: float | None = None) -> TriangleBound:
    """Fit ``μ`` for at most ``steps`` subgradient steps (module docstring) and, if given, about ``seconds`` of wall
    time (checked after each step; the plain Shor solve always runs); ``ub``: an upper bound on ``min L`` (the
    incumbent's value), the Polyak target."""
    from roundlab.solvers import mixing_kernel             # numba (optional) loads on first use

    k = qp.k
    C, K, scale = shor_matrix(qp)
    n = k + 1
    rank = int(math.ceil(math.sqrt(2 * n))) + 1
    V = np.random.default_rng(seed).standard_normal((1, n, rank))
    V /= np.linalg.norm(V, axis=2, keepdims=True)
    upper = np.triu(np.ones((k, k), dtype=bool), 1)
    mu = np.zeros((4, k, k))
    target = ub / scale
    shor = best = -math.inf
    since = taken = 0
    t0 = time.perf_counter()
    for taken in range(steps + 1):
        Cp = penalised(C, mu)
        mixing_kernel.sweep_rows(Cp[None].copy(), V, first_sweeps if taken == 0 else sweeps, MIXING_RTOL)
        val = certified(Cp, V[0], K, float(mu.sum()))
        if taken == 0:
            shor = val
        if not math.isfinite(best) or val > best + 1e-9 * abs(best):
            best, best_cuts, since = val, int((mu > 0).sum()), 0
        elif (since := since + 1) >= 5:
            theta, since = theta / 2, 0
        if taken == steps or (seconds is not None and time.perf_counter() - t0 >= seconds):
            break
        s = slacks(V[0] @ V[0].T, upper)
        g = np.where((mu > 0) | (s < 0), s, 0.0)            # the projected subgradient's support
        gg = float((g * g).sum())
        if gg <= 0.0 or target <= val:
            break
        mu = np.maximum(0.0, mu - theta * (target - val) / gg * g)
    return TriangleBound(best * scale, shor * scale, taken, best_cuts)
