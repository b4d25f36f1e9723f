"""The objective data of a rounding problem — the proxy ``M`` (d×d or per row R×d×d) or the N samples ``X`` it is
the Gram matrix of — checked once, where a problem is built: real floating point, finite, the right shapes,
``M`` symmetric and positive semidefinite (the objective ``δMδᵀ`` is a sum of squares only then).
"""

from __future__ import annotations

import torch

from roundlab.errors import RoundlabError

F64 = torch.float64


def as_float_tensor(x, what: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x)
        except Exception:
            raise RoundlabError(f"{what} must be a tensor, got {type(x).__name__}") from None
    if not x.is_floating_point():
        x = x.to(F64)
    return x


def _real_float(x, what: str) -> torch.Tensor:
    """``x`` as a tensor that is real floating point (complex, integer and boolean data are refused, not cast)."""
    t = x if isinstance(x, torch.Tensor) else as_float_tensor(x, what)
    if t.is_complex() or not t.is_floating_point():
        raise RoundlabError(f"{what} must be a real floating-point tensor, got {t.dtype}")
    return t


#: Relative tolerance of the PSD check: λ_min(M) ≥ −PSD_RTOL · λ_max(M) (round-off of a float32 Gram matrix).
PSD_RTOL = 1e-6


def _check_psd(M: torch.Tensor) -> None:
    """``M`` is positive semidefinite within :data:`PSD_RTOL` (the objective is a sum of squares only then)."""
    ev = torch.linalg.eigvalsh(M)
    top = ev[..., -1].abs().clamp_min(1e-300)
    worst = float((ev[..., 0] / top).min())
    if worst < -PSD_RTOL:
        raise RoundlabError(f"M is not positive semidefinite (λ_min/λ_max = {worst:.3g}); a Gram matrix X̄ᵀX̄/N "
                            f"is. Pass check_psd=False only for a solver that handles an indefinite M")


def check_finite(x: torch.Tensor, what: str) -> None:
    if not bool(torch.isfinite(x).all()):
        raise RoundlabError(f"{what} contains NaN or infinite values")


def proxy_matrix(X: torch.Tensor, covariance: str = "biased") -> torch.Tensor:
    """ERQ's proxy matrix ``μμᵀ + Σ`` (paper Eq. 12) from samples ``X`` (N, d), in float64.

    ``covariance="biased"`` (1/N) gives exactly ``XᵀX/N`` (ERQ_SPEC §11); ``"unbiased"`` (1/(N−1), ``torch.cov``'s
    default and the release's choice) gives ``M + Σ_b/(N−1)``, so ``L ≤ proxy ≤ N/(N−1)·L`` for every δ.
    """
    X = as_float_tensor(X, "X").to(F64)
    if X.dim() != 2 or X.shape[0] < 2:
        raise RoundlabError(f"X must be (N, d) with N >= 2, got shape {tuple(X.shape)}")
    if covariance not in ("biased", "unbiased"):
        raise RoundlabError(f"covariance must be 'biased' or 'unbiased', got {covariance!r}")
    mu = X.mean(0)
    sigma = torch.cov(X.T, correction=0 if covariance == "biased" else 1)
    return torch.outer(mu, mu) + sigma


def objective_data(M, X, R: int, d: int, device, check_psd: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(M, X)`` in float64 on ``device``, validated; with samples, ``M = XᵀX/N`` exactly (symmetrised)."""
    if (M is None) == (X is None):
        raise RoundlabError("give exactly one of M (proxy objective, d×d Gram matrix) or X (samples, N×d)")
    if X is not None:
        X = _real_float(X, "X").to(device=device, dtype=F64)
        if X.dim() not in (2, 3) or X.shape[-1] != d or (X.dim() == 3 and X.shape[0] != R) or X.shape[-2] < 1:
            raise RoundlabError(f"X must be (N, {d}) or ({R}, N, {d}), got shape {tuple(X.shape)}")
        check_finite(X, "X")
        M = X.transpose(-1, -2) @ X / X.shape[-2]
        return (M + M.transpose(-1, -2)) / 2, X
    M = _real_float(M, "M").to(device=device, dtype=F64)
    if M.dim() not in (2, 3) or M.shape[-2:] != (d, d) or (M.dim() == 3 and M.shape[0] != R):
        raise RoundlabError(f"M must be ({d}, {d}) or ({R}, {d}, {d}), got shape {tuple(M.shape)}")
    check_finite(M, "M")
    asym = (M - M.transpose(-1, -2)).abs().amax()
    if float(asym) > 1e-6 * float(M.abs().amax().clamp_min(1e-300)):
        raise RoundlabError("M must be symmetric (a Gram matrix X̄ᵀX̄/N)")
    M = (M + M.transpose(-1, -2)) / 2
    if check_psd:
        _check_psd(M)
    return M, None
