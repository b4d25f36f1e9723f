"""``bnb``: exact rounding by branch and bound, row by row — anytime, with a certified bound on every row.

Per row (free elements only), around the warm start ``δ⁰`` (``init``, else the ``warm_start`` solver's answer,
default ``greedy``): the objective is written as several *convex* forms that agree with ``δMδᵀ`` on every rounding
(``qcr.py``: the plain Cholesky form, ``u = 0``, and the quadratic convex reformulation with Shor's SDP multipliers,
computed batched by the mixing method of ``bound.py``, for the whole row and re-fitted to the subproblems left deeper
in the search), and a depth-first Schnorr–Euchner enumeration
(``bnb_kernel.py``, compiled by numba where installed) fixes one element at a time — the best-determined first
(V-BLAST order) — pruning a node when the largest of its forms' partial-sum bounds reaches the incumbent. Shor's multipliers cost
more than a narrow row's whole search (three mixing-method fits of 300 sweeps, against ~1 ms of search at d = 32),
so every row is first *probed* with the plain form alone (``probe_nodes``, default 200,000 nodes, a few ms to tens
of ms): rows it closes are done. The wide rows still open (``polish_min_free``) get a stronger start — the
``polish`` solver, default ``tabu``, from the probe's incumbent, and a second probe where it found a better point
(on Table 1's d = 64 rows the polish cost ~5× the whole search, ~0.3 s a call; on one of five hard d = 128 rows it
cut the search 2.5×). The rows still open then get Shor's forms (fitted to those rows only) and the full search,
within what their budget has left. Row times include every row's share of the batched work (warm start, polish,
Shor fits), so they add up to the call's time.

Claims, per row: ``optimal`` only when the search closed (then ``bound = incumbent·(1 − gap_tol)`` minus the forms'
round-off allowance); ``time_limit`` when ``time_limit`` seconds or ``node_limit`` nodes ran out, with the smallest
bound over the still-open nodes (never below Shor's bound of the row), raised where it can be by Shor's SDP with
the pair cuts (``triangle.py``: at most ``triangle_steps`` Lagrangian steps and ``triangle_seconds`` after the search,
counted in the row's time).
Never worse than the warm start. ``iterations`` = nodes.
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
from roundlab.solvers.ellipsoid import Ellipsoid, ellipsoid
from roundlab.solvers.qcr import RowQP, build_forms, definite_multipliers, row_qps, vblast_order
from roundlab.solvers.registry import get_solver, register_solver
from roundlab.solvers.triangle import triangle_bound


@dataclass(frozen=True)
class BnbConfig(SolverConfig):
    warm_start: str | None = "greedy"  # solver whose answer is the first incumbent when no init is given; None: nearest
    polish: str | None = "tabu"       # rows the probe leaves open: this solver's answer from the probe's incumbent
                                      # is the full search's start where it is better (None: the probe's incumbent)
    polish_min_free: int = 96         # ... on rows with at least this many free elements (narrower rows close
                                      # faster than the polish runs)
    time_limit: float | None = 60.0   # seconds per row (None: no limit)
    node_limit: int | None = None     # nodes per row (None: no limit)
    probe_nodes: int | None = 200000  # first search every row with the plain bound alone for this many nodes; only
                                      # the rows still open get Shor's multipliers (None: fit them for every row)
    gap_tol: float = 1e-9             # prune nodes whose bound reaches incumbent·(1 − gap_tol)
    shor: bool = True                 # add the Shor-multiplier form (rows with at least shor_min_free free elements)
    shor_min_free: int = 12
    sweeps: int = 300                 # mixing-method sweeps for Shor's multipliers
    order: str = "vblast"             # "vblast" (best-determined first) | "natural"
    refit: tuple = (0.6, 0.3)         # also fit Shor's multipliers to the subproblems left when these shares are free
    ellipsoid: bool = True            # after the probe, the plain form also bounds what the free levels add
                                      # (ellipsoid.py; the probe goes without: on rows it closes, building it
                                      # costs more than it saves)
    ellipsoid_levels: int = 64        # block sizes at which the ellipsoid's diagonal is fitted
    triangle_steps: int = 100         # rows left open (with ≥ shor_min_free free elements): this many Lagrangian
                                      # steps on the pair cuts to tighten their certified bound (triangle.py; 0: off)
    triangle_seconds: float | None = 10.0   # ... and at most about this long per row (None: no cap; ~0.1 s a
                                            # step at d = 384, ~2.5 s at d = 1536)
    progress: bool = False            # a progress bar over rows
    check_every: int = 20000          # nodes between wall-clock checks

    def validate(self):
        check_start("warm_start", self.warm_start, "bnb")
        check_start("polish", self.polish, "bnb")
        check_int("polish_min_free", self.polish_min_free, 1)
        check_float("time_limit", self.time_limit, 0.0, 1e9, lo_open=True, none=True)
        check_int("node_limit", self.node_limit, 1, none=True)
        check_int("probe_nodes", self.probe_nodes, 1, none=True)
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
        check_bool("ellipsoid", self.ellipsoid)
        check_int("ellipsoid_levels", self.ellipsoid_levels, 1, 100000)
        check_int("triangle_steps", self.triangle_steps, 0, 1000000)
        check_float("triangle_seconds", self.triangle_seconds, 0.0, 1e9, none=True)


@dataclass(frozen=True)
class Budget:
    """What one row's search may still spend (None: no limit)."""

    nodes: int | None
    seconds: float | None

    def after(self, nodes: int, seconds: float) -> "Budget":
        return Budget(None if self.nodes is None else self.nodes - nodes,
                      None if self.seconds is None else self.seconds - seconds)

    @property
    def exhausted(self) -> bool:
        return (self.nodes is not None and self.nodes <= 0) or (self.seconds is not None and self.seconds <= 0)


