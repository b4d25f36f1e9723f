"""Every Wqer row of a Table 1 run against the proven optimum of the exact run (``bnb``) on the same row.

Without Aqer and ridge every Table 1 run meets the very same row subproblems, so a run's rows line up one to one
with the exact run's. :func:`segment_rows` is the per-segment problem-log hook (it keeps each row's objective and
certified bound); :class:`Rows` holds a whole run's rows in network order; :func:`compare` measures a run against
the exact one: share of rows the solver itself proved optimal, share at the proven optimum, summed excess over the
optimum on the proven rows, and the certified gap over every row (against the best valid lower bound known for it).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import torch

#: a row is proven optimal when its certified bound is within this relative distance of its objective (bnb's closed
#: searches certify ≤ 6.8e-6 on fmnist-vit: its bound keeps a float round-off allowance below the incumbent)
PROOF_RTOL = 1e-5
#: a row is "at the optimum" when its objective is within this relative tolerance of the proven optimum
AT_OPTIMUM_RTOL = 1e-9
#: an objective below the proven optimum by more than this (relative) contradicts the proof: counted, never hidden
CONTRADICTION_RTOL = 1e-7


def segment_rows(step, problem, result, S) -> dict:
    """The problem-log record of one segment: size, summed objective, own claims, and every row's objective, claim
    (status optimal) and certified lower bound (None where the solver gives none)."""
    from roundlab.problem import Status

    bound = result.bound.double().cpu()
    return {"rows": problem.rows, "d": problem.d, "solver": result.solver, "objective": float(result.objective.sum()),
            "claimed_optimal": sum(s == Status.OPTIMAL for s in result.status), "status": result.status_counts(),
            "row_optimal": [s == Status.OPTIMAL for s in result.status],
            "row_objective": result.objective.double().cpu().tolist(),
            "row_bound": [None if math.isnan(b) else b for b in bound.tolist()]}


@dataclass(frozen=True)
class Rows:
    """All rows of one run in network order: the layer (index into ``layers``), width, objective, certified bound
    (NaN: none), and whether the run's own solver proved the row optimal (``claimed``)."""

    layers: tuple[str, ...]
    layer: torch.Tensor         # (R,) long
    d: torch.Tensor             # (R,) long
    objective: torch.Tensor     # (R,) float64
    bound: torch.Tensor         # (R,) float64
    claimed: torch.Tensor       # (R,) bool
    segments: tuple             # ((layer, step, rows, d), ...): what must line up between runs
    left_out: dict              # layer → rows the pipeline rounded to nearest whatever the solver

    @classmethod
    def from_problems(cls, problems: list[dict], solver: str) -> "Rows":
        """The rows ``solver`` decided: segments the pipeline rounds to nearest whatever the solver (the patch
        embedding, as released) are left out and counted in ``left_out`` (layer → rows)."""
        left_out: Counter = Counter()
        for p in problems:
            if p["solver"] != solver:
                left_out[p["layer"]] += p["rows"]
        problems = [p for p in problems if p["solver"] == solver]
        layers = tuple(dict.fromkeys(p["layer"] for p in problems))
        index = {name: i for i, name in enumerate(layers)}
        cols: dict[str, list] = {k: [] for k in ("layer", "d", "objective", "bound", "claimed")}
        for p in problems:
            if "row_objective" not in p:
                raise ValueError(f"the problem log of layer {p['layer']} has no per-row objectives (made before "
                                 f"Table 1 kept them); rerun with a fresh --runs folder")
            n = p["rows"]
            cols["layer"] += [index[p["layer"]]] * n
            cols["d"] += [p["d"]] * n
            cols["objective"] += p["row_objective"]
            cols["bound"] += [math.nan if b is None else b for b in p["row_bound"]]
            cols["claimed"] += p["row_optimal"]
        f64, i64 = torch.float64, torch.long
        return cls(layers, torch.tensor(cols["layer"], dtype=i64), torch.tensor(cols["d"], dtype=i64),
                   torch.tensor(cols["objective"], dtype=f64), torch.tensor(cols["bound"], dtype=f64),
                   torch.tensor(cols["claimed"], dtype=torch.bool),
                   tuple((p["layer"], p["step"], p["rows"], p["d"]) for p in problems), dict(left_out))

    def proven(self) -> torch.Tensor:
        """Rows whose certified bound meets the objective to :data:`PROOF_RTOL` (an optimum with its proof)."""
        gap = self.objective - self.bound
        return (~torch.isnan(self.bound)) & (gap <= PROOF_RTOL * self.objective.abs() + 1e-15)


def check_aligned(run: Rows, exact: Rows, label: str) -> None:
    if run.segments != exact.segments:
        raise ValueError(f"{label}: its Wqer segments differ from the exact run's (not the same subproblems: "
                         f"was Aqer or ridge on?)")


def compare(run: Rows, exact: Rows, mask: torch.Tensor | None = None) -> dict:
    """``run``'s rows (all, or those in ``mask``) against the exact run's proven optima."""
    mask = torch.ones_like(run.claimed) if mask is None else mask
    optimal = exact.proven() & mask
    opt, obj = exact.objective[optimal], run.objective[optimal]
    bound = torch.fmax(exact.bound, run.bound)                 # the best valid lower bound of each row
    bounded = mask & ~torch.isnan(bound)
    total = float(run.objective[bounded].sum())
    at = obj <= opt + AT_OPTIMUM_RTOL * opt.abs() + 1e-15
    n = int(mask.sum())
    return {
        "rows": n, "rows_proven_by_exact": int(optimal.sum()), "rows_bounded": int(bounded.sum()),
        "share_claimed_optimal": float(run.claimed[mask].double().mean()) if n else math.nan,
        "share_at_optimum": float(at.double().mean()) if len(at) else math.nan,
        "excess_over_optimum": float(obj.sum() / opt.sum() - 1) if float(opt.sum()) > 0 else math.nan,
        "certified_gap": (total - float(bound[bounded].sum())) / total if total > 0 else math.nan,
        "contradictions": int((obj < opt - CONTRADICTION_RTOL * opt.abs() - 1e-12).sum()),
    }


def breakdown(run: Rows, exact: Rows, by: str) -> list[dict]:
    """:func:`compare` per segment width (``by="d"``) or per layer (``by="layer"``)."""
    key = run.d if by == "d" else run.layer
    out = []
    for k in torch.unique(key).tolist():
        row = compare(run, exact, key == k)
        out.append({by: run.layers[k] if by == "layer" else k, **row})
    return out
