"""``analysis-miqp``: the ``miqp`` solver with a segment's rows fanned out over worker processes (Table 1).

Rows go in ``workers`` chunks to :func:`roundlab.fanout.executors.get_executor` (``process``; ``serial`` for one
worker), each warm-started from ``warm_start``. Segments wider than ``max_d`` keep the warm start (status
``heuristic``). ``objective="samples"`` minimises over the segment's N samples, which Wqer hands to a solver
configured with that objective (the paper's "MIQP w/o proxy").
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import torch

from roundlab.errors import RoundlabError
from roundlab.fanout.executors import get_executor
from roundlab.problem import Status
from roundlab.solvers import Solution, Solver, SolverConfig, get_solver, list_solvers, register_solver, solver_class
from roundlab.solvers.base import CODE, check_choice, check_float, check_int

NAME = "analysis-miqp"
MIQP = solver_class("miqp")


@dataclass(frozen=True)
class PooledMiqpConfig(SolverConfig):
    backend: str = "highs"
    objective: str = "proxy"          # "samples": the segment's N samples
    time_limit: float = 0.25          # seconds per row subproblem
    warm_start: str = "greedy"
    workers: int = 1
    max_d: int | None = None          # wider segments: the warm start's answer, status heuristic
    row_limit: int | None = None      # smoke only: MIQP on the first row_limit rows of each segment

    def validate(self):
        check_choice("objective", self.objective, ("proxy", "samples"))
        check_float("time_limit", self.time_limit, 0.0, 1e7, lo_open=True)
        check_int("workers", self.workers, 1, 64)
        check_int("max_d", self.max_d, 1, none=True)
        check_int("row_limit", self.row_limit, 1, none=True)


def solve_chunk(job) -> tuple:
    """Executor task: ``miqp`` on one chunk of rows; the answer's per-row tensors and the backend's status counts."""
    sub, init, options = job
    res = get_solver("miqp", **options)(sub, init=init)
    codes = torch.tensor([CODE[s] for s in res.status], dtype=torch.long)
    return (res.delta.cpu(), codes, res.bound.cpu(), res.iterations.cpu(), res.row_time.cpu(), res.fallback.cpu(),
            res.info.get("backend_status", {}))


class PooledMiqp(Solver):
    """miqp (roundlab.solvers.miqp) with each segment's rows fanned out over the package's executors."""

    Config = PooledMiqpConfig
    _executor = None

    # what it accepts and promises is miqp's
    objectives, exact, monotone = MIQP.objectives, MIQP.exact, MIQP.monotone
    batched, devices = MIQP.batched, MIQP.devices

    def executor(self):
        """The executor of this solver's calls, started on first use and kept until the solver is collected."""
        if self._executor is None:
            w = self.config.workers
            self._executor = get_executor("process", workers=w) if w > 1 else get_executor("serial")
            weakref.finalize(self, self._executor.close)
        return self._executor

    def __getstate__(self):
        return {**self.__dict__, "_executor": None}

    def solve(self, problem, init):
        cfg = self.config
        R = problem.rows
        warm = init if init is not None else get_solver(cfg.warm_start)(problem).delta
        delta = warm.clone()
        codes = torch.full((R,), CODE[Status.HEURISTIC], dtype=torch.long)
        bound = torch.full((R,), math.nan, dtype=torch.float64)
        if cfg.max_d is not None and problem.d > cfg.max_d:
            return Solution(delta, codes, bound=bound, info={"skipped": 1})
        iters = torch.zeros(R, dtype=torch.long)
        row_time = torch.zeros(R, dtype=torch.float64)
        fallback = torch.zeros(R, dtype=torch.bool)
        n = R if cfg.row_limit is None else min(R, cfg.row_limit)
        options = {"backend": cfg.backend, "objective": cfg.objective, "time_limit": cfg.time_limit}
        parts = list(torch.arange(n).chunk(max(1, min(cfg.workers, n))))
        jobs = [(problem.subproblem(c), warm[c], options) for c in parts]
        raw: dict[str, int] = {}
        for out in self.executor().run(solve_chunk, jobs):
            c = parts[out.index]
            if not out.ok:
                raise RoundlabError(f"{NAME}: miqp on rows {int(c[0])}-{int(c[-1])}: {out.kind}: {out.message}")
            d_, cd, b, it, rt, fb, st = out.value
            delta[c], codes[c], bound[c], iters[c], row_time[c], fallback[c] = d_.to(delta), cd, b, it, rt, fb
            for k, v in st.items():
                raw[k] = raw.get(k, 0) + v
        return Solution(delta, codes, bound=bound, iterations=iters, row_time=row_time, fallback=fallback,
                        info={"backend_status": raw})


if NAME not in list_solvers():
    register_solver(NAME)(PooledMiqp)
