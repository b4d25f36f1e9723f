"""Wqer: quantize a layer's weights segment by segment (paper Alg. 1, Eq. 9–17; ERQ_SPEC §6).

``Θ = [W | b]`` with the bias as the last, never-quantized column. While more than one column is active:

1. ``S`` ← the first ⌊|active|/2⌋ active columns (``partition="natural"``, the release: shared by every row) or, per
   row, the active columns with the smallest round-to-nearest error (``partition="error"``, the release's dead
   per-row variant); the last column (bias, or last weight column) is always kept back.
2. Rounding of ``Θ[:, S]``: a :class:`~roundlab.problem.RoundingProblem` with the exact proxy
   ``M = X̃_Sᵀ X̃_S / N`` (ERQ_SPEC §11: ERQ's μμᵀ + Σ is this matrix), handed to whichever registered solver the
   caller passes; a solver configured with ``objective="samples"`` gets the N samples ``X̃_S`` instead (the paper's
   "MIQP w/o proxy"). With ``rounding=False`` the segment is rounded to nearest.
3. Ridge on the rest (paper Eq. 17): ``Θ[i, R] −= ((G_RR + c·I)⁻¹ G_RS δ_iᵀ)ᵀ`` with one Cholesky factorisation per
   step shared by all rows (``ridge=False`` skips it).
4. ``Θ[:, S]`` ← the chosen grid points (``problem.quantized``: ``fake_quant`` values, so exactly on the grid).

The quantizer is fixed (``scale``/``zero`` per element, calibrated beforehand on the post-Aqer weights); weights the
ridge pushes out of range are clamped by the grid. A bias-free layer's last weight column is rounded to nearest at
the end (ERQ_SPEC §6.6 / checklist 8), so every weight leaves Wqer on its grid.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from roundlab.validate import check_known
from roundlab.errors import RoundlabError
from roundlab.pipeline.aqer import design, split_theta, stack_theta
from roundlab.pipeline.ridge import cholesky, gram
from roundlab.pipeline.stats import LayerStats
from roundlab.quant.grid import fake_quant

PARTITIONS = ("natural", "error")

#: ``on_problem(step, problem, result, columns)`` — called for every segment, e.g. to compute bounds or proxy fidelity.
ProblemHook = Callable[[int, object, object, torch.Tensor], None]


@dataclass
class WqerStep:
    """What happened in one halving step (one rounding problem of ``rows × n_cols``)."""

    step: int
    n_cols: int
    objective: float            # Σ_rows δ M δᵀ of the chosen rounding
    objective_nearest: float    # Σ_rows of round-to-nearest, for the same segment
    summary: dict               # the solver's RoundingResult.summary()
    time_s: float


@dataclass
class WqerResult:
    W: torch.Tensor
    b: torch.Tensor | None
    steps: list[WqerStep] = field(default_factory=list)

    def totals(self) -> dict:
        """Summed objectives, times and solver status counts over all steps."""
        status: dict[str, int] = {}
        for s in self.steps:
            for k, v in s.summary.get("status", {}).items():
                status[k] = status.get(k, 0) + v
        return {
            "steps": len(self.steps),
            "objective": sum(s.objective for s in self.steps),
            "objective_nearest": sum(s.objective_nearest for s in self.steps),
            "solver_time_s": sum(s.summary.get("time_s", 0.0) for s in self.steps),
            "time_s": sum(s.time_s for s in self.steps),
            "status": status,
        }


def _expand(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    return torch.as_tensor(t).to(torch.float64).expand(shape)


def wqer(W: torch.Tensor, b: torch.Tensor | None, data: torch.Tensor | LayerStats, scale: torch.Tensor,
         zero: torch.Tensor, bits: int, solver, lam: float, *, rounding: bool = True, ridge: bool = True,
         partition: str = "natural", on_problem: ProblemHook | None = None) -> WqerResult:
    """Run Wqer on one layer and return the on-grid ``W`` (float64), the re-fitted FP ``b`` and per-step records.

    ``data`` is the layer's quantized input ``X̄`` (N, Din), or its streamed statistics (:class:`LayerStats`: the Gram
    matrix of ``[X̄ | 1]``, and the samples when a solver minimises the samples objective); ``scale``/``zero``
    broadcast to ``W.shape`` (per row, or per element for dual-uniform rows); ``solver`` is any registered solver
    instance (called as ``solver(problem)``); ``lam`` is the absolute ridge constant
    (:func:`roundlab.pipeline.lam.wqer_constant`).
    """
    from roundlab.solvers import get_solver

    check_known("partition", partition, PARTITIONS)
    has_bias = b is not None
    theta = stack_theta(W, b)
    n_w = W.shape[1]
    scale = _expand(scale, W.shape).to(theta.device)
    zero = _expand(zero, W.shape).to(theta.device)
    Xt, G, N = _regressors(data, has_bias, theta.device)
    chosen = solver if rounding else get_solver("nearest")
    if chosen.objective == "samples" and Xt is None:
        raise RoundlabError(f"solver {chosen.name!r} minimises the samples objective, but this layer's samples were "
                            f"not kept (LayerStats(keep_samples=True))")
    shared = partition == "natural"          # every row shares its columns: one M, one Cholesky factor per step
    segment = _Segments(theta, Xt, G, N, scale, zero, bits, samples=chosen.objective == "samples", shared=shared)
    result = WqerResult(W=theta, b=None)

    last = theta.shape[1] - 1
    # active[i] lists row i's active columns in increasing order; the natural partition keeps all rows equal.
    active = torch.arange(theta.shape[1], device=theta.device).expand(theta.shape[0], -1).clone()
    while active.shape[1] > 1:                                              # Alg. 1: halve the active columns
        t0 = time.perf_counter()
        n_q = active.shape[1] // 2
        if partition == "natural":
            S, R = active[:, :n_q], active[:, n_q:]
        else:
            S, R = _error_partition(theta, active, scale, zero, bits, n_q, last, n_w)
        problem = segment.problem(S)                                        # Eq. 12-16: round Θ[:, S] ...
        res = chosen(problem)
        if ridge:                                                           # Eq. 17: ... and absorb δ into Θ[:, R]
            _ridge_update(theta, G, S, R, res.delta.to(torch.float64), lam, shared)
        theta.scatter_(1, S, problem.quantized(res.delta).to(theta.dtype))
        if on_problem is not None:
            on_problem(len(result.steps), problem, res, S)
        result.steps.append(WqerStep(step=len(result.steps), n_cols=n_q, objective=float(res.objective.sum()),
                                     objective_nearest=float(problem.objective(problem.nearest()).sum()),
                                     summary=res.summary(), time_s=time.perf_counter() - t0))
        active = R
    if not has_bias:  # the last weight column is left FP by the halving loop: round it to nearest (ERQ_SPEC §6.6)
        theta[:, last] = fake_quant(theta[:, last], scale[:, last], zero[:, last], bits, "round")
    result.W, result.b = split_theta(theta, has_bias)
    return result


def _regressors(data, has_bias: bool, device) -> tuple[torch.Tensor | None, torch.Tensor, int]:
    """``(X̃ or None, G = X̃ᵀX̃, N)`` with ``X̃ = [X̄ | 1]``, from the samples or from streamed statistics."""
    if isinstance(data, LayerStats):
        Xt = data.samples
        return (None if Xt is None else Xt.to(device)), data.G.to(device), data.N
    Xt = design(data, has_bias).to(device)
    return Xt, gram(Xt), Xt.shape[0]


class _Segments:
    """Builds the rounding problem of the columns ``S`` of Θ: proxy ``M = X̃_Sᵀ X̃_S / N`` from the Gram matrix, or
    the N samples ``X̃_S`` for a solver that minimises the samples objective (the paper's "MIQP w/o proxy")."""

    def __init__(self, theta, Xt, G, N, scale, zero, bits, samples: bool, shared: bool):
        self.theta, self.Xt, self.G, self.N = theta, Xt, G, N
        self.scale, self.zero, self.bits = scale, zero, bits
        self.samples, self.shared = samples, shared

    def problem(self, S: torch.Tensor):
        from roundlab.problem import RoundingProblem

        n_w = self.scale.shape[1]
        w = torch.gather(self.theta, 1, S)
        s_S = torch.gather(self.scale, 1, S.clamp(max=n_w - 1))
        z_S = torch.gather(self.zero, 1, S.clamp(max=n_w - 1))
        shared = self.shared
        if self.samples:
            Xs = self.Xt[:, S[0]] if shared else self.Xt.T[S].transpose(1, 2)
            return RoundingProblem.from_grid(w, s_S, z_S, self.bits, X=Xs)
        G = self.G
        M = (G[S[0]][:, S[0]] if shared else G[S[:, :, None], S[:, None, :]]) / self.N
        return RoundingProblem.from_grid(w, s_S, z_S, self.bits, M=M)


def _ridge_update(theta: torch.Tensor, G: torch.Tensor, S: torch.Tensor, R: torch.Tensor, delta: torch.Tensor,
                  lam: float, shared: bool) -> None:
    """Paper Eq. 17, in place: ``Θ[i, R] −= ((G_RR + λI)⁻¹ G_RS δ_iᵀ)ᵀ``; one Cholesky factor for all rows when
    they share their columns (``shared``), else one per row."""
    if shared:
        r0, s0 = R[0], S[0]
        L = cholesky(G[r0][:, r0], lam, what="Wqer Gram matrix")
        Z = torch.cholesky_solve(G[r0][:, s0] @ delta.T, L)            # (|R|, rows)
        theta[:, r0] -= Z.T
    else:
        G_RR = G[R[:, :, None], R[:, None, :]]
        G_RS = G[R[:, :, None], S[:, None, :]]
        L = cholesky(G_RR, lam, what="Wqer Gram matrix")
        Z = torch.cholesky_solve(G_RS @ delta[:, :, None], L)[..., 0]  # (rows, |R|)
        theta.scatter_(1, R, torch.gather(theta, 1, R) - Z)


def _error_partition(theta, active, scale, zero, bits, n_q, last, n_w):
    """Per row, the ``n_q`` active columns with the smallest |RTN error|; the last column is always kept back."""
    cols = active.clamp(max=n_w - 1)
    vals = torch.gather(theta, 1, active)
    err = (fake_quant(vals, torch.gather(scale, 1, cols), torch.gather(zero, 1, cols), bits) - vals).abs()
    err = torch.where(active == last, torch.full_like(err, float("inf")), err)
    order = torch.argsort(err, dim=1, stable=True)
    S = torch.sort(torch.gather(active, 1, order[:, :n_q]), dim=1).values
    R = torch.sort(torch.gather(active, 1, order[:, n_q:]), dim=1).values
    return S, R
