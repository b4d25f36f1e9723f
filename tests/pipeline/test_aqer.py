"""Aqer against the closed form of paper Eq. 8 and the release's sum convention (ERQ_SPEC §5)."""

import torch

from roundlab.pipeline.aqer import aqer
from roundlab.pipeline.lam import aqer_constant


def _data(seed=0, N=400, Din=12, Dout=5):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, Din, generator=g, dtype=torch.float64) * torch.linspace(0.2, 3.0, Din, dtype=torch.float64)
    Xbar = torch.round(X * 2) / 2                      # a coarse activation quantizer
    W = torch.randn(Dout, Din, generator=g, dtype=torch.float64)
    b = torch.randn(Dout, generator=g, dtype=torch.float64)
    return X, Xbar, W, b


def test_aqer_equals_paper_eq8_without_bias():
    X, Xbar, W, _ = _data()
    N, lam1 = X.shape[0], 0.3
    dX = Xbar - X
    E_dx_xbar = dX.T @ Xbar / N                        # E[δx x̄ᵀ]
    E_xbar_xbar = Xbar.T @ Xbar / N                    # E[x̄ x̄ᵀ]
    dW_eq8 = -W @ E_dx_xbar @ torch.linalg.inv(E_xbar_xbar + lam1 * torch.eye(X.shape[1], dtype=X.dtype))
    W_new, b_new = aqer(W, None, Xbar, X @ W.T, lam=aqer_constant("paper", lam1, N, "qkv"))
    assert b_new is None
    torch.testing.assert_close(W_new, W + dW_eq8, rtol=1e-9, atol=1e-10)


def test_aqer_release_sum_convention_with_bias():
    X, Xbar, W, b = _data(seed=1)
    coe = 50.0
    A = torch.cat([Xbar, torch.ones(X.shape[0], 1, dtype=X.dtype)], 1)
    theta = torch.cat([W, b[:, None]], 1)
    E = (X @ W.T + b) - A @ theta.T
    d_theta = (torch.linalg.inv(A.T @ A + 0.1 * coe * torch.eye(A.shape[1], dtype=X.dtype)) @ A.T @ E).T
    W_new, b_new = aqer(W, b, Xbar, X @ W.T + b, lam=aqer_constant("release", coe, X.shape[0], "fc1"))
    torch.testing.assert_close(W_new, W + d_theta[:, :-1], rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(b_new, b + d_theta[:, -1], rtol=1e-9, atol=1e-10)


def test_lambda_mapping_release_equals_paper():
    """release coe c on a Linear == paper λ₁ = 0.1·c / N (the documented mapping)."""
    X, Xbar, W, b = _data(seed=2)
    N, coe = X.shape[0], 1e3
    a = aqer(W, b, Xbar, X @ W.T + b, lam=aqer_constant("release", coe, N, "proj"))
    p = aqer(W, b, Xbar, X @ W.T + b, lam=aqer_constant("paper", 0.1 * coe / N, N, "proj"))
    torch.testing.assert_close(a[0], p[0], rtol=1e-9, atol=1e-12)
    assert aqer_constant("release", coe, N, "head", head_lam="release") == 0.1   # the release's head special case
    assert aqer_constant("release", coe, N, "head") == 0.1 * coe                 # roundlab's default: shared


def test_aqer_lowers_the_activation_error():
    X, Xbar, W, b = _data(seed=3)
    Y = X @ W.T + b
    before = ((Y - (Xbar @ W.T + b)) ** 2).sum()
    W_new, b_new = aqer(W, b, Xbar, Y, lam=1e-3)
    after = ((Y - (Xbar @ W_new.T + b_new)) ** 2).sum()
    assert after < 0.95 * before
    # and it is the minimiser of the ridge objective: any perturbation costs more
    def ridge_obj(Wx, bx):
        return ((Y - (Xbar @ Wx.T + bx)) ** 2).sum() + 1e-3 * (((Wx - W) ** 2).sum() + ((bx - b) ** 2).sum())
    g = torch.Generator().manual_seed(9)
    for _ in range(5):
        dW = 1e-3 * torch.randn(W.shape, generator=g, dtype=W.dtype)
        assert ridge_obj(W_new + dW, b_new) > ridge_obj(W_new, b_new)
