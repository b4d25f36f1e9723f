"""The ``miqp`` solver: row by row, the backend's MIQP around the warm start, with the status it can prove.

A row is OPTIMAL only if the backend finished (its optimal status) *and* its bound is within ``gap_tol`` of the
returned objective; TIME_LIMIT if stopped by the limit; FEASIBLE otherwise. The answer is never worse than the warm
start: if the backend's point is worse (or missing), the warm start is returned and the row is FALLBACK (unless the
bound proves it optimal). Bounds are reported after subtracting ``bound_tol`` (scaled units) for the backends'
tolerances. ``iterations`` = branch-and-bound nodes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from roundlab.errors import RoundlabError
from roundlab.problem import F64, Status
from roundlab.solvers.base import (CODE, Solution, Solver, SolverConfig, check_bool, check_choice, check_float,
                                   check_int, check_start, full_codes, seeded_start)
from roundlab.solvers.miqp.backends import BACKENDS, BackendResult, available_backends
from roundlab.solvers.miqp.formulations import row_data
from roundlab.solvers.registry import register_solver


@dataclass(frozen=True)
class MiqpConfig(SolverConfig):
    backend: str = "cvxpy-scip"       # see BACKENDS: cbc | highs | scip (PuLP) | cvxpy-scip | gurobi (native)
    objective: str = "proxy"          # "proxy" (from M) | "samples" (from the N samples; the problem must carry X)
    linearization: str = "auto"       # "fortet" | "glover" | "auto" (the backend's faster one up to fortet_max_d)
    fortet_max_d: int = 64
    time_limit: float = 30.0          # seconds per row subproblem (model building not included)
    warm_start: str | None = "tabu"   # solver whose answer starts each row when no init is given; None: nearest
    gap_tol: float = 1e-6             # OPTIMAL needs (objective − bound) ≤ gap_tol · objective
    bound_tol: float | None = None    # subtracted from the backend's bound (scaled units, warm start = 1);
                                      # None: the backend's tolerance (1e-9 LP-based, 1e-7 cvxpy-scip)
    threads: int = 1
    msg: bool = False

    def validate(self):
        check_choice("backend", self.backend, BACKENDS.names())
        check_choice("objective", self.objective, ("proxy", "samples"))
        check_choice("linearization", self.linearization, ("fortet", "glover", "auto"))
        check_int("fortet_max_d", self.fortet_max_d, 0)
        check_float("time_limit", self.time_limit, 0.0, 1e7, lo_open=True)
        check_start("warm_start", self.warm_start, "miqp")
        check_float("gap_tol", self.gap_tol, 0.0, 1.0)
        check_float("bound_tol", self.bound_tol, 0.0, 1e-3, none=True)
        check_int("threads", self.threads, 1, 256)
        check_bool("msg", self.msg)


@dataclass
class _Row:
    """One row's outcome: its answer, status and bound (loss units); ``res`` is None when nothing was solved."""

    delta: torch.Tensor
    status: Status
    bound: float
    res: BackendResult | None = None
    linearization: str = ""


@register_solver("miqp")
class MIQP(Solver):
    """Exact MIQP per row (PuLP: CBC/HiGHS/SCIP, or cvxpy+SCIP), proxy or samples objective, proven status."""

    Config = MiqpConfig
    objectives = ("proxy", "samples")
    exact = True
    monotone = True
    batched = False
    devices = ("cpu",)
    requires = ()

    def check(self, problem):
        backend = BACKENDS.get(self.config.backend)
        if not backend.available():
            raise RoundlabError(f"miqp backend {self.config.backend!r} is not available (needs "
                                f"{', '.join(backend.requires)}); installed backends: "
                                f"{', '.join(available_backends()) or 'none'}")
        super().check(problem)        # the samples objective needs a problem with X

    def solve(self, problem, init):
        cfg = self.config
        R = problem.rows
        warm = seeded_start(problem, init, cfg.warm_start)
        delta = warm.clone()
        codes = full_codes(problem, Status.OPTIMAL)
        bound = torch.full((R,), torch.nan, dtype=F64)
        nodes = torch.zeros(R, dtype=torch.long)
        row_time = torch.zeros(R, dtype=F64)
        fallback = torch.zeros(R, dtype=torch.bool)
        raw_counts: dict[str, int] = {}
        lins: dict[str, int] = {}
        for r in range(R):
            t0 = time.perf_counter()
            row = self._solve_row(problem, r, warm)
            delta[r], codes[r], bound[r] = row.delta, CODE[row.status], row.bound
            fallback[r] = row.status is Status.FALLBACK
            if row.res is not None:
                nodes[r] = row.res.nodes
                lins[row.linearization] = lins.get(row.linearization, 0) + 1
                raw_counts[row.res.raw] = raw_counts.get(row.res.raw, 0) + 1
            row_time[r] = time.perf_counter() - t0
        info = {"backend": cfg.backend, "backend_status": raw_counts, "linearization_used": lins,
                "warm_start": "init" if init is not None else (cfg.warm_start or "nearest")}
        return Solution(delta, codes, bound=bound, iterations=nodes, row_time=row_time, fallback=fallback,
                        info=info)

    def _solve_row(self, problem, r: int, warm: torch.Tensor) -> _Row:
        """Row ``r`` solved by the backend around ``warm``; never worse than ``warm[r]``."""
        cfg = self.config
        backend = BACKENDS.get(cfg.backend)
        data, F, f0 = row_data(problem, r, warm, cfg.objective)
        if data is None:  # nothing free, or the warm start already has loss 0: optimal
            return _Row(warm[r], Status.OPTIMAL, max(f0, 0.0))
        lin = "native" if backend.native else cfg.linearization
        if lin == "auto":
            lin = backend.linearization if data.k <= cfg.fortet_max_d else "glover"
        res = backend.solve(data, cfg, cfg.objective, lin)
        Mr = problem.M if problem.shared else problem.M[r]
        row, use = warm[r], False
        if res.x is not None:
            cand = warm[r].clone()
            Ft = torch.as_tensor(F, device=warm.device)
            x = torch.as_tensor(res.x, device=warm.device) > 0.5
            cand[Ft] = torch.where(x, problem.flipped(warm)[r, Ft], warm[r, Ft])
            # Never worse than the warm start. Not base.keep_better, on purpose: this compares the point's loss
            # (torch) with f⁰ (numpy, row_data), so a backend that returns the warm start itself can lose by
            # round-off and make the row FALLBACK, where keep_better would keep TIME_LIMIT/FEASIBLE. Kept so the
            # statuses stay as they were.
            use = float(cand @ Mr @ cand) <= f0
            if use:
                row = cand
        f = float(row @ Mr @ row)
        bound = math.nan
        if res.bound is not None:
            tol = backend.bound_tol if cfg.bound_tol is None else cfg.bound_tol
            bound = (res.bound - tol) * f0
        if res.finished and res.bound is not None and f - bound <= cfg.gap_tol * f:
            status = Status.OPTIMAL
        elif not use:
            status = Status.FALLBACK
        elif res.time_limited:
            status = Status.TIME_LIMIT
        else:
            status = Status.FEASIBLE
        return _Row(row, status, bound, res, lin)