@dataclass
class RowOutcome:
    x: np.ndarray          # best flips found (qp coordinates)
    closed: bool
    bound: float           # certified lower bound on the row's optimum
    nodes: int


def search_row(qp: RowQP, multipliers: dict, order: np.ndarray, cfg: BnbConfig, budget: Budget,
               with_ellipsoid: bool) -> RowOutcome:
    """Branch and bound on one row in ``order`` within ``budget`` (the first form with its ellipsoid bound if
    ``with_ellipsoid``); returns the best flips and what was proven."""
    from roundlab.solvers import bnb_kernel as kernel     # numba (optional) loads on first use, not on import

    forms = build_forms(qp, multipliers, order)
    if budget.exhausted:                                  # no search left: the forms' root bound only
        return RowOutcome(np.zeros(qp.k), False, forms.root_bound - float(forms.slack[0]), 0)
    st = kernel.new_state(len(forms.names), qp.k, forms.root_bound, forms.ctr[0])
    st["ub"][0] = qp.f0
    Rt = kernel.columns(forms.R)
    ell = ellipsoid(forms.R[0], forms.ctr[0], levels=cfg.ellipsoid_levels) if with_ellipsoid else Ellipsoid.off(qp.k)
    t0 = time.perf_counter()
    while True:
        step = cfg.check_every
        if budget.nodes is not None:
            step = min(step, budget.nodes - int(st["pos"][kernel.NODES]))
        closed = kernel.search(Rt, forms.ctr, forms.const, forms.slack, ell.G, ell.D, ell.margin, ell.on, cfg.gap_tol,
                               st["x"], st["best"], st["state"], st["first"], st["lb2"], st["nodelb"], st["terms"],
                               st["partial"], st["E"], st["T"], st["pos"], st["ub"], step)
        nodes = int(st["pos"][kernel.NODES])
        if closed or (budget.nodes is not None and nodes >= budget.nodes) or \
                (budget.seconds is not None and time.perf_counter() - t0 >= budget.seconds):
            break
    x = np.empty(qp.k)
    x[order] = st["best"]
    slack = float(forms.slack[0])
    if closed:
        bound = float(st["ub"][0]) * (1 - cfg.gap_tol) - slack
    else:
        bound = max(kernel.open_bound(st), forms.root_bound) - slack
    return RowOutcome(x, bool(closed), bound, nodes)


def tighten(qp: RowQP, res: RowOutcome, steps: int, seconds: float | None) -> RowOutcome:
    """An open row's bound raised by Shor's SDP with the pair cuts (``triangle.py``), fitted towards its incumbent."""
    tb = triangle_bound(qp, float(min(qp.value(res.x)[0], qp.f0)), steps=steps, seconds=seconds)
    return RowOutcome(res.x, res.closed, max(res.bound, tb.bound), res.nodes)


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


