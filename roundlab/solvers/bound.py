"""Certified lower bounds on each row's optimum, so an analysis can say how far a solver is from it.

Write the row around its round-to-nearest point ``δ⁰`` with flips ``x ∈ {0,1}^d`` (``Δ_j`` = other − ``δ⁰_j``, 0
where clamped): ``L = f⁰ + cᵀx + xᵀQx`` with ``c = Δ∘2Mδ⁰``, ``Q = D_Δ M D_Δ``. For binaries ``x_j² = x_j``, so for
*any* ``u ∈ R^d``

    L(x) = φ_u(x) = f⁰ + (c + u)ᵀx + xᵀ(Q − diag u)x     on {0,1}^d,

and if ``A = Q − diag u ⪰ 0`` the box relaxation ``min_{x∈[0,1]^d} φ_u`` is a convex QP whose value bounds the
optimum from below (the quadratic convex reformulation of Billionnet et al.; at the best ``u`` it is at least
Shor's SDP bound). The value is *certified*, not trusted: at any box point ``x̂`` convexity gives
``min φ_u ≥ φ_u(x̂) + Σ_j min(∇_j(1 − x̂_j), −∇_j x̂_j)`` (the Frank–Wolfe bound), which is what is returned after a
projected-gradient (FISTA) solve, minus ``safety·f⁰`` for float64 round-off. ``A ⪰ 0`` is checked with an
eigen-decomposition and enforced by shifting ``u`` down by the deficit plus a margin.

Methods (``lower_bound(problem, method=...)``):

* ``"eig"`` — ``u_j = λ_min(M)·Δ_j²`` (``M − λ_min I ⪰ 0``): one eigen-decomposition of a shared ``M``; any d.
* ``"jacobi"`` — ``u_j = α M_jj Δ_j²`` with ``α = λ_min(diag(M)^{-½} M diag(M)^{-½})``: better when the diagonal
  is very uneven (outlier channels); any d.
* ``"sdp"`` — ``u`` from Shor's SDP dual solved per row with cvxpy (Clarabel, else SCS), then certified as above.
  Accurate but slow (measured ~14 s per row at d = 64 on a loaded 2-core machine): use ``"mixing"``.
* ``"mixing"`` — the same Shor SDP, solved batched over rows (any device) in its ±1 form
  ``min ⟨C, Y⟩, diag Y = 1, Y ⪰ 0`` by the mixing method (Wang, Chang & Kolter 2017: Burer–Monteiro factors
  ``Y = VVᵀ`` of rank ⌈√(2n)⌉+1, exact block-coordinate updates ``v_i ← −normalize(Σ_{j≠i} C_ij v_j)``). Its bound
  is certified spectrally from the dual estimate ``y_i = (CY)_ii``: for ``z ∈ {±1}^n``,
  ``zᵀCz ≥ Σ_i y_i + n·λ_min(C − diag y)``, with a margin for the eigenvalue error. Matches cvxpy's Shor value to
  4 digits at d = 64 in < 1 s; at d ≥ 192 the sweeps may not converge, and the bound is then looser but still valid.
* ``"triangle"`` — Shor's SDP with the pair (McCormick) cuts by Lagrangian relaxation (``triangle.py``), per row on
  CPU, ``triangle_steps`` subgradient steps towards nearest's value: tighter than ``mixing`` where Shor's gap is
  large (Table 1's open d = 128 rows: ~52 → ~37 % gap to the incumbent), ~10 ms a step at d = 128, ~0.1 s at 384.
* ``"auto"`` — the best of eig, jacobi and mixing (plus sdp when ``d ≤ sdp_max_d``, default 0: off).
* ``"zero"`` — 0 (the trivial bound; note the plain box relaxation of δ is also 0, since ``lo ≤ 0 ≤ hi``).

Every bound is valid (never above the optimum) whatever the solver accuracy; a weak ``u`` only makes it loose.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from roundlab.errors import RoundlabError
from roundlab.registry import Registry
from roundlab.validate import check_int, check_known
from roundlab.problem import F64, RoundingProblem



@dataclass
class BoundResult:
    """Per-row certified lower bounds (R,) float64 on CPU, the method used per row and the wall time."""

    bound: torch.Tensor
    method: str
    time: float
    info: dict = field(default_factory=dict)


class _Rows:
    """The x-space data of every row around nearest: Δ (R, d), c (R, d), f⁰ (R,)."""

    def __init__(self, problem: RoundingProblem):
        self.p = problem
        d0 = problem.nearest()
        self.D = problem.flipped(d0) - d0
        self.c = self.D * 2 * problem.matvec(d0)
        self.f0 = problem.objective(d0)
        self.Q_diag = self.D * self.D * problem.diag.expand_as(self.D)


def _certify(rows: _Rows, u: torch.Tensor, Avec, lmax: torch.Tensor, iters: int, tol: float,
             safety: float) -> torch.Tensor:
    """max over FISTA iterates of the Frank–Wolfe bound of ``min_{[0,1]^d} φ_u`` (A ⪰ 0 assumed, ``lmax`` ≥ λ_max)."""
    f0 = rows.f0
    lin = rows.c + u
    active = rows.D != 0
    step = 1.0 / (2 * lmax.clamp_min(1e-300))[:, None]
    x = torch.where(active, torch.full_like(u, 0.5), torch.zeros_like(u))
    y, x_prev, t = x.clone(), x.clone(), 1.0
    best = torch.full_like(f0, -torch.inf)

    def fw(z):
        Az = Avec(z)
        grad = lin + 2 * Az
        phi = f0 + (lin * z).sum(1) + (z * Az).sum(1)
        lb = phi + torch.minimum(grad * (1 - z), -grad * z).where(active, torch.zeros_like(z)).sum(1)
        return phi, lb

    for it in range(iters):
        grad = lin + 2 * Avec(y)
        x = (y - step * grad).clamp(0, 1).where(active, torch.zeros_like(y))
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        y = x + ((t - 1) / t_next) * (x - x_prev)
        x_prev, t = x, t_next
        if it % 20 == 19 or it == iters - 1:
            phi, lb = fw(x)
            best = torch.maximum(best, lb)
            if bool(((phi - best) <= tol * f0.clamp_min(1e-300)).all()):
                break
    bound = best - safety * f0
    return torch.minimum(bound, f0).clamp_min(0.0)          # 0 ≤ optimum ≤ f⁰ always


def _diag_bound(rows: _Rows, Dm: torch.Tensor, iters: int, tol: float, safety: float) -> torch.Tensor:
    """Bound for a δ-space diagonal ``Dm`` ((d,) shared or (R, d)) with ``M − diag(Dm) ⪰ 0`` verified here."""
    p = rows.p
    M = p.M
    Mm = M - torch.diag_embed(Dm)
    ev = torch.linalg.eigvalsh(Mm)                                  # (d,) or (R, d)
    scale = ev.abs().amax(-1).clamp_min(1e-300)
    deficit = (1e-11 * scale - ev[..., 0]).clamp_min(0.0)           # enforce λ_min ≥ margin
    Dm = Dm - deficit[..., None]
    Mm = M - torch.diag_embed(Dm)
    lmax_M = ev[..., -1] + deficit
    u = rows.D * rows.D * Dm
    if p.shared:
        Avec = lambda x: rows.D * ((rows.D * x) @ Mm)                                  # noqa: E731
    else:
        Avec = lambda x: rows.D * torch.bmm(Mm, (rows.D * x).unsqueeze(-1)).squeeze(-1)  # noqa: E731
    lmax = (rows.D * rows.D).amax(1) * lmax_M
    return _certify(rows, u, Avec, lmax, iters, tol, safety)


def _explicit_bound(rows: _Rows, u: torch.Tensor, iters: int, tol: float, safety: float) -> torch.Tensor:
    """Bound for per-row ``u`` with explicit matrices ``A_r = D_Δ M D_Δ − diag u_r`` (moderate d)."""
    p = rows.p
    M = p.M if not p.shared else p.M.expand(p.rows, p.d, p.d)
    A = rows.D[:, :, None] * M * rows.D[:, None, :] - torch.diag_embed(u)
    A = (A + A.transpose(1, 2)) / 2
    ev = torch.linalg.eigvalsh(A)
    scale = ev.abs().amax(-1).clamp_min(1e-300)
    deficit = (1e-11 * scale - ev[:, 0]).clamp_min(0.0)
    active = (rows.D != 0).to(F64)
    u = u - deficit[:, None] * active                   # shift on active coordinates only
    A = A + torch.diag_embed(deficit[:, None] * active)
    lmax = ev[:, -1] + deficit
    Avec = lambda x: torch.bmm(A, x.unsqueeze(-1)).squeeze(-1)  # noqa: E731
    return _certify(rows, u, Avec, lmax, iters, tol, safety)


def _sdp_u(rows: _Rows, solver: str | None) -> torch.Tensor:
    """Per row, the multipliers ``u`` of Shor's SDP dual (scaled by 1/f⁰), solved with cvxpy."""
    import cvxpy as cp

    p = rows.p
    R, d = p.shape
    Qp = cp.Parameter((d, d), symmetric=True)
    cpar = cp.Parameter(d)
    gamma = cp.Variable()
    u = cp.Variable(d)
    Z = cp.Variable((d + 1, d + 1), PSD=True)
    cons = [Z[0, 0] == 1 - gamma, Z[0, 1:] == (cpar + u) / 2, Z[1:, 1:] == Qp - cp.diag(u)]
    prob = cp.Problem(cp.Maximize(gamma), cons)
    names = [solver] if solver else [s for s in ("CLARABEL", "SCS") if s in cp.installed_solvers()]
    if not names:
        raise RoundlabError("the sdp bound needs an SDP solver in cvxpy (CLARABEL or SCS)")
    out = torch.zeros(R, d, dtype=F64)
    Dc, cc, f0 = rows.D.cpu(), rows.c.cpu(), rows.f0.cpu()
    Mc = p.M.cpu()
    for r in range(R):
        if float(f0[r]) <= 0 or not bool((Dc[r] != 0).any()):
            continue
        Mr = Mc if p.shared else Mc[r]
        Q = Dc[r][:, None] * Mr * Dc[r][None, :] / f0[r]
        Qp.value = ((Q + Q.T) / 2).numpy()
        cpar.value = (cc[r] / f0[r]).numpy()
        for name in names:
            try:
                prob.solve(solver=name)
            except cp.error.SolverError:
                continue
            if u.value is not None:
                out[r] = torch.as_tensor(u.value, dtype=F64) * f0[r]
                break
    return out.to(p.device)


