"""The per-row MIQP models: row data around the warm start, and the linear PuLP formulations.

Formulation (per row, free elements only; clamped elements have one candidate). Centre at the warm start ``δ⁰`` and
let ``x_j ∈ {0,1}`` flip element j to its other candidate, ``Δ_j = other_j − δ⁰_j``. Divide by ``f⁰ = L(δ⁰)`` so
the objective is O(1) (unscaled, CBC called a point 0.8% above the optimum "Optimal"; SOLVERS.md) and the warm
start scores exactly 1:

* ``objective="proxy"``: ``L/f⁰ = 1 + Σ_j c_j x_j + Σ_{i<j} 2Q_ij x_i x_j`` with ``c_j = (Δ_j g⁰_j + Δ_j² M_jj)/f⁰``,
  ``g⁰ = 2Mδ⁰``, ``Q_ij = Δ_i Δ_j M_ij / f⁰``. PuLP is linear-only, so the products are linearised exactly:
  ``linearization="fortet"`` — one continuous ``y_ij ∈ [0,1]`` per pair with only the McCormick/Fortet rows its
  sign needs (``y ≥ x_i + x_j − 1`` if ``Q_ij > 0``; ``y ≤ x_i, y ≤ x_j`` if ``Q_ij < 0``); ``"glover"`` — one
  ``z_i = x_i Σ_{j>i} 2Q_ij x_j`` per element with 2 rows each (compact, weaker relaxation); ``"auto"`` — each
  backend's faster one up to ``fortet_max_d`` free elements (measured on ViT-like rows, d = 20–32: glover for CBC
  and HiGHS, fortet for SCIP), glover above (fortet's d(d−1)/2 variables make PuLP's model building the bottleneck
  at large d).
* ``objective="samples"`` (the paper's "MIQP w/o proxy"): the loss built from the N samples, ``(1/N)Σ_n e_n²`` with
  a continuous ``e_n = (δ⁰ + Δx)·x̄_n`` per sample; ``Σ e_n² = Σ_n a_n e_n + Σ_j x_j r_j`` (``a_n = δ⁰·x̄_n``,
  ``r_j = Σ_n A_nj e_n``) and ``x_j r_j`` is linearised exactly with Glover's bounds. The problem must carry ``X``.

The native backends (cvxpy-scip, gurobi) take :class:`RowData`'s quadratic directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class RowData:
    """One row's scaled model: flips ``x`` from the warm start; the warm start scores 1."""

    k: int
    c: np.ndarray                    # (k,) linear coefficients incl. the diagonal (proxy)
    Q: np.ndarray                    # (k, k) Δ_i Δ_j M_ij / f⁰, with its diagonal (PSD)
    a: np.ndarray | None = None      # (N,) samples: δ⁰·x̄_n / sqrt(N f⁰)
    A: np.ndarray | None = None      # (N, k) samples: Δ_j x̄_nj / sqrt(N f⁰)

    def value(self, x: np.ndarray, objective: str) -> float:
        """``L/f⁰`` at flips ``x`` (0/1), computed directly (not from a backend's auxiliary variables)."""
        if objective == "samples":
            e = self.a + self.A @ x
            return float(e @ e)
        return float(1.0 + self.c_lin @ x + x @ self.Q @ x)

    @property
    def c_lin(self) -> np.ndarray:
        """Linear part when the quadratic keeps its diagonal (x_j² = x_j): ``c − diag(Q)``."""
        return self.c - np.diag(self.Q)


def row_data(problem, r: int, delta0: torch.Tensor, objective: str) -> tuple[RowData | None, np.ndarray, float]:
    """Scaled model of row ``r`` around ``delta0`` (R, d); returns (data or None if nothing to solve, free idx, f⁰)."""
    d0 = delta0[r].cpu().numpy()
    other = problem.flipped(delta0)[r].cpu().numpy()
    D = other - d0
    F = np.nonzero(D != 0)[0]
    Mr = (problem.M if problem.shared else problem.M[r]).cpu().numpy()
    f0 = float(d0 @ Mr @ d0)
    if F.size == 0 or f0 <= 0:
        return None, F, f0
    DF = D[F]
    g0 = 2 * Mr[F] @ d0
    Q = DF[:, None] * Mr[np.ix_(F, F)] * DF[None, :] / f0
    c = (DF * g0 + DF * DF * np.diag(Mr)[F]) / f0
    data = RowData(k=F.size, c=c, Q=(Q + Q.T) / 2)
    if objective == "samples":
        X = (problem.X if problem.X.dim() == 2 else problem.X[r]).cpu().numpy()
        s = np.sqrt(X.shape[0] * f0)
        data.a = X @ d0 / s
        data.A = X[:, F] * DF[None, :] / s
    return data, F, f0