@dataclass
class RowsOut:
    """The answer being built: per row the incumbent, status code, best certified bound, nodes and seconds."""

    delta: torch.Tensor
    codes: torch.Tensor
    bound: torch.Tensor
    nodes: torch.Tensor
    row_time: torch.Tensor

    @classmethod
    def start(cls, warm: torch.Tensor) -> "RowsOut":
        R = warm.shape[0]
        return cls(warm.clone(), torch.full((R,), CODE[Status.OPTIMAL], dtype=torch.long),
                   torch.zeros(R, dtype=F64), torch.zeros(R, dtype=torch.long), torch.zeros(R, dtype=F64))

    def share(self, rows: torch.Tensor | slice, seconds: float) -> None:
        """Batched work of ``seconds`` (warm start, polish, Shor fits) shared out evenly over the clocks of
        ``rows``, so that row times add up to the call's time and their budgets pay for it."""
        n = len(self.row_time[rows])
        if n:
            self.row_time[rows] += seconds / n

    def record(self, r: int, qp: RowQP, out: RowOutcome, flipped: torch.Tensor, seconds: float) -> None:
        """Row ``r``'s search outcome (``qp`` written around the current incumbent; ``flipped`` its other
        candidates): a better point replaces the incumbent, bounds only ever rise, the work adds up."""
        if qp.value(out.x)[0] <= qp.f0:                       # never worse than the incumbent
            F = torch.as_tensor(qp.F, device=self.delta.device)
            flip = torch.as_tensor(out.x > 0.5, device=self.delta.device)
            self.delta[r, F] = torch.where(flip, flipped[F], self.delta[r, F])
        self.bound[r] = max(float(self.bound[r]), out.bound, 0.0)
        self.nodes[r] += out.nodes
        self.codes[r] = CODE[Status.OPTIMAL if out.closed else Status.TIME_LIMIT]
        self.row_time[r] += seconds


def row_M(problem: RoundingProblem, r: int) -> torch.Tensor:
    return problem.M if problem.shared else problem.M[r]


