"""Ridge regression with one Cholesky factorisation, never an explicit inverse.

Both ERQ steps are ridge regressions on Gram matrices of the (quantized) layer inputs:
Aqer (paper Eq. 8) and the Wqer correction of the not-yet-quantized columns (paper Eq. 17). The Gram matrices are
accumulated in float64; a factorisation is shared by every output row.
"""

from __future__ import annotations

import torch

from roundlab.errors import RoundlabError


def gram(X: torch.Tensor) -> torch.Tensor:
    """``XᵀX`` in float64 for ``X`` of shape (N, D) (unnormalised: a sum over the N samples)."""
    X64 = X.to(torch.float64)
    return X64.T @ X64


def with_ones(X: torch.Tensor) -> torch.Tensor:
    """Append a column of ones (the bias regressor): (N, D) -> (N, D + 1)."""
    return torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype, device=X.device)], dim=1)


def cholesky(G: torch.Tensor, lam: float, what: str = "Gram matrix") -> torch.Tensor:
    """Lower Cholesky factor of ``G + lam·I`` (batched over leading dims); one clear error if it is not PD."""
    eye = torch.eye(G.shape[-1], dtype=G.dtype, device=G.device)
    L, info = torch.linalg.cholesky_ex(G + lam * eye)
    if bool((info != 0).any()):
        raise RoundlabError(
            f"{what} + lam*I is not positive definite (lam={lam:g}); the inputs are rank-deficient: "
            "use lam > 0")
    return L


def ridge_solve(G: torch.Tensor, rhs: torch.Tensor, lam: float, what: str = "Gram matrix") -> torch.Tensor:
    """Solve ``(G + lam·I) Z = rhs`` by Cholesky (G symmetric PSD, float64)."""
    return torch.cholesky_solve(rhs, cholesky(G, lam, what))
