"""A solver fanned out over an executor, every answer recorded in a results store as it completes.

:class:`FannedSolver` wraps any registered solver and looks exactly like it to Wqer (same ``name`` and ``config``;
the answer goes through the same invariant checks of :class:`~roundlab.solvers.base.Solver`). A call splits the
problem's rows into chunks of ``chunk_rows`` (the whole segment when None), and for every chunk

1. computes a content key (:func:`task_key`) and reuses the stored answer if the store has it (a resumed run);
2. otherwise sends ``(solver, subproblem, init)`` to the executor and records the answer the moment it returns.

The chunking depends only on ``chunk_rows``, never on the executor or the number of workers, so the serial, process
and Ray executors give identical answers. Faults become either one clear error or a recorded fallback:

* the solver raises: :class:`RoundlabError` naming the layer, rows and exception (``on_error="raise"``, default:
  a bug should stop the run, and nothing finished is lost), or round-to-nearest recorded as a fallback
  (``on_error="fallback"``);
* a task exceeds ``task_timeout`` or its worker dies ``retries + 1`` times: round-to-nearest, status ``fallback``,
  the reason in the store, the layer record and ``result.json`` (``fanout.fallbacks``).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import roundlab
from roundlab.errors import RoundlabError
from roundlab.validate import check_known
from roundlab.fanout.executors import Executor, check_options, get_executor, list_executors
from roundlab.fanout.store import Answer, ResultStore
from roundlab.problem import RoundingProblem
from roundlab.result import STATUSES, RoundingResult, cat_rows, fallback_rows
from roundlab.solvers.base import Solver

ON_ERROR = ("raise", "fallback")


@dataclass(frozen=True)
class FanoutConfig:
    """How subproblems are run: ``executor`` (serial | process | ray), ``workers``, ``chunk_rows`` (rows per task;
    None: one task per Wqer segment), ``task_timeout`` (seconds, process/ray only), ``retries`` (after a worker
    death), ``on_error`` (raise | fallback when the solver raises)."""

    executor: str = "serial"
    workers: int = 1
    chunk_rows: int | None = None
    task_timeout: float | None = None
    retries: int = 2
    on_error: str = "raise"

    def __post_init__(self):
        check_known("executor", self.executor, list_executors())
        if self.chunk_rows is not None and (not isinstance(self.chunk_rows, int) or isinstance(self.chunk_rows, bool)
                                            or self.chunk_rows < 1):
            raise RoundlabError(f"chunk_rows must be a positive integer or None, got {self.chunk_rows!r}")
        if self.on_error not in ON_ERROR:
            raise RoundlabError(f"on_error must be one of {ON_ERROR}, got {self.on_error!r}")
        if self.executor == "serial" and self.task_timeout is not None:
            raise RoundlabError("task_timeout needs --executor process or ray: a serial solve cannot be interrupted")
        check_options(self.workers, self.task_timeout, self.retries)

    def make_executor(self) -> Executor:
        return get_executor(self.executor, workers=self.workers, task_timeout=self.task_timeout,
                            retries=self.retries)


# --------------------------------------------------------------------------------------------------- keys
def _digest_tensor(h, t: torch.Tensor | None) -> None:
    if t is None:
        h.update(b"none")
        return
    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.numpy().tobytes())


def solver_identity(solver: Solver) -> str:
    cls = type(solver)
    return json.dumps({"class": f"{cls.__module__}.{cls.__qualname__}", "config": solver.config.asdict(),
                       "roundlab": roundlab.__version__}, sort_keys=True, default=str)


def task_key(solver: Solver, problem: RoundingProblem, init: torch.Tensor | None, shared: str | None = None) -> str:
    """SHA-256 of everything that determines a task's answer: the solver's class, config and roundlab version, the
    subproblem's candidates, objective data and grid, and the warm start. ``shared``: a precomputed digest of a
    shared ``M``/``X`` (the same for every chunk of a segment), else they are hashed here."""
    h = hashlib.sha256(solver_identity(solver).encode())
    for t in (problem.lo, problem.hi, problem.w, problem.scale, problem.zero, init):
        _digest_tensor(h, t)
    h.update(f"bits={problem.bits}".encode())
    if shared is not None:
        h.update(shared.encode())
    else:
        _digest_tensor(h, problem.X if problem.X is not None else problem.M)
    return h.hexdigest()


def shared_digest(problem: RoundingProblem) -> str | None:
    """Digest of the objective data when every row shares it (``M`` (d, d) or ``X`` (N, d)), else None."""
    data = problem.X if problem.X is not None else problem.M
    if data.dim() != 2:
        return None
    h = hashlib.sha256()
    _digest_tensor(h, data)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------- tasks
def solve_task(payload) -> dict:
    """Executor task: ``payload = (solver, subproblem, init)``; returns the answer's row form (CPU tensors)."""
    solver, problem, init = payload
    return solver(problem, init=init).rows_form()