@dataclass
class _Shor:
    """Shor's SDP in the ±1 form ``min ⟨C, Y⟩`` solved by the mixing method: ``C`` (R, n, n), the dual estimate
    ``y`` (R, n), the constant ``K`` and the per-row ``scale`` the x-space data was divided by."""

    C: torch.Tensor
    y: torch.Tensor
    K: torch.Tensor
    scale: torch.Tensor


#: A row's sweeps stop once one changes its SDP objective by at most this, relative.
MIXING_RTOL = 1e-9


def _sweep_rows_torch(C: torch.Tensor, V: torch.Tensor, sweeps: int) -> None:
    """``mixing_kernel.sweep_rows`` batched in torch (any device; the path without numba): the same updates, each
    row frozen once its own objective settles (how long a row runs does not depend on the rows beside it)."""
    n = C.shape[-1]
    CV = torch.bmm(C, V)
    diag = torch.diagonal(C, dim1=1, dim2=2)
    active = torch.ones(C.shape[0], dtype=torch.bool, device=C.device)
    prev = None
    for _ in range(sweeps):
        for i in range(n):
            gi = CV[:, i, :] - diag[:, i, None] * V[:, i, :]
            nrm = gi.norm(dim=1, keepdim=True)
            new = torch.where((nrm > 0) & active[:, None], -gi / nrm.clamp_min(1e-300), V[:, i, :])
            dv = new - V[:, i, :]
            V[:, i, :] = new
            CV += C[:, :, i, None] * dv[:, None, :]
        primal = (CV * V).sum((1, 2))
        if prev is not None:
            active &= (prev - primal).abs() > MIXING_RTOL * primal.abs().clamp_min(1e-12)
            if not bool(active.any()):
                break
        prev = primal


