"""A solver's answer, :class:`RoundingResult`: the one answer type from a solver, through the fan-out workers and
the results store, back to Wqer.

Its per-row records are declared once, in :data:`ROW_FIELDS`. The solver base class fills them from a
:class:`~roundlab.solvers.base.Solution`; a worker ships :meth:`RoundingResult.rows` (plain CPU tensors); the results
store keeps one column per field; :meth:`RoundingResult.from_rows` rebuilds a result from them and re-checks it
(every element on a candidate, the objective recomputed in float64, rows without a free element marked optimal).
A new per-row record is one :class:`RowField` here plus the attribute of the same name on :class:`RoundingResult`
and :class:`~roundlab.solvers.base.Solution` (checked at import).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import Enum

import torch

from roundlab.errors import RoundlabError

F64 = torch.float64


class Status(str, Enum):
    """What a solver can claim about one row's answer (JSON-able: ``Status.OPTIMAL.value == "optimal"``).

    * ``OPTIMAL`` — proven: exhaustive search, or a backend that reported optimality *and* gave a bound within the
      gap tolerance of the returned objective (or a certified lower bound closed the gap). Never a label alone.
    * ``FEASIBLE`` — a valid rounding from an exact method without a proof (no bound, or a gap above tolerance).
    * ``TIME_LIMIT`` — an exact method stopped by its time limit; its incumbent (or the warm start) is returned.
    * ``ITERATION_LIMIT`` — an iterative heuristic stopped by ``max_iter`` while it was still improving.
    * ``LOCAL_OPTIMUM`` — no single flip improves the row (checked with a freshly computed gradient).
    * ``HEURISTIC`` — a heuristic's answer, no claim beyond being a valid rounding.
    * ``FALLBACK`` — the solver's own answer was worse than its start (``init`` or round-to-nearest), or it found
      none; the start was returned instead (``RoundingResult.fallback`` is set for these rows).
    """

    OPTIMAL = "optimal"
    FEASIBLE = "feasible"
    TIME_LIMIT = "time_limit"
    ITERATION_LIMIT = "iteration_limit"
    LOCAL_OPTIMUM = "local_optimum"
    HEURISTIC = "heuristic"
    FALLBACK = "fallback"

    def __str__(self) -> str:
        return self.value


#: Integer codes for per-row status tensors (workers, the results store): ``STATUSES[code]``.
STATUSES: tuple[Status, ...] = tuple(Status)
CODE = {s: i for i, s in enumerate(STATUSES)}


@dataclass(frozen=True)
class RowField:
    """One per-row record: its dtype, the value of a row whose solver does not report it, what it means."""

    name: str
    dtype: torch.dtype
    fill: float | int | bool
    doc: str


#: The per-row records besides ``delta`` (R, d) and ``status`` (R,) codes, in the results store's column order.
ROW_FIELDS: tuple[RowField, ...] = (
    RowField("bound", F64, math.nan, "a valid lower bound on the row's optimum (NaN: none)"),
    RowField("iterations", torch.long, 0, "the solver's own unit of work"),
    RowField("row_time", F64, 0.0, "seconds on the row (the call's time split evenly where not measured)"),
    RowField("fallback", torch.bool, False, "the start was returned instead of the solver's own answer"),
)


def _nan_to_none(x: float) -> float | None:
    return None if (x is None or math.isnan(x)) else float(x)


@dataclass(eq=False)
class RoundingResult:
    """A solver's answer to a :class:`~roundlab.problem.RoundingProblem`.

    ``delta`` (R, d) lives on the problem's device; the per-row records (``objective``, ``bound``, ``gap``,
    ``row_time``, ``iterations``, ``fallback``) are small CPU tensors. ``objective`` is recomputed in float64 from
    ``delta`` (:meth:`from_rows`), never taken from a backend. ``bound`` is a valid lower bound on the row's
    optimum where the solver has one (NaN otherwise); ``gap = (objective − bound) / objective`` (0 where the
    objective is 0).
    ``time`` is the total wall time in seconds; ``row_time`` is measured per row where the solver works row by row,
    else the total divided evenly. ``iterations`` counts the solver's own unit of work (flips for rr/greedy,
    optimizer steps for adaround, branch-and-bound nodes for miqp and bnb, enumerated points for brute).
    """

    delta: torch.Tensor
    objective: torch.Tensor
    status: tuple[Status, ...]
    bound: torch.Tensor
    gap: torch.Tensor
    time: float
    row_time: torch.Tensor
    iterations: torch.Tensor
    fallback: torch.Tensor
    solver: str = ""
    config: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    # ------------------------------------------------------------------------------------------ the row form
    @classmethod
    def from_rows(cls, problem, rows: dict, *, solver: str = "", config: dict | None = None, time: float = 0.0,
                  info: dict | None = None, label: str = "a solver") -> "RoundingResult":
        """The result for ``problem`` from its row form (``delta``, ``status`` codes and every :data:`ROW_FIELDS`
        entry), checked: every element exactly on a candidate, the objective recomputed in float64, rows without a
        free element ``OPTIMAL`` with ``bound = objective``. ``label`` names the source in errors."""
        rows = check_rows(rows, problem.rows, problem.d, label)
        delta = rows["delta"].to(device=problem.device, dtype=F64)
        off = ~problem.on_candidates(delta)
        if bool(off.any()):
            raise RoundlabError(f"{label} returned {int(off.sum())} element(s) off the floor/ceil candidates "
                                f"(a solver bug)")
        objective = problem.objective(delta).cpu()
        codes, bound = rows["status"], rows["bound"]
        trivial = ~problem.free.any(1).cpu()          # nothing to choose: the answer is the optimum
        if bool(trivial.any()):
            codes = torch.where(trivial, torch.full_like(codes, CODE[Status.OPTIMAL]), codes)
            bound = torch.where(trivial, objective, bound)
        status = tuple(STATUSES[c] for c in codes.tolist())
        extra = {f.name: rows[f.name] for f in ROW_FIELDS if f.name != "bound"}
        return cls(delta=delta, objective=objective, status=status, bound=bound, gap=relative_gap(objective, bound),
                   time=time, **extra, solver=solver, config=dict(config or {}), info=dict(info or {}))

    def rows_form(self) -> dict:
        """The serialisable row form (CPU tensors): what a worker returns and the results store keeps."""
        return {"delta": self.delta.detach().cpu(), "status": status_codes(self.status),
                **{f.name: getattr(self, f.name).detach().cpu() for f in ROW_FIELDS}}

    @property
    def rows(self) -> int:
        return self.delta.shape[0]

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for s in self.status:
            counts[s.value] = counts.get(s.value, 0) + 1
        return counts

    def with_bound(self, bound: torch.Tensor, rtol: float = 1e-9) -> "RoundingResult":
        """A copy with ``bound`` = the larger of the current and the given valid lower bound (R,), and the gap
        recomputed; rows whose gap falls to ≤ ``rtol`` become ``OPTIMAL`` (the bound is the proof)."""
        bound = torch.as_tensor(bound, dtype=F64).reshape(-1).cpu()
        if bound.shape[0] != self.rows:
            raise RoundlabError(f"bound must have {self.rows} entries, got {bound.shape[0]}")
        best = torch.where(torch.isnan(self.bound), bound, torch.fmax(self.bound, bound))
        gap = relative_gap(self.objective, best)
        status = tuple(Status.OPTIMAL if (not math.isnan(g) and g <= rtol) else s
                       for s, g in zip(self.status, gap.tolist()))
        return dataclasses.replace(self, status=status, bound=best, gap=gap, info=dict(self.info))

    def summary(self) -> dict:
        """A JSON-able per-call record: status counts, summed objective/bound, gaps, time, iterations."""
        gaps = self.gap[~torch.isnan(self.gap)]
        has_bound = bool((~torch.isnan(self.bound)).all())
        out = {
            "solver": self.solver,
            "config": self.config,
            "rows": self.rows,
            "d": int(self.delta.shape[1]),
            "objective": float(self.objective.sum()),
            "bound": float(self.bound.sum()) if has_bound else None,
            "status": self.status_counts(),
            "fallback": int(self.fallback.sum()),
            "mean_gap": _nan_to_none(float(gaps.mean())) if gaps.numel() else None,
            "max_gap": _nan_to_none(float(gaps.max())) if gaps.numel() else None,
            "time_s": float(self.time),
            "iterations": int(self.iterations.sum()),
        }
        for k, v in self.info.items():
            if isinstance(v, (int, float, str, bool)) or v is None:
                out.setdefault(k, v)
            elif isinstance(v, dict) and all(isinstance(x, (int, float, str, bool)) for x in v.values()):
                out.setdefault(k, dict(v))
        return out


def relative_gap(objective: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
    """``max(0, objective − bound) / objective`` per row (0 where both are ~0, NaN where there is no bound)."""
    objective = objective.to(F64).cpu()
    bound = bound.to(F64).cpu()
    diff = (objective - bound).clamp_min(0.0)
    # M is a Gram matrix (PSD), so an objective of 0 is optimal whatever the bound says.
    gap = torch.where(objective > 0, diff / objective.clamp_min(1e-300), torch.zeros_like(diff))
    return torch.where(torch.isnan(bound), torch.nan, gap)


def status_codes(status) -> torch.Tensor:
    """A tuple of :class:`Status` as an int64 code tensor (``STATUSES[code]``)."""
    return torch.tensor([CODE[s] for s in status], dtype=torch.long)


def fallback_rows(problem) -> dict:
    """The row form of round-to-nearest recorded as a fallback (a task that timed out, died or raised)."""
    R = problem.rows
    rows = {"delta": problem.nearest().cpu(), "status": torch.full((R,), CODE[Status.FALLBACK], dtype=torch.long)}
    rows.update({f.name: torch.full((R,), f.fill, dtype=f.dtype) for f in ROW_FIELDS})
    rows["fallback"] = torch.ones(R, dtype=torch.bool)
    return rows


def cat_rows(parts: list[dict]) -> dict:
    """Row forms of consecutive row ranges, joined."""
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def row_shape(name: str, R: int, d: int) -> tuple[int, ...]:
    return (R, d) if name == "delta" else (R,)


#: Every column of the row form: (name, dtype).
ROW_COLUMNS: tuple[tuple[str, torch.dtype], ...] = (("delta", F64), ("status", torch.long)) + \
    tuple((f.name, f.dtype) for f in ROW_FIELDS)


def check_rows(rows: dict, R: int, d: int, label: str) -> dict:
    """``rows`` has every column with its shape; returns them in their dtypes (``delta`` on its device, the rest on
    the CPU), status codes in range."""
    missing = [n for n, _ in ROW_COLUMNS if n not in rows]
    if missing:
        raise RoundlabError(f"{label} returned no {', '.join(missing)}")
    out = {}
    for name, dtype in ROW_COLUMNS:
        t = rows[name]
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != row_shape(name, R, d):
            raise RoundlabError(f"{label} returned {name} of shape {tuple(getattr(t, 'shape', ()))}, expected "
                                f"{row_shape(name, R, d)}")
        out[name] = t.detach().to(dtype=dtype) if name == "delta" else t.detach().to(device="cpu", dtype=dtype)
    if rows["status"].dtype.is_floating_point or rows["status"].dtype in (torch.bool, torch.complex64, torch.complex128):
        raise RoundlabError(f"{label} returned status codes of dtype {rows['status'].dtype}; they must be integers")
    codes = out["status"]
    if bool((codes < 0).any()) or bool((codes >= len(STATUSES)).any()):
        raise RoundlabError(f"{label} returned status codes outside 0..{len(STATUSES) - 1}")
    return out


_declared = {f.name for f in dataclasses.fields(RoundingResult)}
assert all(f.name in _declared for f in ROW_FIELDS), "every ROW_FIELDS entry is a RoundingResult attribute"