def shor_forms(problem: RoundingProblem, warm: torch.Tensor, qps: list, cfg: BnbConfig) -> tuple[list, list]:
    """Per row: the convex forms (plain; Shor's for the whole row and re-fitted deeper, on rows with at least
    ``shor_min_free`` free elements) and the enumeration order (from Shor's form where there is one)."""
    shor_rows = [qp is not None and cfg.shor and qp.k >= cfg.shor_min_free for qp in qps]
    multipliers = [None if qp is None else {"plain": (np.zeros(qp.k), None)} for qp in qps]
    if any(shor_rows):
        U = shor_multipliers(problem, cfg.sweeps).cpu().numpy()
        for r in np.nonzero(shor_rows)[0]:
            multipliers[r]["shor"] = (U[r, qps[r].F], None)
    orders = [None if qp is None else
              enumeration_order(qp, multipliers[r].get("shor", multipliers[r]["plain"])[0], cfg.order)
              for r, qp in enumerate(qps)]
    for frac in cfg.refit if any(shor_rows) else ():
        U = refit_multipliers(problem, warm, qps, orders, frac, cfg.sweeps)
        for r in np.nonzero(shor_rows)[0]:
            inner = np.zeros(qps[r].k, dtype=bool)
            inner[orders[r][:inner_count(qps[r].k, frac)]] = True
            multipliers[r][f"shor@{frac:g}"] = (U[r, qps[r].F], inner)
    return multipliers, orders


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
        t0 = time.perf_counter()
        out = RowsOut.start(seeded_start(problem, init, cfg.warm_start))
        out.share(slice(None), time.perf_counter() - t0)
        todo = torch.arange(problem.rows)
        counts = {"probe_closed": 0, "polish_improved": 0, "reprobe_closed": 0}
        if cfg.probe_nodes is not None:
            todo = self._probe(problem, out, todo)           # the plain bound alone; rows it closes are done
            counts["probe_closed"] = problem.rows - len(todo)
        if cfg.polish is not None:
            todo = self._polish_open(problem, out, todo, counts)   # a stronger start where the search goes on
        if len(todo):
            self._search(problem.subproblem(todo), out, todo)  # Shor's forms, fitted to the open rows only
        from roundlab.solvers.bnb_kernel import COMPILED

        info = {"compiled": COMPILED, "nodes": int(out.nodes.sum()), **counts, "searched": len(todo),
                "warm_start": "init" if init is not None else (cfg.warm_start or "nearest")}
        return Solution(out.delta, out.codes, bound=out.bound, iterations=out.nodes, row_time=out.row_time,
                        info=info)

    def budget(self) -> Budget:
        return Budget(self.config.node_limit, self.config.time_limit)

    def _left(self, out: RowsOut, r: int) -> Budget:
        """What row ``r`` may still spend, after the nodes and seconds already on its clock."""
        return self.budget().after(int(out.nodes[r]), float(out.row_time[r]))

    @staticmethod
    def _trivial(M_row: torch.Tensor, out: RowsOut, r: int) -> None:
        """A row with nothing to choose (or already at 0): its value is its optimum."""
        out.bound[r] = max(float(out.delta[r] @ M_row @ out.delta[r]), 0.0)
        out.codes[r] = CODE[Status.OPTIMAL]

    def _probe(self, problem, out: RowsOut, rows: torch.Tensor) -> torch.Tensor:
        """Rows ``rows`` searched from their incumbents with the plain (Cholesky) bound for at most ``probe_nodes``
        nodes each (within what their budget has left); returns those still open. Most narrow rows close here in
        well under a millisecond, before any Shor fit is paid for."""
        cfg = self.config
        sub = problem.subproblem(rows)
        qps, flipped = row_qps(sub, out.delta[rows]), sub.flipped(out.delta[rows])
        still = []
        for i, qp in enumerate(qps):
            r = int(rows[i])
            if qp is None:
                self._trivial(row_M(sub, i), out, r)
                continue
            left = self._left(out, r)
            probe = Budget(cfg.probe_nodes if left.nodes is None else min(cfg.probe_nodes, left.nodes), left.seconds)
            t0 = time.perf_counter()
            zero = np.zeros(qp.k)
            res = search_row(qp, {"plain": (zero, None)}, enumeration_order(qp, zero, cfg.order), cfg, probe, False)
            out.record(r, qp, res, flipped[i], time.perf_counter() - t0)
            if not res.closed:
                still.append(r)
        return torch.tensor(still, dtype=torch.long)

    def _polish_open(self, problem, out: RowsOut, todo: torch.Tensor, counts: dict) -> torch.Tensor:
        """The wide open rows ``todo`` (``polish_min_free`` free elements, budget left) polished, and probed again
        where the polish found a better point; returns the rows still open."""
        wide = torch.tensor([int(r) for r in todo if int(problem.free[r].sum()) >= self.config.polish_min_free
                             and not self._left(out, int(r)).exhausted], dtype=torch.long)
        if not len(wide):
            return todo
        better = self._polish(problem.subproblem(wide), out, wide)
        counts["polish_improved"] = len(better)
        if self.config.probe_nodes is None or not len(better):
            return todo
        still = self._probe(problem, out, better)         # the closer start often closes the row with the plain bound
        counts["reprobe_closed"] = len(better) - len(still)
        return todo[~torch.isin(todo, better) | torch.isin(todo, still)]

    def _polish(self, sub, out: RowsOut, rows: torch.Tensor) -> torch.Tensor:
        """The ``polish`` solver's answer from the incumbents of rows ``rows`` (``sub`` = their problem) replaces
        them where strictly better; its time is shared out over those rows' clocks (their budgets pay for it).
        Returns the rows it improved."""
        t0 = time.perf_counter()
        start = out.delta[rows]
        cand = get_solver(self.config.polish)(sub, init=start).delta
        better = (sub.objective(cand) < sub.objective(start)).cpu()
        out.delta[rows[better]] = cand[better.to(cand.device)]
        out.share(rows, time.perf_counter() - t0)
        return rows[better]

    def _search(self, sub, out: RowsOut, rows: torch.Tensor) -> None:
        """The full search on the rows ``rows`` of the answer (``sub`` = those rows' problem), around their
        incumbents, each within what its budget has left."""
        cfg = self.config
        warm = out.delta[rows]
        qps = row_qps(sub, warm)
        t0 = time.perf_counter()
        multipliers, orders = shor_forms(sub, warm, qps, cfg)
        out.share(rows, time.perf_counter() - t0)
        flipped = sub.flipped(warm)
        for i, qp in enumerate(tqdm(qps, desc="bnb rows", unit="row", disable=not cfg.progress)):
            r = int(rows[i])
            if qp is None:
                self._trivial(row_M(sub, i), out, r)
                continue
            t0 = time.perf_counter()
            res = search_row(qp, multipliers[i], orders[i], cfg, self._left(out, r), cfg.ellipsoid)
            if not res.closed and cfg.triangle_steps and qp.k >= cfg.shor_min_free:
                res = tighten(qp, res, cfg.triangle_steps, cfg.triangle_seconds)
            out.record(r, qp, res, flipped[i], time.perf_counter() - t0)
