"""``analysis-sample``: another solver on the first ``row_limit`` rows of each segment (Table 1's smoke mode).

The full Table 1 runs ``bnb`` and ``miqp`` on every row; a smoke run cannot afford that (the samples objective
alone builds a model of N samples per row), so it solves a sample of rows — the first ``row_limit`` rows of each
segment up to width ``max_d`` — and keeps the warm start on the others (status ``heuristic``: no claim, no bound).
Fan-out, the results store and resume come from the run's executor like any solver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from roundlab.errors import RoundlabError
from roundlab.problem import Status
from roundlab.solvers import Solution, Solver, SolverConfig, get_solver, list_solvers, register_solver
from roundlab.solvers.base import CODE, check_int, check_start

NAME = "analysis-sample"


@dataclass(frozen=True)
class SampleConfig(SolverConfig):
    solver: str = "miqp"              # the solver run on the sampled rows
    options: dict = field(default_factory=dict)     # its options
    row_limit: int = 1                # rows solved per segment (the first ones)
    max_d: int | None = None          # wider segments: the warm start only
    warm_start: str = "greedy"        # the answer of the other rows

    def validate(self):
        check_start("solver", self.solver, NAME)
        if not isinstance(self.options, dict):
            raise RoundlabError(f"options must be a dict of the solver's options, got {self.options!r}")
        check_int("row_limit", self.row_limit, 1)
        check_int("max_d", self.max_d, 1, none=True)
        check_start("warm_start", self.warm_start, NAME)

    @property
    def inner(self) -> Solver:
        return get_solver(self.solver, **self.options)


class SampledSolver(Solver):
    """``solver`` on a segment's first ``row_limit`` rows (segments up to ``max_d``); the warm start elsewhere."""

    Config = SampleConfig
    objectives = ("proxy", "samples")

    @property
    def objective(self) -> str:
        return self.config.inner.objective

    def solve(self, problem, init):
        cfg = self.config
        warm = init if init is not None else get_solver(cfg.warm_start)(problem).delta
        delta = warm.clone()
        codes = torch.full((problem.rows,), CODE[Status.HEURISTIC], dtype=torch.long)
        bound = torch.full((problem.rows,), math.nan, dtype=torch.float64)
        if cfg.max_d is not None and problem.d > cfg.max_d:
            return Solution(delta, codes, bound=bound)
        n = min(problem.rows, cfg.row_limit)
        res = cfg.inner(problem.subproblem(slice(0, n)))
        delta[:n], bound[:n] = res.delta.to(delta), res.bound.to(bound)
        codes[:n] = torch.tensor([CODE[s] for s in res.status], dtype=torch.long)
        return Solution(delta, codes, bound=bound)


if NAME not in list_solvers():
    register_solver(NAME)(SampledSolver)
