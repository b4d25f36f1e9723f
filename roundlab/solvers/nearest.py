"""``nearest``: round to nearest (half to even, as ``torch.round``), the baseline every other solver must beat."""

from __future__ import annotations

from roundlab.problem import Status
from roundlab.solvers.base import Solution, Solver
from roundlab.solvers.registry import register_solver


@register_solver("nearest")
class Nearest(Solver):
    """Round to nearest (ties to even); ignores init."""

    uses_init = False

    def solve(self, problem, init):
        return Solution(problem.nearest(), Status.HEURISTIC)
