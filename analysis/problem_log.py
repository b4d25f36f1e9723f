"""The per-segment problem log of a run: ``problems.jsonl``, one record per Wqer segment, keyed by layer name.

Written by :class:`ProblemLog`, the ``on_problem`` hook of :func:`roundlab.pipeline.run.run_erq`:
``{"layer": name, "step": t, **summarise(step, problem, result, S)}``. ``problems.done`` marks a complete log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

PROBLEMS = "problems.jsonl"
DONE = "problems.done"

#: ``summarise(step, problem, result, S) -> dict``: what is kept of one Wqer segment.
Summarise = Callable[[int, object, object, object], dict]


class ProblemLog:
    """``on_problem(layer, step, problem, result, S)`` hook appending one summarised record per segment."""

    def __init__(self, path: Path, summarise: Summarise):
        from roundlab.pipeline.records import RecordWriter

        self.writer = RecordWriter(path)
        self.summarise = summarise

    def __call__(self, layer: str, step: int, problem, result, S) -> None:
        self.writer.append({"layer": layer, "step": step, **self.summarise(step, problem, result, S)})


def read_problems(path: Path) -> list[dict]:
    """The log's records in network order, the last one of each (layer, step) kept (a resumed layer rewrites its
    steps)."""
    from roundlab.pipeline.records import RecordWriter

    out: dict[tuple, dict] = {}
    for r in RecordWriter(path).read():
        out[(r["layer"], r["step"])] = r
    return list(out.values())


def open_log(run: Path, summarise: Summarise, wqer: bool) -> tuple[ProblemLog, bool]:
    """The problem log of ``run``, continued where it covers every layer the run has finished; and whether the run
    must start afresh (a finished Wqer layer missing from the log would never be logged by a resumed run)."""
    from roundlab.pipeline.records import RecordWriter

    path = Path(run) / PROBLEMS
    finished = {r["layer"] for r in RecordWriter(Path(run) / "records.jsonl").read()} if Path(run).exists() else set()
    logged = {r["layer"] for r in RecordWriter(path).read()}
    fresh = wqer and not finished <= logged
    if fresh or not finished:
        path.unlink(missing_ok=True)
    return ProblemLog(path, summarise), fresh
