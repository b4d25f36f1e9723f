"""Synthetic ViT-like rounding problems for tests, benchmarks and analyses (no model needed).

Activations imitate a post-LayerNorm token stream: a low-rank shared component (tokens of one image are
correlated), per-channel offsets, and a few heavy outlier channels (×``outlier_scale``), as seen at qkv/fc1 inputs
of ViTs. Weights are Gaussian per row; the grid is a per-row asymmetric ``bits``-bit grid fitted to a clipped range
(``clip`` < 1 clamps the extreme weights, so some elements have a single candidate); ``dual=True`` gives the rows a
dual-uniform grid: a second per-row grid on a set of outlier columns (weights scaled up there), as in ERQ_SPEC §3.3.
"""

from __future__ import annotations

import torch

from roundlab.problem import RoundingProblem


def vit_like_samples(N: int, d: int, *, outliers: int = 2, outlier_scale: float = 20.0, rank: int = 8,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, d) float64 activations with correlated channels and ``outliers`` heavy channels."""
    g = generator
    rank = max(1, min(rank, d))
    Z = torch.randn(N, rank, generator=g, dtype=torch.float64) @ torch.randn(rank, d, generator=g,
                                                                             dtype=torch.float64) / rank ** 0.5
    X = 0.7 * Z + 0.5 * torch.randn(N, d, generator=g, dtype=torch.float64)
    X += 0.3 * torch.randn(d, generator=g, dtype=torch.float64)                 # channel offsets
    if outliers:
        idx = torch.randperm(d, generator=g)[:outliers]
        X[:, idx] *= outlier_scale
    return X


def vit_like_problem(R: int, d: int, *, N: int = 512, bits: int = 4, seed: int = 0, outliers: int = 2,
                     outlier_scale: float = 20.0, clip: float = 0.9, dual: bool = False, samples: bool = False,
                     dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> RoundingProblem:
    """A reproducible ``R × d`` rounding problem (proxy objective; ``samples=True`` keeps the N samples)."""
    g = torch.Generator().manual_seed(seed)
    X = vit_like_samples(N, d, outliers=outliers, outlier_scale=outlier_scale, generator=g)
    w = torch.randn(R, d, generator=g, dtype=torch.float64) * 0.05
    levels = 2 ** bits - 1
    if dual:
        cols = torch.zeros(d, dtype=torch.bool)
        cols[torch.randperm(d, generator=g)[:max(1, d // 5)]] = True
        w[:, cols] *= 6.0
        scale = torch.empty(R, d, dtype=torch.float64)
        zero = torch.empty(R, d, dtype=torch.float64)
        for part in (cols, ~cols):
            s, z = _grid(w[:, part], levels, clip)
            scale[:, part], zero[:, part] = s, z
    else:
        scale, zero = _grid(w, levels, clip)
    w, scale, zero = (t.to(dtype=dtype, device=device) for t in (w, scale, zero))
    X = X.to(device=device)
    if samples:
        return RoundingProblem.from_grid(w, scale, zero, bits, X=X)
    return RoundingProblem.from_grid(w, scale, zero, bits, M=X.T @ X / N)


def _grid(w: torch.Tensor, levels: int, clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    lo = w.amin(1, keepdim=True) * clip
    hi = w.amax(1, keepdim=True) * clip
    scale = ((hi - lo) / levels).clamp_min(1e-8)
    zero = torch.round(-lo / scale)
    return scale, zero
