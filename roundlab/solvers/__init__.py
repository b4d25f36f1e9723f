"""Rounding solvers: one module per solver, a registry, a lower bound.

    from roundlab.problem import RoundingProblem
    from roundlab.solvers import get_solver, list_solvers
    prob = RoundingProblem.from_grid(w, scale, zero, bits, M=M)
    res = get_solver("rr", variant="release", k=1, max_iter=100)(prob)

Built-in: ``nearest``, ``rr`` (ERQ Rounding Refinement), ``greedy`` (one-flip local search), ``tabu`` (one-flip
tabu search from the greedy optimum), ``gptq``,
``adaround``, ``miqp`` (exact, PuLP CBC/HiGHS/SCIP, cvxpy+SCIP or gurobipy), ``bnb`` (exact branch and bound,
compiled by numba where installed) and ``brute`` (exhaustive, d ≤ 20). The fault-injection solver ``faulty`` lives
in :mod:`roundlab.testing.faulty`, for tests.
:func:`~roundlab.solvers.bound.lower_bound` gives certified lower bounds. Optional heavy packages (pulp, cvxpy,
pyscipopt, highspy, gurobipy, numba) are imported only when a solver that needs them runs.
"""

from roundlab.solvers.base import Solution, Solver, SolverConfig
from roundlab.solvers.registry import get_solver, list_solvers, register_solver, solver_class, unregister_solver

# Built-in solvers register themselves on import (none of these modules imports an optional package at load time).
from roundlab.solvers import nearest, rr, greedy, tabu, gptq, adaround, brute, miqp, bnb  # noqa: E402,F401  isort: skip

__all__ = ["Solution", "Solver", "SolverConfig", "get_solver", "list_solvers", "register_solver", "solver_class",
           "unregister_solver"]