#: Fallback outcomes caused by the machine, not the task: solved again on the next run.
TRANSIENT = ("timeout", "died")


def _fits(a: Answer, problem: RoundingProblem) -> bool:
    """A stored answer can be served for ``problem``: on its candidates, status codes in range."""
    codes = a.status
    return bool(((codes >= 0) & (codes < len(STATUSES))).all()) and \
        bool(problem.on_candidates(a.delta.to(problem.device)).all())


# --------------------------------------------------------------------------------------------------- fanned
class FannedSolver:
    """``inner`` run chunk by chunk through ``executor``; answers recorded in ``store`` (optional).

    Called like a solver (``fanned(problem, init) -> RoundingResult``) and exposing the wrapped solver's ``name``,
    ``config`` and declarations (``objective``, ``exact``, ...), so Wqer cannot tell the two apart; the result is
    rebuilt from the chunks' row forms and checked by :meth:`RoundingResult.from_rows` like any solver's."""

    def __init__(self, inner: Solver, executor: Executor | None = None, store: ResultStore | None = None,
                 chunk_rows: int | None = None, on_error: str = "raise", digest: str | None = None,
                 error_log: str | Path | None = None):
        if not isinstance(inner, Solver):
            raise RoundlabError(f"FannedSolver wraps a Solver instance, got {type(inner).__name__}")
        if on_error not in ON_ERROR:
            raise RoundlabError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self.inner = inner
        self.executor = executor or get_executor("serial")
        self.store = store
        self.chunk_rows = chunk_rows
        self.on_error = on_error
        self.digest = digest
        self.error_log = None if error_log is None else Path(error_log)
        self.context: dict = {}
        self._calls: dict[str, int] = {}
        self.stats = _Stats()

    # the wrapped solver's identity and declarations
    name = property(lambda self: self.inner.name)
    config = property(lambda self: self.inner.config)
    objective = property(lambda self: self.inner.objective)
    exact = property(lambda self: self.inner.exact)
    monotone = property(lambda self: self.inner.monotone)

    def set_context(self, **context) -> None:
        """Label the following calls (e.g. ``layer=name``) in the store's metadata and the fallback reports."""
        self.context = dict(context)

    def chunks(self, rows: int) -> list[slice]:
        step = rows if self.chunk_rows is None else self.chunk_rows
        return [slice(a, min(a + step, rows)) for a in range(0, rows, step)]

    def __call__(self, problem: RoundingProblem, init: torch.Tensor | None = None) -> RoundingResult:
        if not isinstance(problem, RoundingProblem):
            raise RoundlabError(f"solver {self.name!r} expects a RoundingProblem, got {type(problem).__name__}")
        self.inner.check(problem)
        if init is not None:
            init = problem.snap(init, "init")
        t0 = time.perf_counter()
        label = self.context.get("layer", "")
        call = self._calls.get(label, 0)
        self._calls[label] = call + 1
        parts = self.chunks(problem.rows)
        answers, todo, keys = self._stored(problem, init, parts, call)
        self._solve(todo, keys, parts, answers, call, label)
        return RoundingResult.from_rows(problem, cat_rows([a.rows for a in answers]), solver=self.name,
                                        config=self.config.asdict(), time=time.perf_counter() - t0,
                                        info={"tasks": len(parts), "reused": len(parts) - len(todo)},
                                        label=f"solver {self.name!r}")

    def _stored(self, problem, init, parts, call):
        """Per chunk: the stored answer (reused) or a task to run; and every chunk's key."""
        shared = shared_digest(problem)
        answers: list[Answer | None] = [None] * len(parts)
        keys, todo = [], []
        for i, sl in enumerate(parts):
            sub = problem.subproblem(sl)
            sub_init = None if init is None else init[sl]
            key = task_key(self.inner, sub, sub_init, shared)
            keys.append(key)
            stored = self.store.get(key, sub.rows, sub.d) if self.store is not None else None
            if stored is not None and not _fits(stored, sub):
                self.store.discard(key, "answer off the subproblem's candidates or with invalid status codes")
                stored = None
            if stored is not None and stored.outcome in TRANSIENT:
                stored = None                       # a time-out or a dead worker says nothing about the task
            if stored is not None:
                answers[i] = stored
                self.stats.reused(stored, self.context, call, sl)
            else:
                todo.append((i, sub, sub_init))
        return answers, todo, keys

    def _solve(self, todo, keys, parts, answers, call, label) -> None:
        """Run the tasks on the executor; record each answer (or fallback) the moment it returns."""
        t0 = time.perf_counter()
        payloads = [(self.inner, sub, sub_init) for _, sub, sub_init in todo]
        for out in self.executor.run(solve_task, payloads):
            i, sub, _ = todo[out.index]
            sl = parts[i]
            meta = {**self.context, "call": call, "rows": [sl.start, sl.stop], "digest": self.digest,
                    "solver": self.inner.name, "executor": self.executor.name, "seconds": out.seconds,
                    "attempts": out.attempts}
            where = f"{label or 'problem'} (call {call}), rows {sl.start}-{sl.stop - 1}"
            if out.ok:
                ans = Answer(meta=meta, **out.value)
            elif out.kind == "error" and self.on_error == "raise":
                self._log_error(where, out)
                raise RoundlabError(f"solver {self.inner.name} raised on {where}: {out.message}"
                                    f"{self._log_hint()} (finished subproblems are kept; rerun to resume, or "
                                    f"--on-solver-error fallback)")
            else:
                self._log_error(where, out)
                ans = Answer(outcome=out.kind, reason=f"{out.kind}: {out.message}", meta=meta, **fallback_rows(sub))
            if self.store is not None:
                self.store.put(keys[i], ans)
            answers[i] = ans
            self.stats.solved(ans, self.context, call, sl)
        self.stats.wall_s += time.perf_counter() - t0

    def _log_error(self, where: str, out) -> None:
        if self.error_log is None:
            return
        with open(self.error_log, "a", encoding="utf-8") as f:
            f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {out.kind} on {where}: {out.message}\n"
                    f"{out.traceback}\n")

    def _log_hint(self) -> str:
        return f" (traceback in {self.error_log})" if self.error_log is not None else ""

    def report(self) -> dict:
        """Counts for ``result.json``: tasks/rows solved and reused, fallbacks with reasons, throughput."""
        return {**self.executor.describe(), "chunk_rows": self.chunk_rows, "on_error": self.on_error,
                **self.stats.asdict()}

    def close(self) -> None:
        self.executor.close()
        if self.store is not None:
            self.store.close()


