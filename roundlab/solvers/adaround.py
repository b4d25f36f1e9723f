"""``adaround``: AdaRound's continuous relaxation (Nagel et al. 2020), batched over rows, hard-rounded at the end.

Per free element ``δ_j = lo_j + h(V_j)·(hi_j − lo_j)`` with the rectified sigmoid ``h(V) = clip(σ(V)(ζ−γ)+γ, 0, 1)``,
ζ = 1.1, γ = −0.1, and ``V`` initialised so that ``h`` equals the fractional part (AdaRound's init). Per row the
loss is

    L_r(δ) / L_r(start)  +  lam · Σ_j (1 − |2h_j − 1|^β)

— the reconstruction term normalised by the start's loss so that one ``lam`` fits rows of any scale; ``L_r`` is
``δMδᵀ`` (``objective="proxy"``) or the samples mean ``(1/N)Σ(δ·x_n)²`` (``"samples"``, needs a problem built from
``X``). The regulariser is off for the first ``warmup`` fraction of ``iters``; then β anneals from ``beta_start`` to
``beta_end`` (``schedule="linear"``, BRECQ's, or ``"cosine"``, AIMET's). Adam (elementwise, so rows stay
independent), gradients written out by hand (one matmul per step; float32 inside the loop). Final rounding:
``h ≥ 0.5`` → ceil. Deterministic (no random init, no minibatches).

Defaults (iters=1000, lr=0.01, lam=0.01) are shortened from AdaRound's 10–20k steps at lr 1e-3 so that a
d=384, R=384 problem runs in a few seconds on CPU. With ``fallback=True`` rows that end worse than the start
(``init`` if given, else nearest) return the start with status FALLBACK; the others are HEURISTIC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from roundlab.problem import Status
from roundlab.solvers.base import (Solution, Solver, SolverConfig, check_bool, check_choice, check_float,
                                   check_int, full_codes, keep_better, start_point)
from roundlab.solvers.registry import register_solver


@dataclass(frozen=True)
class AdaRoundConfig(SolverConfig):
    iters: int = 1000
    lr: float = 0.01
    lam: float = 0.01             # λ of the rounding regulariser (AdaRound's default)
    warmup: float = 0.2           # fraction of iters with the regulariser off
    beta_start: float = 20.0
    beta_end: float = 2.0
    schedule: str = "linear"      # "linear" (BRECQ) | "cosine" (AIMET)
    objective: str = "proxy"      # "proxy" (δMδᵀ) | "samples" (the N samples; the problem must carry X)
    zeta: float = 1.1
    gamma: float = -0.1
    fallback: bool = True

    def validate(self):
        check_int("iters", self.iters, 1)
        check_float("lr", self.lr, 0.0, 10.0, lo_open=True)
        check_float("lam", self.lam, 0.0, 1e6)
        check_float("warmup", self.warmup, 0.0, 1.0)
        check_float("beta_start", self.beta_start, 1.0, 1e3)
        check_float("beta_end", self.beta_end, 1.0, 1e3)
        check_choice("schedule", self.schedule, ("linear", "cosine"))
        check_choice("objective", self.objective, ("proxy", "samples"))
        check_float("zeta", self.zeta, 1.0, 10.0)
        check_float("gamma", self.gamma, -10.0, 0.0)
        check_bool("fallback", self.fallback)


def beta_at(cfg: AdaRoundConfig, t: int) -> float | None:
    """β at step ``t`` (None during warm-up: regulariser off)."""
    w = int(cfg.warmup * cfg.iters)
    if t < w:
        return None
    rel = (t - w) / max(cfg.iters - w, 1)
    if cfg.schedule == "linear":
        return cfg.beta_end + (cfg.beta_start - cfg.beta_end) * (1 - rel)
    return cfg.beta_end + 0.5 * (cfg.beta_start - cfg.beta_end) * (1 + math.cos(math.pi * rel))


def rectified_sigmoid(V: torch.Tensor, zeta: float, gamma: float) -> torch.Tensor:
    return (torch.sigmoid(V) * (zeta - gamma) + gamma).clamp(0, 1)


def relaxation_grad(V, lo, step, free, norm, grad_of, cfg: AdaRoundConfig, beta: float | None) -> torch.Tensor:
    """∂/∂V of Σ_r [L_r(δ(h))/norm_r + lam Σ_j (1 − |2h_j − 1|^β)] (the regulariser only when ``beta``)."""
    zeta, gamma = cfg.zeta, cfg.gamma
    sig = torch.sigmoid(V)
    hr = sig * (zeta - gamma) + gamma
    h = hr.clamp(0, 1)
    dh = grad_of(lo + h * step) * step / norm[:, None]                   # d(L/L_start)/dh
    if beta is not None and cfg.lam > 0:
        a = 2 * h - 1
        dh = dh - cfg.lam * beta * a.abs().pow(beta - 1) * torch.sign(a) * 2
    return dh * ((hr > 0) & (hr < 1)).to(V.dtype) * sig * (1 - sig) * (zeta - gamma) * free.to(V.dtype)


@register_solver("adaround")
class AdaRound(Solver):
    """AdaRound relaxation (rectified sigmoid, annealed regulariser, Adam) on the proxy or samples, hard-rounded."""

    Config = AdaRoundConfig
    objectives = ("proxy", "samples")
    monotone = True

    def solve(self, problem, init):
        cfg = self.config
        start = start_point(problem, init)
        f32 = torch.float32
        lo, step = problem.lo.to(f32), problem.step.to(f32)
        free = problem.free
        ref = problem.objective(start)
        norm = torch.where(ref > 0, ref, torch.ones_like(ref)).to(f32)
        if cfg.objective == "proxy":
            M = problem.M.to(f32)
            grad_of = ((lambda dl: 2 * (dl @ M)) if problem.shared
                       else (lambda dl: 2 * torch.bmm(M, dl.unsqueeze(-1)).squeeze(-1)))
        else:
            X = problem.X.to(f32)
            N = X.shape[-2]
            if X.dim() == 2:
                grad_of = lambda dl: 2 * ((dl @ X.T) @ X) / N                       # noqa: E731
            else:
                grad_of = lambda dl: 2 * torch.bmm(torch.bmm(X, dl.unsqueeze(-1)).transpose(1, 2), X  # noqa: E731
                                                   ).squeeze(1) / N
        zeta, gamma = cfg.zeta, cfg.gamma
        frac = torch.where(free, (-problem.lo / problem.step.clamp_min(1e-300)).clamp(0, 1),
                           torch.zeros_like(problem.lo)).to(f32)
        V = -torch.log((zeta - gamma) / (frac - gamma) - 1)
        m, v = torch.zeros_like(V), torch.zeros_like(V)
        b1, b2, eps = 0.9, 0.999, 1e-8
        for t in range(cfg.iters):
            gV = relaxation_grad(V, lo, step, free, norm, grad_of, cfg, beta_at(cfg, t))
            m.mul_(b1).add_(gV, alpha=1 - b1)
            v.mul_(b2).addcmul_(gV, gV, value=1 - b2)
            mhat = m / (1 - b1 ** (t + 1))
            vhat = v / (1 - b2 ** (t + 1))
            V -= cfg.lr * mhat / (vhat.sqrt() + eps)
        h = rectified_sigmoid(V, zeta, gamma)
        delta = problem.delta_from_up((h >= 0.5) & free)
        codes = full_codes(problem, Status.HEURISTIC)
        fallback = None
        if cfg.fallback:
            delta, codes, fallback = keep_better(problem, delta, start, codes)
        return Solution(delta, codes, fallback=fallback,
                        iterations=torch.full((problem.rows,), cfg.iters), info={"objective_kind": cfg.objective})
