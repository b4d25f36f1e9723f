"""Convex forms of one row's objective for branch and bound (the quadratic convex reformulation, QCR).

Around a reference point ``δ⁰`` (the warm start), flips ``x ∈ {0,1}^k`` of the k free elements give

    L(x) = f⁰ + cᵀx + xᵀQx,    Q = D_Δ M_FF D_Δ,   c = Δ ∘ 2(Mδ⁰)_F,   f⁰ = δ⁰ M δ⁰.

Because ``x_j² = x_j`` on binaries, for *any* multipliers ``u``, ``L(x) = f⁰ + (c + u)ᵀx + xᵀ(Q − diag u)x``. If
``A = Q − diag u`` is positive definite this is a convex quadratic; completing the square,

    L(x) = const + (x − ctr)ᵀ A (x − ctr),    ctr = −½ A⁻¹(c + u),   const = f⁰ − ¼ (c + u)ᵀ A⁻¹ (c + u),

and with ``A = RᵀR`` in the enumeration order, the terms of ``‖R(x − ctr)‖²`` that only involve already-fixed
coordinates bound every completion from below (``bnb_kernel``). ``u ≈ 0`` gives the classical partial-sum
(closest-vector) bound; Shor's multipliers make the root bound Shor's SDP value and every deeper bound the
QCR bound of the remaining subproblem. Each form is checked: its value at a few binary points must match ``L``
computed directly, and the mismatch (with a floor from the magnitudes involved) becomes its round-off ``slack``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RowQP:
    """One row in flip space: ``L(x) = f0 + cᵀx + xᵀQx`` over the free elements ``F`` (indices into the row)."""

    F: np.ndarray
    Q: np.ndarray
    c: np.ndarray
    f0: float

    @property
    def k(self) -> int:
        return self.F.size

    def value(self, x: np.ndarray) -> np.ndarray:
        """``L`` at flips ``x`` ((k,) or (n, k)), computed directly."""
        x = np.atleast_2d(x).astype(float)
        return self.f0 + x @ self.c + np.einsum("ni,ij,nj->n", x, self.Q, x)


@dataclass
class Forms:
    """K convex forms in the enumeration order (see the module docstring); arrays are what the kernel reads."""

    R: np.ndarray          # (K, k, k) upper triangular
    ctr: np.ndarray        # (K, k)
    const: np.ndarray      # (K,)
    slack: np.ndarray      # (K,) round-off allowance, subtracted from every bound of that form
    names: list[str]

    @property
    def root_bound(self) -> float:
        return float(np.max(self.const - self.slack))


def row_qp(M: np.ndarray, delta0: np.ndarray, other: np.ndarray) -> RowQP:
    """The flip-space data of one row around ``delta0`` (``other`` = each element's other candidate)."""
    D = other - delta0
    F = np.nonzero(D != 0)[0]
    DF = D[F]
    Q = DF[:, None] * M[np.ix_(F, F)] * DF[None, :]
    c = DF * 2 * (M[F] @ delta0)
    return RowQP(F, (Q + Q.T) / 2, c, float(delta0 @ M @ delta0))


def row_qps(problem, delta) -> list[RowQP | None]:
    """Each row of a ``RoundingProblem`` in flip space around ``delta`` (R, d); None where there is nothing to
    choose or the value is already 0."""
    M_np = problem.M.cpu().numpy()
    d_np, other_np = delta.cpu().numpy(), problem.flipped(delta).cpu().numpy()
    qps = [row_qp(M_np if problem.shared else M_np[r], d_np[r], other_np[r]) for r in range(problem.rows)]
    return [qp if qp.k > 0 and qp.f0 > 0 else None for qp in qps]


def vblast_order(A: np.ndarray) -> np.ndarray:
    """An enumeration order for ``A = RᵀR``: the coordinate fixed first (placed last) is the one best determined
    by the others (largest conditional precision ``1/(A⁻¹)_jj``), then recursively (V-BLAST / SQRD ordering)."""
    k = A.shape[0]
    P = np.linalg.inv(A)
    left = list(range(k))
    order = np.empty(k, dtype=np.int64)
    for pos in range(k - 1, -1, -1):
        sub = P[np.ix_(left, left)]
        i = int(np.argmin(np.diag(sub)))
        j = left[i]
        order[pos] = j
        col = P[:, j].copy()
        P = P - np.outer(col, col) / col[j]
        left.pop(i)
    return order


def definite_multipliers(Q: np.ndarray, u: np.ndarray, rel: float, inner: np.ndarray | None = None) -> np.ndarray:
    """``u`` lowered just enough that ``Q − diag u`` is positive definite (``λ_min ≥ rel·‖Q‖``).

    With ``inner`` (bool mask), the multipliers were fitted to that sub-block: it is lowered by its own deficit
    only, and the remaining coordinates take the whole Schur-complement deficit — their multipliers do not matter
    once they are fixed, which is where such a form is used."""
    u = np.asarray(u, dtype=float).copy()
    floor = rel * max(float(np.abs(np.diag(Q)).max()), 1e-300)

    def lift(A):                        # how far to lower u so that A − (that)·I clears the floor
        ev = np.linalg.eigvalsh((A + A.T) / 2)
        return max(0.0, floor + rel * abs(ev[-1]) - ev[0])

    if inner is None or inner.all() or not inner.any():
        return u - lift(Q - np.diag(u))
    S, F = np.nonzero(inner)[0], np.nonzero(~inner)[0]
    u[S] -= lift(Q[np.ix_(S, S)] - np.diag(u[S]))
    A_SS = Q[np.ix_(S, S)] - np.diag(u[S])
    schur = Q[np.ix_(F, F)] - Q[np.ix_(F, S)] @ np.linalg.solve(A_SS, Q[np.ix_(S, F)])
    u[F] -= lift(schur - np.diag(u[F]))
    return u


def convex_form(qp: RowQP, u: np.ndarray, order: np.ndarray, inner: np.ndarray | None = None,
                rel: float = 1e-9) -> tuple | None:
    """``(R, ctr, const)`` of ``L`` with multipliers ``u`` in ``order``, or None if numerically unusable."""
    u = definite_multipliers(qp.Q, u, rel, inner)
    A = qp.Q - np.diag(u)
    b = qp.c + u
    try:
        L = np.linalg.cholesky(A[np.ix_(order, order)])
    except np.linalg.LinAlgError:
        return None
    bp = b[order]
    z = np.linalg.solve(L, bp)                      # A⁻¹b = L⁻ᵀ z
    ctr = -0.5 * np.linalg.solve(L.T, z)
    const = qp.f0 - 0.25 * float(z @ z)
    return L.T.copy(), ctr, const


def build_forms(qp: RowQP, multipliers: dict[str, tuple], order: np.ndarray, *, rel: float = 1e-6,
                rel_inner: float = 1e-4,
                checks: int = 16, seed: int = 0, max_mismatch: float = 1e-7) -> Forms:
    """Every usable convex form of ``qp`` (``multipliers``: name → (u (k,), inner mask or None), in ``qp``'s own
    coordinates; the first should be the plain ``u = 0`` form, whose leaf values the kernel reports)."""
    rng = np.random.default_rng(seed)
    k = qp.k
    pts = (rng.random((checks, k)) < 0.5).astype(float)
    pts[0] = 0.0
    pts[1] = 1.0
    truth = qp.value(pts)
    scale = max(qp.f0, float(np.abs(truth).max()), 1e-300)
    Rs, ctrs, consts, slacks, names = [], [], [], [], []
    for name, (u, inner) in multipliers.items():
        form = convex_form(qp, u, order, inner, rel if inner is None else rel_inner)
        if form is None:
            continue
        R, ctr, const = form
        resid = (pts[:, order] - ctr) @ R.T                       # (n, k): R(x − ctr) row-wise
        vals = const + (resid * resid).sum(1)
        mismatch = float(np.abs(vals - truth).max())
        if mismatch > max_mismatch * scale:
            continue                                               # too ill-conditioned to be trusted
        # Round-off of const + Σ_l a_l², a_l = R_l·(x − ctr): |δa_l| ≤ (k+1)·eps·s_l with s_l = Σ_j |R_lj||x_j − ctr_j|,
        # so the sum is off by ≤ 2(k+1)·eps·‖a‖·‖s‖ + (k+1)·eps·|const|, where ‖a‖² ≤ f⁰ − const wherever a node
        # can still beat the incumbent. Ten times that, or ten times the mismatch seen at the check points.
        s_l = np.abs(R) @ np.maximum(np.abs(ctr), np.abs(1 - ctr))
        eps = np.finfo(float).eps * (k + 1)
        bound = 2 * eps * np.sqrt((scale + abs(const)) * float(s_l @ s_l)) + eps * (abs(const) + scale)
        slack = 10 * max(mismatch, bound)
        Rs.append(R)
        ctrs.append(ctr)
        consts.append(const)
        slacks.append(slack)
        names.append(name)
    if not Rs:
        raise ValueError("no convex form of this row could be built")
    return Forms(np.stack(Rs), np.stack(ctrs), np.asarray(consts), np.asarray(slacks), names)
