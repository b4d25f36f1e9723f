"""Per-row solver time and work of a run, per segment width, read back from the run's results store.

Every answer keeps each row's ``row_time`` (seconds of the row's own search where the solver works row by row — bnb,
miqp: after the chunk's batched set-up such as warm starts and Shor fits — else the call's time split evenly) and
``iterations`` (nodes for bnb and the MIQP backends; ``nodes_per_s`` is NaN where a solver counts none).
"""

from __future__ import annotations

from pathlib import Path

import torch


def row_times(run: Path) -> dict[int, dict[str, torch.Tensor]]:
    """``{d: {"row_time": (n,), "iterations": (n,)}}`` over every answer in ``run``'s results store."""
    from roundlab.fanout import ResultStore

    path = Path(run) / "subproblems.sqlite"
    if not path.exists():
        return {}
    parts: dict[int, dict[str, list]] = {}
    with ResultStore(path) as store:
        for _, a in store.answers():
            got = parts.setdefault(a.delta.shape[1], {"row_time": [], "iterations": []})
            got["row_time"].append(a.row_time.double())
            got["iterations"].append(a.iterations.double())
    return {d: {k: torch.cat(v) for k, v in got.items()} for d, got in sorted(parts.items())}


def timing_by_width(run: Path) -> dict[int, dict]:
    """Per width: median / p90 / max seconds per row and nodes per second of search."""
    out = {}
    for d, t in row_times(run).items():
        rt, it = t["row_time"], t["iterations"]
        if float(rt.sum()) <= 0:
            continue
        nodes = float(it.sum() / rt.sum()) if float(it.sum()) > 0 else float("nan")
        out[d] = {"median_row_s": float(rt.median()), "p90_row_s": float(rt.quantile(0.9)),
                  "max_row_s": float(rt.max()), "nodes_per_s": nodes}
    return out
