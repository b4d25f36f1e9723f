"""``rr``: ERQ's Rounding Refinement (paper Eq. 13–15; ERQ_SPEC §6.3), batched over rows, on any device.

Per row, from round-to-nearest (or ``init``), up to ``max_iter`` times:

1. ``g = 2Mδ`` (the gradient of ``δMδᵀ``); candidates ``J = {j : δ_j g_j > 0}`` (``mask="strict"``, the release) or
   ``≥ 0`` (``mask="nonneg"``, the paper's 𝟙(·)); if ``J`` is empty the row stops;
2. take the top-``k`` of ``|g_j|`` over ``J`` (the release hard-wires k = 1) and propose
   * ``variant="release"``: a unit gradient step ``u = δ_j − g_j`` snapped to the nearer of ``lo_j``/``hi_j``
     (tie → ``hi``); it flips only where ``|g_j|`` is large enough, so it is not scale invariant;
   * ``variant="paper"``: the flip itself (Eq. 13), to the other candidate;
3. accept if the loss does not rise (equality accepted); a strict rise, or a proposal that changes nothing (e.g. a
   clamped element, whose two candidates coincide), stops the row for good — exactly the release's per-row outcome.

The incremental implementation (default) keeps ``g`` current with rank-one updates, ``g += 2Δ M[:, j]``, and the
loss with the exact flip delta ``2Δ(Mδ)_j + Δ²M_jj`` (for k > 1, ``Δᵀg_J + Δᵀ M_JJ Δ``): O(d) per row and
iteration. ``incremental=False`` is the plain reference the authors' code corresponds to: it recomputes ``2Mδ`` and
both losses every iteration (O(d²)); the two make the same decisions (tested; ``benchmarks/bench_solvers.py`` times
them). ``loop="release"`` also reproduces the release's *runtime*: its block loop runs until every row rejects in the
same iteration, so one row whose proposal is a no-op (common: see above) keeps all rows iterating to ``max_iter``;
the extra iterations change nothing, so results are identical to ``loop="row"``, which stops once every row has
stopped. ``iterations`` counts accepted flips (``info["loop_iterations"]`` the loop's passes); rows that accepted a
flip in the last allowed iteration get ITERATION_LIMIT, the others HEURISTIC. Never worse than its start, by
construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from roundlab.problem import Status
from roundlab.solvers.base import (CODE, Solution, Solver, SolverConfig, check_bool, check_choice, check_int,
                                   start_point, sync_every)
from roundlab.solvers.registry import register_solver


@dataclass(frozen=True)
class RRConfig(SolverConfig):
    variant: str = "release"      # "release" (snap a unit gradient step) | "paper" (flip, Eq. 13)
    k: int = 1                    # top-k elements per iteration (paper Table 5; the release has k = 1)
    max_iter: int = 100
    mask: str = "strict"          # "strict" (δ_j g_j > 0, the release) | "nonneg" (≥ 0, the paper's indicator)
    incremental: bool = True      # False: recompute 2Mδ and the losses each iteration (the authors' way)
    loop: str = "row"             # "row": stop when every row has stopped | "release": the authors' group loop

    def validate(self):
        check_choice("variant", self.variant, ("release", "paper"))
        check_int("k", self.k, 1)
        check_int("max_iter", self.max_iter, 0)
        check_choice("mask", self.mask, ("strict", "nonneg"))
        check_bool("incremental", self.incremental)
        check_choice("loop", self.loop, ("row", "release"))


def _gather_M(problem, J: torch.Tensor) -> torch.Tensor:
    """(R, k, d): rows ``J[r, i]`` of row r's ``M``."""
    return torch.stack([problem.columns(J[:, i]) for i in range(J.shape[1])], 1)


def _proposal(problem, cfg: RRConfig, delta: torch.Tensor, g: torch.Tensor):
    """Selected indices J (R, k), whether each pick is valid, the current and proposed values at J."""
    prod = delta * g
    cand = prod > 0 if cfg.mask == "strict" else prod >= 0
    score = torch.where(cand, g.abs(), torch.full_like(g, -1.0))
    k = min(cfg.k, problem.d)
    if k == 1:
        J = score.argmax(1, keepdim=True)        # argmax + gather: max(dim) is slow on tiny inputs
        val = score.gather(1, J)
    else:
        val, J = score.topk(k, 1)
    sel = val >= 0
    dJ, gJ = delta.gather(1, J), g.gather(1, J)
    loJ, hiJ = problem.lo.gather(1, J), problem.hi.gather(1, J)
    if cfg.variant == "release":
        u = dJ - gJ
        new = torch.where((u - hiJ).abs() <= (u - loJ).abs(), hiJ, loJ)
    else:
        new = torch.where(dJ == hiJ, loJ, hiJ)
    new = torch.where(sel, new, dJ)
    return J, sel.any(1), dJ, new