def pm1_form(Q: torch.Tensor, c: torch.Tensor, f0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shor's ±1 form of rows ``L(x) = f⁰ + cᵀx + xᵀQx`` ((R, k, k), (R, k), (R,)): ``(C, K, scale)`` with
    ``L(x)/scale = K + zᵀCz`` for ``z = (1, 2x − 1)``, ``C`` (R, k+1, k+1); ``scale = f⁰`` (1 where f⁰ ≤ 0)."""
    R, k = c.shape
    scale = torch.where(f0 > 0, f0, torch.ones_like(f0))
    Q = (Q + Q.transpose(1, 2)) / (2 * scale[:, None, None])   # the part xᵀQx reads; L/f⁰ = 1 + cᵀx + xᵀQx
    c = c / scale[:, None]
    Q1 = Q.sum(2)
    b = c / 2 + Q1 / 2                                                      # x = (1 + s)/2, z = (1, s)
    K = f0 / scale + c.sum(1) / 2 + Q1.sum(1) / 4
    C = torch.zeros(R, k + 1, k + 1, dtype=F64, device=c.device)
    C[:, 0, 1:], C[:, 1:, 0], C[:, 1:, 1:] = b / 2, b / 2, Q / 4
    return C, K, scale


def _mixing_dual(rows: _Rows, sweeps: int, seed: int) -> _Shor:
    """Shor's SDP by the mixing method (see the module docstring); returns the dual estimate ``y_i = (CY)_ii``."""
    import math

    p = rows.p
    R, d = p.shape
    D = rows.D
    M = p.M if not p.shared else p.M.expand(R, d, d)
    C, K, scale = pm1_form(D[:, :, None] * M * D[:, None, :], rows.c, rows.f0)
    n = d + 1
    k = int(math.ceil(math.sqrt(2 * n))) + 1
    g = torch.Generator().manual_seed(seed)
    V = torch.randn(R, n, k, generator=g, dtype=F64).to(p.device)
    V = V / V.norm(dim=2, keepdim=True)
    from roundlab.solvers import mixing_kernel            # numba (optional) loads on first use, not on import

    if p.device.type == "cpu" and mixing_kernel.COMPILED:
        Vn = V.numpy()
        mixing_kernel.sweep_rows(C.numpy(), Vn, sweeps, MIXING_RTOL)
        V = torch.from_numpy(Vn)
    else:
        _sweep_rows_torch(C, V, sweeps)
    CV = torch.bmm(C, V)
    y = (CV * V).sum(2)
    return _Shor(C, y, K, scale)


def _mixing_bound(rows: _Rows, sweeps: int, seed: int, safety: float) -> torch.Tensor:
    """Shor's SDP by the mixing method, certified through ``λ_min(C − diag y)`` (see the module docstring)."""
    sh = _mixing_dual(rows, sweeps, seed)
    n = sh.C.shape[-1]
    ev = torch.linalg.eigvalsh(sh.C - torch.diag_embed(sh.y))
    lam = ev[:, 0] - 1e-12 * n * ev.abs().amax(1)                           # eigenvalue error margin
    bound = (sh.K + sh.y.sum(1) + n * lam) * sh.scale - safety * rows.f0
    return torch.minimum(bound, rows.f0).clamp_min(0.0)


def _triangle_bound(rows: _Rows, steps: int, seed: int) -> torch.Tensor:
    """Per row, Shor's SDP with the pair cuts (``triangle.py``) around nearest, fitted towards nearest's value."""
    from roundlab.solvers.qcr import row_qps
    from roundlab.solvers.triangle import triangle_bound

    f0 = rows.f0.cpu()
    out = f0.clone()                                   # nothing to choose (None): the value is the optimum
    for r, qp in enumerate(row_qps(rows.p, rows.p.nearest())):
        if qp is not None:
            out[r] = triangle_bound(qp, qp.f0, steps=steps, seed=seed).bound
    return torch.minimum(out, f0).clamp_min(0.0).to(rows.p.device)


def shor_multipliers(problem: RoundingProblem, sweeps: int = 200, seed: int = 0) -> torch.Tensor:
    """Per row, Shor's dual multipliers ``u`` (R, d) in flip space (``x_j² = x_j``), from the mixing method.

    With ``Δ`` the step between an element's two candidates, ``L(x) = f + (c + u)ᵀx + xᵀ(Q − diag u)x`` on
    {0,1}^d for any ``u``; Shor's ``u`` makes ``Q − diag u`` (nearly) PSD with the largest unconstrained minimum.
    ``u_j`` does not depend on which candidate ``x_j = 0`` stands for, so these serve any reference point.
    The values are estimates: whoever uses them must make ``Q − diag u`` positive definite itself (``qcr.py``).
    """
    sh = _mixing_dual(_Rows(problem), sweeps, seed)
    return 4 * sh.y[:, 1:] * sh.scale[:, None]


@dataclass(frozen=True)
class BoundOptions:
    """What the bound methods read (``lower_bound``'s keyword arguments, whose defaults are the only ones)."""

    iters: int
    tol: float
    safety: float
    sweeps: int
    seed: int
    sdp_solver: str | None
    triangle_steps: int


#: Bound method name → ``f(rows, options) -> (R,) certified bounds``; ``auto`` is the best of several (below).
BOUNDS: Registry[Callable[[_Rows, BoundOptions], torch.Tensor]] = Registry("bound method")


@BOUNDS.decorator("eig")
def _eig(rows: _Rows, o: BoundOptions) -> torch.Tensor:
    p = rows.p
    lam = torch.linalg.eigvalsh(p.M)[..., 0]
    Dm = lam[..., None].expand(p.M.shape[:-1]) if not p.shared else lam.expand(p.d)
    return _diag_bound(rows, Dm.clone(), o.iters, o.tol, o.safety)


@BOUNDS.decorator("jacobi")
def _jacobi(rows: _Rows, o: BoundOptions) -> torch.Tensor:
    p = rows.p
    dg = p.diag
    s = torch.where(dg > 0, dg, torch.ones_like(dg)).rsqrt()
    C = s[..., :, None] * p.M * s[..., None, :]
    alpha = torch.linalg.eigvalsh((C + C.transpose(-1, -2)) / 2)[..., 0]
    return _diag_bound(rows, alpha[..., None] * dg, o.iters, o.tol, o.safety)


@BOUNDS.decorator("mixing")
def _mixing(rows: _Rows, o: BoundOptions) -> torch.Tensor:
    return _mixing_bound(rows, o.sweeps, o.seed, o.safety)


@BOUNDS.decorator("triangle")
def _triangle(rows: _Rows, o: BoundOptions) -> torch.Tensor:
    return _triangle_bound(rows, o.triangle_steps, o.seed)


@BOUNDS.decorator("sdp")
def _sdp(rows: _Rows, o: BoundOptions) -> torch.Tensor:
    if importlib.util.find_spec("cvxpy") is None:
        raise RoundlabError("the sdp bound needs cvxpy (pip install cvxpy)")
    return _explicit_bound(rows, _sdp_u(rows, o.sdp_solver), o.iters, o.tol, o.safety)


@BOUNDS.decorator("zero")
def _zero(rows: _Rows, o: BoundOptions) -> torch.Tensor:
    return torch.zeros(rows.p.rows, dtype=F64, device=rows.p.device)


def methods() -> tuple[str, ...]:
    """Every name ``lower_bound`` takes: ``auto`` and the registered methods (a plugin may add its own)."""
    return ("auto", *BOUNDS.names())


def lower_bound(problem: RoundingProblem, method: str = "auto", *, iters: int = 2000, tol: float = 1e-7,
                safety: float = 1e-10, sweeps: int = 100, seed: int = 0, sdp_max_d: int = 0,
                sdp_solver: str | None = None, triangle_steps: int = 100) -> BoundResult:
    """Certified per-row lower bounds on ``min δMδᵀ`` (see the module docstring for the methods).

    ``iters``/``tol``: the box-QP solve (stops when every row's certified bound is within ``tol·f⁰`` of the
    relaxation's value); ``safety``: subtracted (× f⁰) for round-off; ``sweeps``/``seed``: the mixing method
    (stops early once the SDP objective is stable to 1e-9); ``sdp_max_d``: ``auto`` adds the cvxpy SDP up to this
    d; ``sdp_solver``: a cvxpy solver name (default Clarabel, then SCS); ``triangle_steps``: the ``triangle``
    method's subgradient steps per row.
    """
    if not isinstance(problem, RoundingProblem):
        raise RoundlabError(f"lower_bound expects a RoundingProblem, got {type(problem).__name__}")
    check_known("bound method", method, methods())
    check_int("triangle_steps", triangle_steps, 0)
    opts = BoundOptions(iters, tol, safety, sweeps, seed, sdp_solver, triangle_steps)
    t0 = time.perf_counter()
    rows = _Rows(problem)
    want = [method] if method != "auto" else ["eig", "jacobi", "mixing"]
    if method == "auto" and problem.d <= sdp_max_d and importlib.util.find_spec("cvxpy") is not None:
        want.append("sdp")
    per = {m: BOUNDS.get(m)(rows, opts) for m in want}
    stack = torch.stack([per[m] for m in want])
    which = stack.argmax(0)
    best = stack.gather(0, which[None])[0]
    info = {"by_method": {m: float(per[m].sum()) for m in want},
            "chosen": {m: int((which == i).sum()) for i, m in enumerate(want)}}
    return BoundResult(best.cpu(), method, time.perf_counter() - t0, info)
