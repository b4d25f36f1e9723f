"""``faulty``: another solver with injected faults, to test executors, fallbacks and resume (not for results).

It answers like ``inner`` after sleeping ``delay`` seconds, unless the subproblem is picked for a fault
(deterministically: a hash of its candidates falls below ``fail_fraction``). Faults: ``raise`` (a RuntimeError),
``hang`` (sleeps for an hour: a time-out), ``kill`` (SIGKILLs its worker process, every time) and ``kill_once``
(SIGKILLs its worker the first time only, system-wide, using the file ``marker``). A kill is refused in the process
that built the solver (a serial run), so it can never take down the caller.

    roundlab quantize --solver faulty --solver-opt inner=greedy --solver-opt fail=kill_once \\
        --solver-opt marker=/tmp/once --executor process --workers 2
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from dataclasses import dataclass

from roundlab.errors import RoundlabError
from roundlab.solvers.base import Solution, Solver, SolverConfig, check_choice, check_float, check_start
from roundlab.solvers.registry import get_solver, register_solver

FAULTS = ("none", "raise", "hang", "kill", "kill_once")


@dataclass(frozen=True)
class FaultyConfig(SolverConfig):
    inner: str = "greedy"
    delay: float = 0.0                 # seconds slept before every answer
    fail: str = "none"
    fail_fraction: float = 1.0         # share of subproblems that fault (picked by a hash of their candidates)
    marker: str | None = None          # kill_once: this file records that the kill happened

    def validate(self):
        check_start("inner", self.inner, "faulty")
        if self.inner is None:
            raise RoundlabError("inner must name the solver that answers")
        check_float("delay", self.delay, 0.0, 3600.0)
        check_choice("fail", self.fail, FAULTS)
        check_float("fail_fraction", self.fail_fraction, 0.0, 1.0)
        if self.fail == "kill_once" and not self.marker:
            raise RoundlabError("fail=kill_once needs marker=<path of a file to create>")


@register_solver("faulty")
class Faulty(Solver):
    """Fault injection around another solver (raise / hang / kill its worker), for testing executors and resume."""

    Config = FaultyConfig

    def __init__(self, config=None, **options):
        super().__init__(config, **options)
        self.owner_pid = os.getpid()

    def picked(self, problem) -> bool:
        h = hashlib.sha256(problem.lo.detach().cpu().contiguous().numpy().tobytes()).digest()
        return int.from_bytes(h[:4], "little") / 2**32 < self.config.fail_fraction

    def solve(self, problem, init):
        cfg = self.config
        if cfg.delay:
            time.sleep(cfg.delay)
        if cfg.fail != "none" and self.picked(problem):
            self._fault(cfg)
        res = get_solver(cfg.inner)(problem, init=init)
        return Solution(res.delta, res.status, bound=res.bound, iterations=res.iterations, fallback=res.fallback)

    def _fault(self, cfg) -> None:
        if cfg.fail == "raise":
            raise RuntimeError("injected fault (faulty solver, fail=raise)")
        if cfg.fail == "hang":
            time.sleep(3600)
        if cfg.fail in ("kill", "kill_once"):
            if os.getpid() == self.owner_pid:
                raise RoundlabError("faulty solver: refusing to kill the process that runs the pipeline "
                                    "(use an executor with worker processes)")
            if cfg.fail == "kill_once":
                try:
                    os.close(os.open(cfg.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    return
            os.kill(os.getpid(), signal.SIGKILL)