def refine(problem, cfg: RRConfig, start: torch.Tensor, every: int | None = None):
    """Run Rounding Refinement from ``start``.

    Returns (delta, accepted flips (R,), still-active mask (R,), loop iterations run).

    ``every``: iterations queued between two host reads of the stop test (default
    :func:`~roundlab.solvers.base.sync_every` of the device: every iteration on the CPU). It changes no returned value:
    once the loop may stop (no row active; with ``loop="release"`` also every row rejected), an iteration has
    ``accept`` all False, so ``delta`` gets its own entries written back and ``flips``, ``active`` and ``rejected``
    keep theirs (only ``g``, not returned, may change the sign of a zero) — the stop test stays true, and the
    iterations a batch ran past it are left out of the count (``tests/solvers/test_rr.py`` checks every setting)."""
    every = sync_every(start.device) if every is None else every
    delta = start.clone()
    R = problem.rows
    active = torch.ones(R, dtype=torch.bool, device=delta.device)
    rejected = torch.zeros(R, dtype=torch.bool, device=delta.device)
    flips = torch.zeros(R, dtype=torch.long, device=delta.device)
    g = 2 * problem.matvec(delta)
    diag = problem.diag.expand_as(delta)
    loops = 0
    while loops < cfg.max_iter:
        steps = min(every, cfg.max_iter - loops)
        if steps == 1:                                         # read the stop test after this iteration
            g, active = _iterate(problem, cfg, delta, g, diag, active, rejected, flips)
            loops += 1
            if bool(_stopped(cfg, active, rejected)):
                break
            continue
        running = torch.zeros((), dtype=torch.long, device=delta.device)   # iterations not followed by a stop
        for _ in range(steps):
            g, active = _iterate(problem, cfg, delta, g, diag, active, rejected, flips)
            running += ~_stopped(cfg, active, rejected)
        n = int(running)                                       # the stop test held after iteration n + 1, if n < steps
        loops += min(n + 1, steps)
        if n < steps:
            break
    return delta, flips, active, loops


def _stopped(cfg: RRConfig, active: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """The loop's stop test (0-d bool, on the rows' device). "row": nothing can change once every row has stopped.
    "release": the authors' block loop only stops when every row rejects (a frozen no-op row keeps it going); the
    extra iterations change nothing."""
    stop = ~active.any()
    return stop if cfg.loop == "row" else stop & rejected.all()


def _iterate(problem, cfg: RRConfig, delta, g, diag, active, rejected, flips):
    """One iteration for every row, in place on ``delta``, ``rejected`` and ``flips``; returns (g, active)."""
    if not cfg.incremental:
        g = 2 * problem.matvec(delta)                          # the release: recompute the gradient
    J, has, dJ, new = _proposal(problem, cfg, delta, g)
    D = new - dJ                                               # (R, k), 0 where nothing moves
    changed = (D != 0).any(1)
    if cfg.incremental:
        if J.shape[1] == 1:
            dL = (D * g.gather(1, J) + D * D * diag.gather(1, J)).sum(1)
        else:
            MJ = _gather_M(problem, J)                         # (R, k, d)
            MJJ = MJ.gather(2, J[:, None, :].expand(-1, J.shape[1], -1))
            dL = (D * g.gather(1, J)).sum(1) + torch.einsum("rk,rkl,rl->r", D, MJJ, D)
        accept = active & has & changed & (dL <= 0)
        rise = active & has & changed & (dL > 0)
    else:
        proposed = delta.scatter(1, J, new)
        new_loss = problem.objective(proposed)
        old_loss = problem.objective(delta)                    # the release recomputes it too
        accept = active & has & changed & (new_loss <= old_loss)
        rise = active & has & changed & (new_loss > old_loss)
    if cfg.incremental:
        Da = torch.where(accept[:, None], D, torch.zeros_like(D))
        if J.shape[1] == 1:
            g += 2 * Da * problem.columns(J[:, 0])
        else:
            g += 2 * torch.einsum("rk,rkd->rd", Da, MJ)
    delta.scatter_(1, J, torch.where(accept[:, None], new, dJ))
    flips += accept
    rejected |= rise
    return g, accept


@register_solver("rr")
class RR(Solver):
    """ERQ Rounding Refinement (variant release|paper, top-k, max_iter), batched, incremental gradient."""

    Config = RRConfig
    monotone = True

    def solve(self, problem, init):
        start = start_point(problem, init)
        delta, flips, active, loops = refine(problem, self.config, start)
        hit = active.cpu() if self.config.max_iter > 0 else torch.zeros(problem.rows, dtype=torch.bool)
        codes = torch.where(hit, CODE[Status.ITERATION_LIMIT], CODE[Status.HEURISTIC])
        return Solution(delta, codes, iterations=flips.cpu(), info={"loop_iterations": loops})
