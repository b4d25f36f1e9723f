"""``brute``: exhaustive enumeration, the test oracle and ground truth for analyses (≤ 20 free elements per row).

Row by row, the free elements (``lo < hi``; clamped elements have a single candidate) are enumerated in chunks of
``2**chunk_bits`` points, vectorised: with ``x`` the flips away from round-to-nearest ``δ⁰`` (``Δ_j = other − δ⁰_j``)
the loss is ``f(x) = f(δ⁰) + cᵀx + xᵀQ'x`` with ``c_j = Δ_j g⁰_j + Δ_j² M_jj``, ``g⁰ = 2Mδ⁰`` and
``Q'_ij = Δ_i Δ_j M_ij`` off the diagonal — centred at nearest so the float64 sums do not cancel. The first minimiser
found is returned with status OPTIMAL and ``bound = objective``. ``iterations`` counts enumerated points.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from roundlab.errors import RoundlabError
from roundlab.problem import F64, Status
from roundlab.solvers.base import Solution, Solver, SolverConfig, check_int
from roundlab.solvers.registry import register_solver


@dataclass(frozen=True)
class BruteConfig(SolverConfig):
    max_free: int = 20        # refuse rows with more free elements than this (2**max_free points)
    chunk_bits: int = 16      # points per vectorised chunk = 2**chunk_bits

    def validate(self):
        check_int("max_free", self.max_free, 0, 26)
        check_int("chunk_bits", self.chunk_bits, 1, 22)


@register_solver("brute")
class Brute(Solver):
    """Exhaustive search over 2^d_free points per row (d_free <= 20): exact; ignores init."""

    Config = BruteConfig
    exact = True
    uses_init = False
    batched = False

    def check(self, problem):
        super().check(problem)
        n_free = int(problem.free.sum(1).max())
        if n_free > self.config.max_free:
            raise RoundlabError(f"brute force enumerates 2^d points per row; a row has {n_free} free elements "
                                f"(max_free={self.config.max_free})")

    def solve(self, problem, init):
        d0 = problem.nearest()
        delta = d0.clone()
        g0 = 2 * problem.matvec(d0)
        D = problem.flipped(d0) - d0                                    # (R, d), 0 where clamped
        diag = problem.diag.expand_as(D)
        points = torch.zeros(problem.rows, dtype=torch.long)
        chunk = 2 ** self.config.chunk_bits
        for r in range(problem.rows):
            F = torch.nonzero(D[r] != 0).flatten()
            k = F.numel()
            if k == 0:
                continue
            Mr = problem.M if problem.shared else problem.M[r]
            Dr = D[r, F]
            c = Dr * g0[r, F] + Dr * Dr * diag[r, F]
            Q = Dr[:, None] * Mr[F][:, F] * Dr[None, :]
            Q.fill_diagonal_(0.0)
            bits = 2 ** torch.arange(k, device=D.device)
            best_val, best_code = torch.inf, 0
            for start in range(0, 2 ** k, chunk):
                codes = torch.arange(start, min(start + chunk, 2 ** k), device=D.device)
                X = ((codes[:, None] & bits) != 0).to(F64)               # (C, k)
                val = X @ c + ((X @ Q) * X).sum(1)
                i = int(torch.argmin(val))
                if float(val[i]) < best_val:
                    best_val, best_code = float(val[i]), start + i
            flip = ((best_code & bits) != 0)
            delta[r, F] = torch.where(flip, problem.flipped(d0)[r, F], d0[r, F])
            points[r] = 2 ** k
        bound = problem.objective(delta).cpu()
        return Solution(delta, Status.OPTIMAL, bound=bound, iterations=points)