class _Stats:
    def __init__(self):
        self.tasks_solved = self.rows_solved = self.tasks_reused = self.rows_reused = 0
        self.wall_s = 0.0
        self.fallbacks: list[dict] = []

    def _fallback(self, a: Answer, context: dict, call: int, sl: slice, reused: bool) -> None:
        if a.outcome != "ok":
            self.fallbacks.append({**context, "call": call, "rows": [sl.start, sl.stop], "reason": a.reason,
                                   "reused": reused})

    def solved(self, a: Answer, context, call, sl) -> None:
        self.tasks_solved += 1
        self.rows_solved += sl.stop - sl.start
        self._fallback(a, context, call, sl, False)

    def reused(self, a: Answer, context, call, sl) -> None:
        self.tasks_reused += 1
        self.rows_reused += sl.stop - sl.start
        self._fallback(a, context, call, sl, True)

    def asdict(self) -> dict:
        return {"tasks_solved": self.tasks_solved, "rows_solved": self.rows_solved,
                "tasks_reused": self.tasks_reused, "rows_reused": self.rows_reused,
                "solve_wall_s": self.wall_s,
                "rows_per_s": self.rows_solved / self.wall_s if self.wall_s > 0 else None,
                "fallback_rows": sum(f["rows"][1] - f["rows"][0] for f in self.fallbacks),
                "fallbacks": self.fallbacks}
