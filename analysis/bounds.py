"""Certified lower bounds of Wqer's segment problems and the per-segment summary Table 1 logs."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import torch

from roundlab.files import atomic_file


class Bounds:
    """``lower_bound(problem, "auto", sdp_max_d=0, **options)`` per distinct problem, kept in a file.

    Without ridge every Table 1 row meets the same subproblems, so each is bounded once for all rows (and runs)."""

    def __init__(self, path: Path, options: dict):
        self.path, self.options = Path(path), dict(options)
        self.known: dict[str, torch.Tensor] | None = None

    def key(self, problem) -> str:
        h = hashlib.sha1()
        for t in (problem.lo, problem.hi, problem.M):
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return "-".join([h.hexdigest()] + [str(v) for v in self.options.values()])

    def __call__(self, problem) -> torch.Tensor:
        from roundlab.solvers.bound import lower_bound

        if self.known is None:
            self.known = torch.load(self.path, weights_only=True) if self.path.exists() else {}
        key = self.key(problem)
        if key not in self.known:
            self.known[key] = lower_bound(problem, "auto", sdp_max_d=0, **self.options).bound
            with atomic_file(self.path) as tmp:
                torch.save(self.known, tmp)
        return self.known[key]


def segment_summary(bounds: Bounds, step, problem, result, S) -> dict:
    """Per segment: rows, d, objective, claimed/proven optimal rows, summed gap to the best lower bound."""
    from roundlab.problem import Status

    t = time.perf_counter()
    proven = result.with_bound(bounds(problem))
    gaps = proven.gap
    ok = ~torch.isnan(gaps)
    return {"rows": problem.rows, "d": problem.d, "objective": float(result.objective.sum()),
            "bound": float(proven.bound.sum()),
            "claimed_optimal": sum(s == Status.OPTIMAL for s in result.status),
            "proven_optimal": sum(s == Status.OPTIMAL for s in proven.status),
            "gap_sum": float(gaps[ok].sum()), "gap_rows": int(ok.sum()),
            "status": result.status_counts(), "bound_time_s": time.perf_counter() - t}
