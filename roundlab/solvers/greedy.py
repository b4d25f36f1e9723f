"""``greedy``: best-improvement one-flip local search with the exact flip delta, batched over rows.

From round-to-nearest (or ``init``, or the answer of the solver named by ``start``, e.g. ``start="gptq"``), each
iteration flips, in every row that still improves, the element with the most negative exact change
``Δ_j g_j + Δ_j² M_jj`` (``Δ_j`` = other candidate − current, ``g = 2Mδ`` kept current by rank-one updates, O(d)
per flip after an O(d²) start). A flip must lower the loss by more than
``tol × loss`` (guards against round-off cycling). When no row improves, ``g`` is recomputed from scratch and
checked once more, so a row reported LOCAL_OPTIMUM is certified 1-flip optimal (no single flip lowers it by more
than ``tol`` relative). Rows still improving after ``max_iter`` flips get ITERATION_LIMIT. Never worse than its start.
``iterations`` counts flips.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from roundlab.problem import Status
from roundlab.solvers.base import (CODE, Solution, Solver, SolverConfig, check_float, check_int, check_start,
                                   seeded_start, sync_every)
from roundlab.solvers.registry import register_solver


@dataclass(frozen=True)
class GreedyConfig(SolverConfig):
    max_iter: int | None = None   # flips per row; None → 100·d
    tol: float = 1e-12            # a flip must lower the loss by more than tol × current loss
    start: str | None = None      # without init: start from this solver's answer (None: round-to-nearest)

    def validate(self):
        check_int("max_iter", self.max_iter, 0, none=True)
        check_float("tol", self.tol, 0.0, 1e-3)
        check_start("start", self.start, "greedy")


def descend(problem, delta: torch.Tensor, max_iter: int, tol: float, every: int | None = None):
    """One-flip best-improvement descent from ``delta``; returns (delta, flips (R,), still-improving (R,)).

    ``every``: flip iterations queued between two host reads (default :func:`~roundlab.solvers.base.sync_every` of
    the device: every iteration on the CPU). It changes no returned value: an iteration in which no row improves
    writes every row's own entries back and adds 0 to ``flips`` (``g`` and ``loss``, which are recomputed before
    they are used again, may change the sign of a zero, which changes no comparison), so every later iteration of
    its batch finds no improving row either; the batch's count of improving iterations is then where the loop would
    have stopped, and the stop is handled as without batches (``tests/solvers/test_greedy.py`` checks every setting)."""
    every = sync_every(delta.device) if every is None else every
    delta = delta.clone()
    R = problem.rows
    rows = torch.arange(R, device=delta.device)
    diag = problem.diag.expand_as(delta)
    g = 2 * problem.matvec(delta)
    loss = (g * delta).sum(1) / 2
    flips = torch.zeros(R, dtype=torch.long, device=delta.device)
    improving = torch.zeros(R, dtype=torch.bool, device=delta.device)
    fresh = True                                      # g was just computed from scratch
    it = 0
    while it < max_iter:
        steps = min(every, max_iter - it)
        if steps == 1:
            improving, loss = _flip(problem, delta, g, loss, diag, rows, flips, tol)
            moved = int(bool(improving.any()))
        else:
            count = torch.zeros((), dtype=torch.long, device=delta.device)   # iterations with an improving row
            for _ in range(steps):
                improving, loss = _flip(problem, delta, g, loss, diag, rows, flips, tol)
                count += improving.any()
            moved = int(count)
        it += moved
        if moved == steps:
            fresh = False
            continue
        if fresh and moved == 0:                      # no row improves on an exact gradient: done
            break
        g = 2 * problem.matvec(delta)                 # re-check with an exact gradient before stopping
        loss = (g * delta).sum(1) / 2
        fresh = True
    if it >= max_iter:                                # did the last state still have an improving flip?
        g = 2 * problem.matvec(delta)
        D = problem.flipped(delta) - delta
        loss = (g * delta).sum(1) / 2
        improving = (D * g + D * D * diag).amin(1) < -tol * loss.clamp_min(0)
    else:
        improving = torch.zeros_like(improving)
    return delta, flips, improving


def _flip(problem, delta, g, loss, diag, rows, flips, tol: float):
    """Every row that has a flip lowering its loss by more than ``tol × loss`` makes its best one; in place on
    ``delta``, ``g`` and ``flips``. Returns (improving (R,), loss)."""
    other = problem.flipped(delta)
    D = other - delta
    gain = D * g + D * D * diag                       # exact change of the loss for each single flip
    j = gain.argmin(1)                                # (argmin + gather: min(dim) spins threads on tiny inputs)
    best = gain.gather(1, j[:, None])[:, 0]
    improving = best < -tol * loss.clamp_min(0)
    Dj = torch.where(improving, D[rows, j], torch.zeros_like(best))
    delta[rows, j] = torch.where(improving, other[rows, j], delta[rows, j])
    g += 2 * Dj[:, None] * problem.columns(j)
    flips += improving
    return improving, loss + torch.where(improving, best, torch.zeros_like(best))


@register_solver("greedy")
class Greedy(Solver):
    """Best-improvement one-flip local search (exact flip delta, rank-one gradient updates) from nearest or init."""

    Config = GreedyConfig
    monotone = True

    def solve(self, problem, init):
        start = seeded_start(problem, init, self.config.start)
        max_iter = 100 * problem.d if self.config.max_iter is None else self.config.max_iter
        delta, flips, improving = descend(problem, start, max_iter, self.config.tol)
        codes = torch.where(improving.cpu(), CODE[Status.ITERATION_LIMIT], CODE[Status.LOCAL_OPTIMUM])
        return Solution(delta, codes, iterations=flips.cpu())
