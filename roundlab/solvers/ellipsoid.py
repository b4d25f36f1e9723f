"""Ellipsoid bounds on what the free coordinates of a ``bnb`` node can still add (Buchheim, Hübner & Schöbel,
"Ellipsoid bounds for convex quadratic integer programming", SIAM J. Optim. 2015, specialised to {0,1}).

With the levels ``l … k−1`` of a convex form ``L = const + ‖R(x − ctr)‖²`` fixed (``A = RᵀR``, enumeration order),
what the free levels ``0 … l−1`` add is exactly ``(x_s − t)ᵀ A_s (x_s − t)``: ``A_s = A[:l, :l]``, ``t`` their
minimiser given the fixed ones. The partial-sum bound counts that as 0. For any diagonal ``D ≥ 0`` with
``A_s − diag D ⪰ 0`` it is at least ``Σ_i D_i (x_i − t_i)² ≥ Σ_i D_i · dist(t_i, {0,1})²`` on binaries — positive
whenever the minimiser sits between a free coordinate's two candidates, which is where the partial sum is weakest.

Per level ``l``: ``D[l, :l] = μ_l · diag(A_s)`` with ``μ_l = λ_min`` of ``A_s`` scaled to unit diagonal (Jacobi
scaling; a λ_min certified by a margin), computed on a grid of at most ``levels`` block sizes and reused below
each (a leading block of ``A_s − diag D`` is PSD too). Fixing ``x_l = v`` moves the free minimiser by
``G[l, :l]·(v − t_l)`` with ``G[l, i] = (R⁻¹)[i, l] · R[l, l]`` (the leading blocks of ``R⁻¹`` invert those of R), so
the kernel keeps ``t`` per level at O(l) per node. Round-off: ``t`` from that recursion is compared, at a few
binary paths, with ``t`` solved directly; ten times the worst difference (with a floor) is the allowance ``δ``,
each ``dist`` is capped at 1 and every level's sum is lowered by ``Σ_i D[l, i] (2δ + δ²)``. A row whose ``δ`` exceeds
``max_err`` gets no ellipsoid (D = 0).

Measured on Table 1's d = 128 fc2 rows with the plain form carrying it (the kernel's other forms unchanged): 5–19×
fewer nodes, half the nodes per second; rows that did not close in 60 M nodes closed in 10 M.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Ellipsoid:
    """Per-level data of one convex form (``k`` = its free coordinates, enumeration order)."""

    G: np.ndarray          # (k, k): G[l, i] (i < l) = how fixing x_l moves the free minimiser t_i, per unit
    D: np.ndarray          # (k, k): D[l, i] (i < l) ≥ 0 with A[:l, :l] − diag D[l, :l] ⪰ 0
    margin: np.ndarray     # (k,): round-off allowance subtracted from level l's sum
    delta: float           # the allowance on each t_i

    @classmethod
    def off(cls, k: int) -> "Ellipsoid":
        """No ellipsoid (every D = 0): the kernel's bound is the partial sum alone."""
        z = np.zeros((k, k))
        return cls(z, z.copy(), np.zeros(k), 0.0)

    @property
    def on(self) -> bool:
        return bool(self.D.any())


def jacobi_diagonals(A: np.ndarray, levels: int) -> np.ndarray:
    """``D[l, :l] = μ · diag(A)[:l]`` valid for every leading block ``A[:l, :l]`` (see the module docstring)."""
    k = A.shape[0]
    eps = np.finfo(float).eps
    diag = np.sqrt(np.clip(np.diag(A), 1e-300, None))
    C = A / diag[:, None] / diag[None, :]
    grid = np.unique(np.linspace(1, k, num=min(levels, k)).round().astype(int))
    D = np.zeros((k, k))
    below = 0
    for g in grid:                       # block sizes below+1 … g use the block of size g
        ev = np.linalg.eigvalsh(C[:g, :g])
        mu = ev[0] * (1 - 1e-6) - 10 * g * eps * max(abs(ev[-1]), 1.0)
        if mu > 0:
            for l in range(below + 1, g + 1):
                if l < k:
                    D[l, :l] = mu * diag[:l] ** 2
        below = g
    return D


def ellipsoid(R: np.ndarray, ctr: np.ndarray, *, levels: int = 64, checks: int = 8, max_err: float = 1e-3,
              seed: int = 0) -> Ellipsoid:
    """The ellipsoid data of the form ``‖R(x − ctr)‖²`` (R upper triangular, enumeration order)."""
    k = R.shape[0]
    if k < 2:
        return Ellipsoid.off(k)
    Rinv = np.linalg.inv(R)
    G = np.tril((Rinv * np.diag(R)[None, :]).T, -1)             # G[l, i] = Rinv[i, l] R[l, l], i < l
    delta = _recursion_error(R, Rinv, G, ctr, checks, seed)
    if not np.isfinite(delta) or delta > max_err:
        return Ellipsoid.off(k)
    D = jacobi_diagonals(R.T @ R, levels)
    margin = D.sum(1) * (2 * delta + delta * delta)
    return Ellipsoid(G, D, margin, delta)


def _recursion_error(R: np.ndarray, Rinv: np.ndarray, G: np.ndarray, ctr: np.ndarray, checks: int,
                     seed: int) -> float:
    """Ten times the largest difference between the kernel's recursion for ``t`` and ``t`` solved directly, over
    ``checks`` random binary paths at up to 8 levels each (with a floor of ``4k·eps·max(1, |t|)``)."""
    k = R.shape[0]
    eps = np.finfo(float).eps
    rng = np.random.default_rng(seed)
    at = sorted({int(v) for v in np.linspace(1, k - 1, num=min(8, k - 1)).round()})
    worst, scale = 0.0, 1.0
    for _ in range(checks):
        x = (rng.random(k) < 0.5).astype(float)
        t = ctr.astype(float).copy()
        for l in range(k - 1, 0, -1):                            # the kernel's update, in its order
            t[:l] = t[:l] + G[l, :l] * (x[l] - t[l])
            if l in at:
                e = R[:l, l:] @ (x[l:] - ctr[l:])
                direct = ctr[:l] - Rinv[:l, :l] @ e
                worst = max(worst, float(np.abs(t[:l] - direct).max()))
                scale = max(scale, float(np.abs(direct).max()))
    return 10 * max(worst, 4 * k * eps * scale)
