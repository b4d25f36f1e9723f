"""``gptq``: sequential rounding with error feedback through the Cholesky factor (GPTQ/OBQ, = LDLQ).

``H = M + damp·mean(diag M)·I``; ``U`` = the upper Cholesky factor of ``H⁻¹``. Walking the columns in ``order``,
each element takes whichever of *its own two candidates* (``lo_j``/``hi_j`` of the original ``w``) is closer to the
feedback-shifted target ``w_j + t_j``, and the residual ``e = (t_j − δ_j)/U_jj`` is pushed onto the later columns,
``t_{>j} −= e·U_{j,>j}`` (GPTQ's ``W[:, j+1:] −= err·Hinv[j, j+1:]``). Choosing only between ``lo_j`` and ``hi_j``
keeps the answer a valid rounding of this problem (plain GPTQ may move a weight several grid steps; here such a
push is clipped to the nearer candidate, like the grid clamp). All rows at once; ``M`` per row is supported.

GPTQ is not a descent method, so it can end worse than round-to-nearest. With ``fallback=True`` (default) such rows
return the start (``init`` if given, else nearest) with status FALLBACK and ``RoundingResult.fallback`` set; the
others are HEURISTIC. ``init`` is only this reference, not a start.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from roundlab.errors import RoundlabError
from roundlab.problem import Status
from roundlab.solvers.base import (Solution, Solver, SolverConfig, check_bool, check_choice, check_float,
                                   full_codes, keep_better, start_point)
from roundlab.solvers.registry import register_solver


@dataclass(frozen=True)
class GPTQConfig(SolverConfig):
    damp: float = 0.01            # λ = damp · mean(diag M) added to the diagonal (GPTQ's percdamp)
    order: str = "natural"        # "natural" | "diag" (descending M_jj, GPTQ's act-order)
    fallback: bool = True         # return the start where GPTQ is worse

    def validate(self):
        check_float("damp", self.damp, 0.0, 1e6)
        check_choice("order", self.order, ("natural", "diag"))
        check_bool("fallback", self.fallback)


def _factor(H: torch.Tensor) -> torch.Tensor:
    L, info = torch.linalg.cholesky_ex(H)
    if bool((info != 0).any()):
        raise RoundlabError("gptq: M + damp·I is not positive definite; increase damp")
    Hinv = torch.cholesky_inverse(L)
    U, info = torch.linalg.cholesky_ex(Hinv, upper=True)
    if bool((info != 0).any()):
        raise RoundlabError("gptq: the inverse Hessian is not positive definite; increase damp")
    return U


@register_solver("gptq")
class GPTQ(Solver):
    """GPTQ/LDLQ sequential rounding with Cholesky error feedback, restricted to each element's floor/ceil."""

    Config = GPTQConfig
    monotone = True

    def solve(self, problem, init):
        cfg = self.config
        R, d = problem.shape
        nearest = problem.nearest()
        M = problem.M
        diag = torch.diagonal(M, dim1=-2, dim2=-1)
        if cfg.order == "diag":
            perm = torch.argsort(diag, dim=-1, descending=True, stable=True)
        else:
            perm = torch.arange(d, device=problem.device)
        perm = perm.expand(R, d) if perm.dim() == 1 else perm
        if problem.shared:
            p = perm[0]
            Mp = M[p][:, p]
        else:
            Mp = torch.gather(torch.gather(M, 1, perm[:, :, None].expand(R, d, d)), 2,
                              perm[:, None, :].expand(R, d, d))
        mean_diag = torch.diagonal(Mp, dim1=-2, dim2=-1).mean(-1)
        lam = cfg.damp * torch.where(mean_diag > 0, mean_diag, torch.ones_like(mean_diag))
        eye = torch.eye(d, dtype=Mp.dtype, device=Mp.device)
        H = Mp + (lam[..., None, None] * eye if Mp.dim() == 3 else lam * eye)
        U = _factor(H)
        lo, hi, near = (torch.gather(x, 1, perm) for x in (problem.lo, problem.hi, nearest))
        t = torch.zeros(R, d, dtype=lo.dtype, device=lo.device)
        out = torch.empty_like(lo)
        for j in range(d):
            tj = t[:, j]
            dlo, dhi = (tj - lo[:, j]).abs(), (tj - hi[:, j]).abs()
            dj = torch.where(dhi < dlo, hi[:, j], torch.where(dlo < dhi, lo[:, j], near[:, j]))
            out[:, j] = dj
            if j + 1 < d:
                Ujj = U[..., j, j]
                e = (tj - dj) / Ujj
                row = U[..., j, j + 1:]
                t[:, j + 1:] -= e[:, None] * (row if row.dim() == 2 else row[None, :])
        delta = torch.empty_like(out).scatter_(1, perm, out)
        codes = full_codes(problem, Status.HEURISTIC)
        fallback = None
        if cfg.fallback:
            delta, codes, fallback = keep_better(problem, delta, start_point(problem, init), codes)
        return Solution(delta, codes, fallback=fallback, iterations=torch.full((R,), d))
