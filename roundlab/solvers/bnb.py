"""``bnb``: exact rounding by branch and bound, row by row — anytime, with a certified bound on every row.

Per row (free elements only), around the warm start ``δ⁰`` (``init``, else the ``warm_start`` solver's answer,
default ``tabu``): the objective is written as several *convex* forms that agree with ``δMδᵀ`` on every rounding
(``qcr.py``: the plain Cholesky form, ``u = 0``, and the quadratic convex reformulation with Shor's SDP multipliers,
computed batched by the mixing method of ``bound.py``, for the whole row and re-fitted to the subproblems left deeper
in the search), and a depth-first Schnorr–Euchner enumeration
(``bnb_kernel.py``, compiled by numba where installed) fixes one element at a time — the best-determined first
(V-BLAST order) — pruning a node when the largest of its forms' partial-sum bounds reaches the incumbent.

Claims, per row: ``optimal`` only when the search closed (then ``bound = incumbent·(1 − gap_tol)`` minus the forms'
round-off allowance); ``time_limit`` when ``time_limit`` seconds or ``node_limit`` nodes ran out, with the smallest
bound over the still-open nodes (never below Shor's bound of the row). Never worse than the warm start.
``iterations`` = nodes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from roundlab.errors import RoundlabError
from roundlab.problem import F64, RoundingProblem, Status
from roundlab.solvers.base import (CODE, Solution, Solver, SolverConfig, check_bool, check_choice, check_float, check_int,
                                   check_start, seeded_start)
from roundlab.solvers.bound import shor_multipliers
from roundlab.solvers.qcr import RowQP, build_forms, definite_multipliers, row_qp, vblast_order
from roundlab.solvers.registry import register_solver


@dataclass(frozen=True)
class BnbConfig(SolverConfig):
    warm_start: str | None = "tabu"   # solver whose answer is the first incumbent when no init is given; None: nearest
    time_limit: float | None = 60.0   # seconds per row (None: no limit)
    node_limit: int | None = None     # nodes per row (None: no limit)
    gap_tol: float = 1e-9             # prune nodes whose bound reaches incumbent·(1 − gap_tol)
    shor: bool = True                 # add the Shor-multiplier form (rows with at least shor_min_free free elements)
    shor_min_free: int = 12
    sweeps: int = 300                 # mixing-method sweeps for Shor's multipliers
    order: str = "vblast"             # "vblast" (best-determined first) | "natural"
    refit: tuple = (0.6, 0.3)         # also fit Shor's multipliers to the subproblems left when these shares are free
    progress: bool = False            # a progress bar over rows
    check_every: int = 20000          # nodes between wall-clock checks

    def validate(self):
        check_start("warm_start", self.warm_start, "bnb")
        check_float("time_limit", self.time_limit, 0.0, 1e9, lo_open=True, none=True)
        check_int("node_limit", self.node_limit, 1, none=True)
        check_float("gap_tol", self.gap_tol, 0.0, 0.5)
        if not isinstance(self.shor, bool):
            raise RoundlabError(f"shor must be True or False, got {self.shor!r}")
        check_int("shor_min_free", self.shor_min_free, 1)
        check_int("sweeps", self.sweeps, 1, 100000)
        check_choice("order", self.order, ("vblast", "natural"))
        check_int("check_every", self.check_every, 1)
        if not isinstance(self.refit, (tuple, list)) or not all(
                isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f < 1 for f in self.refit):
            raise RoundlabError(f"refit must be a tuple of fractions in (0, 1), got {self.refit!r}")
        check_bool("progress", self.progress)


@dataclass
class RowOutcome:
    x: np.ndarray          # best flips found (qp coordinates)
    closed: bool
    bound: float           # certified lower bound on the row's optimum
    nodes: int


def search_row(qp: RowQP, multipliers: dict, order: np.ndarray, cfg: BnbConfig) -> RowOutcome:
    """Branch and bound on one row in ``order``; returns the best flips and what was proven."""
    from roundlab.solvers import bnb_kernel as kernel     # numba (optional) loads on first use, not on import

    forms = build_forms(qp, multipliers, order)
    st = kernel.new_state(len(forms.names), qp.k, forms.root_bound)
    st["ub"][0] = qp.f0
    t0 = time.perf_counter()
    while True:
        budget = cfg.check_every
        if cfg.node_limit is not None:
            budget = min(budget, cfg.node_limit - int(st["pos"][kernel.NODES]))
        closed = kernel.search(forms.R, forms.ctr, forms.rc, forms.const, forms.slack, cfg.gap_tol,
                               st["x"], st["best"], st["state"], st["first"], st["lb2"], st["nodelb"], st["terms"],
                               st["partial"], st["pos"], st["ub"], budget)
        nodes = int(st["pos"][kernel.NODES])
        if closed or (cfg.node_limit is not None and nodes >= cfg.node_limit) or \
                (cfg.time_limit is not None and time.perf_counter() - t0 >= cfg.time_limit):
            break
    x = np.empty(qp.k)
    x[order] = st["best"]
    slack = float(forms.slack[0])
    if closed:
        bound = float(st["ub"][0]) * (1 - cfg.gap_tol) - slack
    else:
        bound = max(kernel.open_bound(st), forms.root_bound) - slack
    return RowOutcome(x, bool(closed), bound, nodes)


def enumeration_order(qp: RowQP, u: np.ndarray, how: str) -> np.ndarray:
    if how == "natural":
        return np.arange(qp.k)
    A = qp.Q - np.diag(definite_multipliers(qp.Q, u, 1e-6))
    return vblast_order(A)


def inner_count(k: int, frac: float) -> int:
    """How many coordinates are still free where a refit at ``frac`` applies."""
    return max(1, int(round(frac * k)))


def refit_multipliers(problem, warm: torch.Tensor, qps: list, orders: list, frac: float, sweeps: int):
    """Shor multipliers (R, d) of each row's subproblem once all but its first ``frac`` share of coordinates (in
    enumeration order) are fixed — fixed, for the fit, at the warm start; valid whatever they are fixed to."""
    keep = torch.zeros(problem.shape, dtype=torch.bool)
    for r, (qp, order) in enumerate(zip(qps, orders)):
        if qp is not None:
            keep[r, torch.as_tensor(qp.F[order[:inner_count(qp.k, frac)]])] = True
    keep = keep.to(problem.device)
    lo = torch.where(keep, problem.lo, warm)
    hi = torch.where(keep, problem.hi, warm)
    sub = RoundingProblem.from_candidates(lo, hi, M=problem.M)
    return shor_multipliers(sub, sweeps).cpu().numpy()


@register_solver("bnb")
class BranchAndBound(Solver):
    """Exact branch and bound (convex-reformulation bounds, compiled enumeration): proven optimum or certified gap."""

    Config = BnbConfig
    exact = True
    monotone = True
    batched = False
    devices = ("cpu",)

    def solve(self, problem, init):
        cfg = self.config
        R = problem.rows
        warm = seeded_start(problem, init, cfg.warm_start)
        warm_np, other_np = warm.cpu().numpy(), problem.flipped(warm).cpu().numpy()
        M_np = problem.M.cpu().numpy()
        qps = [row_qp(M_np if problem.shared else M_np[r], warm_np[r], other_np[r]) for r in range(R)]
        qps = [qp if qp.k > 0 and qp.f0 > 0 else None for qp in qps]        # None: nothing to choose, or 0
        shor_rows = [qp is not None and cfg.shor and qp.k >= cfg.shor_min_free for qp in qps]
        multipliers = [None if qp is None else {"plain": (np.zeros(qp.k), None)} for qp in qps]
        if any(shor_rows):
            U = shor_multipliers(problem, cfg.sweeps).cpu().numpy()
            for r in np.nonzero(shor_rows)[0]:
                multipliers[r]["shor"] = (U[r, qps[r].F], None)
        orders = [None if qp is None else                   # from Shor's form where there is one
                  enumeration_order(qp, multipliers[r].get("shor", multipliers[r]["plain"])[0], cfg.order)
                  for r, qp in enumerate(qps)]
        if any(shor_rows):
            for frac in cfg.refit:
                U = refit_multipliers(problem, warm, qps, orders, frac, cfg.sweeps)
                for r in np.nonzero(shor_rows)[0]:
                    inner = np.zeros(qps[r].k, dtype=bool)
                    inner[orders[r][:inner_count(qps[r].k, frac)]] = True
                    multipliers[r][f"shor@{frac:g}"] = (U[r, qps[r].F], inner)
        delta = warm.clone()
        flipped = problem.flipped(warm)
        codes = torch.full((R,), CODE[Status.OPTIMAL], dtype=torch.long)
        bound = torch.zeros(R, dtype=F64)
        nodes = torch.zeros(R, dtype=torch.long)
        row_time = torch.zeros(R, dtype=F64)
        for r, qp in enumerate(tqdm(qps, desc="bnb rows", unit="row", disable=not cfg.progress)):
            t0 = time.perf_counter()
            if qp is None:
                Mr = problem.M if problem.shared else problem.M[r]
                bound[r] = max(float(warm[r] @ Mr @ warm[r]), 0.0)
                continue
            out = search_row(qp, multipliers[r], orders[r], cfg)
            if qp.value(out.x)[0] <= qp.f0:                   # never worse than the warm start
                F = torch.as_tensor(qp.F, device=delta.device)
                flip = torch.as_tensor(out.x > 0.5, device=delta.device)
                delta[r, F] = torch.where(flip, flipped[r, F], warm[r, F])
            bound[r] = max(out.bound, 0.0)
            nodes[r] = out.nodes
            if not out.closed:
                codes[r] = CODE[Status.TIME_LIMIT]
            row_time[r] = time.perf_counter() - t0
        from roundlab.solvers.bnb_kernel import COMPILED

        info = {"compiled": COMPILED, "nodes": int(nodes.sum()),
                "warm_start": "init" if init is not None else (cfg.warm_start or "nearest")}
        return Solution(delta, codes, bound=bound, iterations=nodes, row_time=row_time, info=info)