# --------------------------------------------------------------------------------------------------- PuLP models
def pulp_model(data: RowData, objective: str, linearization: str):
    """A PuLP model whose objective is ``L/f⁰ − offset``; returns (model, x vars, offset).

    Every variable starts at the warm start (``x = 0``), for the backends that take a MIP start."""
    import pulp

    lp = pulp.LpProblem("rounding", pulp.LpMinimize)
    var = _variable_factory(lp)
    x = [var(f"x{j}", cat=pulp.LpBinary) for j in range(data.k)]
    for v in x:
        v.setInitialValue(0)
    if objective == "proxy":
        offset = 1.0
        terms = [(x[j], float(data.c[j])) for j in range(data.k) if data.c[j] != 0]
        products = _fortet if linearization == "fortet" else _glover
        terms += products(lp, var, x, data.Q)
    else:
        offset = 0.0
        terms = _samples(lp, var, x, data.a, data.A)
    lp += pulp.LpAffineExpression(terms)
    return lp, x, offset


def _variable_factory(lp):
    import pulp

    if hasattr(lp, "add_variable"):         # PuLP ≥ 3.3: variables belong to the model
        return lp.add_variable

    def var(name, lowBound=None, upBound=None, cat="Continuous"):
        return pulp.LpVariable(name, lowBound=lowBound, upBound=upBound, cat=cat)
    return var


def _fortet(lp, var, x, Q) -> list:
    """``Σ_{i<j} 2Q_ij x_i x_j`` as ``Σ 2Q_ij y_ij`` with the one-sided Fortet rows each sign needs."""
    iu, ju = np.triu_indices(len(x), 1)
    q = 2 * Q[iu, ju]
    terms = []
    for i, j, qij in zip(iu.tolist(), ju.tolist(), q.tolist()):
        if qij == 0:
            continue
        y = var(f"y{i}_{j}", lowBound=0, upBound=1)
        y.setInitialValue(0)
        if qij > 0:
            lp += y >= x[i] + x[j] - 1
        else:
            lp += y <= x[i]
            lp += y <= x[j]
        terms.append((y, qij))
    return terms


def _glover(lp, var, x, Q) -> list:
    """``Σ_{i<j} 2Q_ij x_i x_j`` as ``Σ z_i``, ``z_i = x_i · Σ_{j>i} 2Q_ij x_j`` minimised onto its lower envelope."""
    import pulp

    k = len(x)
    terms = []
    for i in range(k - 1):
        q = 2 * Q[i, i + 1:]
        lo_i, hi_i = float(np.minimum(q, 0).sum()), float(np.maximum(q, 0).sum())
        if lo_i == 0 and hi_i == 0:
            continue
        z = var(f"z{i}")
        z.setInitialValue(0)
        lp += z >= lo_i * x[i]
        lp += z >= pulp.LpAffineExpression([(x[i + 1 + t], float(q[t])) for t in range(k - i - 1)
                                            if q[t] != 0]) - hi_i * (1 - x[i])
        terms.append((z, 1.0))
    return terms


def _samples(lp, var, x, a, A) -> list:
    """``Σ e_n² = Σ a_n e_n + Σ_j x_j r_j`` with ``r_j = Σ_n A_nj e_n`` and ``x_j r_j`` linearised (Glover)."""
    import pulp

    k, N = len(x), a.shape[0]
    e = [var(f"e{n}") for n in range(N)]
    for n in range(N):
        lp += pulp.LpAffineExpression([(e[n], 1.0)] + [(x[j], -float(A[n, j])) for j in range(k)
                                                      if A[n, j] != 0]) == float(a[n])
        e[n].setInitialValue(float(a[n]))
    G = A.T @ A
    base = A.T @ a
    terms = []
    for j in range(k):
        lo_j = float(base[j] + np.minimum(G[j], 0).sum())
        hi_j = float(base[j] + np.maximum(G[j], 0).sum())
        r = var(f"r{j}")
        r.setInitialValue(float(base[j]))
        lp += pulp.LpAffineExpression([(r, 1.0)] + [(e[n], -float(A[n, j])) for n in range(N)
                                                   if A[n, j] != 0]) == 0
        z = var(f"z{j}")
        z.setInitialValue(0)
        lp += z >= lo_j * x[j]
        lp += z >= r - hi_j * (1 - x[j])
        terms.append((z, 1.0))
    terms += [(e[n], float(a[n])) for n in range(N) if a[n] != 0]
    return terms
