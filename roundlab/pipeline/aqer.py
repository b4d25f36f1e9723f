"""Aqer: absorb the activation-quantization error into full-precision weights (paper Eq. 5–8, ERQ_SPEC §5).

With ``A = [X̄ | 1]`` (the layer's quantized input, with a ones column when the layer has a bias),
``Θ = [W | b]`` and the target output ``Y`` (the FP layer's output), Aqer solves the ridge problem

    min_ΔΘ ‖Y − A(Θ + ΔΘ)ᵀ‖² + c‖ΔΘ‖²    ⇒    ΔΘᵀ = (AᵀA + c·I)⁻¹ Aᵀ (Y − AΘᵀ)

in closed form. With ``Y = XWᵀ + b`` this is the paper's Eq. 8 (``δW* = −W E[δx x̄ᵀ](E[x̄x̄ᵀ] + λ₁I)⁻¹``), written with
sums; ``c`` is the absolute constant from :mod:`roundlab.pipeline.lam`. The bias is a regressor too (ERQ_SPEC D2).
"""

from __future__ import annotations

import torch

from roundlab.pipeline.ridge import ridge_solve, with_ones
from roundlab.pipeline.stats import LayerStats


def stack_theta(W: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """``Θ = [W | b]`` in float64 (just ``W`` without a bias); always a new tensor, safe to update in place."""
    W64 = W.detach().to(torch.float64, copy=True)
    return W64 if b is None else torch.cat([W64, b.detach().to(torch.float64)[:, None]], dim=1)


def split_theta(theta: torch.Tensor, has_bias: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Inverse of :func:`stack_theta`."""
    return (theta[:, :-1], theta[:, -1]) if has_bias else (theta, None)


def design(Xbar: torch.Tensor, has_bias: bool) -> torch.Tensor:
    """The regressors ``X̃``: ``X̄`` in float64, with a ones column appended when the layer has a bias."""
    X64 = Xbar.to(torch.float64)
    return with_ones(X64) if has_bias else X64


def aqer(W: torch.Tensor, b: torch.Tensor | None, Xbar: torch.Tensor, Y: torch.Tensor,
         lam: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Return the Aqer-updated ``(W, b)`` (float64) for quantized inputs ``Xbar`` (N, Din) and target ``Y`` (N, Dout).

    ``lam`` is the absolute constant added to the unnormalised Gram ``AᵀA``.
    """
    theta0 = stack_theta(W, b)
    A = design(Xbar, b is not None)
    stats = LayerStats()
    stats.add(A, Y.to(torch.float64) - A @ theta0.T, 0.0)
    return aqer_update(stats, theta0, lam, b is not None)


def aqer_update(stats: LayerStats, theta0: torch.Tensor, lam: float,
                has_bias: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Aqer from a layer's streamed statistics: ``Θ = Θ₀ + ((G + c·I)⁻¹ R)ᵀ`` (``R = ĀᵀE₀``, the act-only error)."""
    delta_theta_T = ridge_solve(stats.G, stats.R, lam, what="Aqer Gram matrix")
    return split_theta(theta0 + delta_theta_T.T, has_bias)
