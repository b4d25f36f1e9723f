"""A layer's data as streamed sufficient statistics: everything Aqer, Wqer's proxy and the Eq. 4 records need,
accumulated in float64 batch by batch (GPTQ's ``add_batch``), so memory does not grow with the number of images.

With ``Ā = [X̄ | 1]`` (the layer's quantized input ``X̄ = Q_a(X_in)``, a ones column when it has a bias), ``Θ₀ = [W₀ | b₀]``
its weights before ERQ touches them and ``E₀ = (X W₀ᵀ + b₀) − Ā Θ₀ᵀ`` the error the quantized input alone causes
(``X``: the FP network's input, the Eq. 4 reference):

* ``G = ĀᵀĀ`` — Aqer's and Wqer's Gram matrix (Wqer's proxy ``M = G_SS / N``);
* ``R = ĀᵀE₀`` — Aqer's right-hand side (paper Eq. 8: ``ΔΘᵀ = (G + cI)⁻¹ R``);
* ``e0 = Σ‖E₀‖²`` and ``N``.

The Eq. 4 error of any weights ``Θ = Θ₀ + Δ`` on this data is ``(e0 − 2 tr(Δ R) + tr(Δ G Δᵀ)) / N`` — exact algebra,
measured from the act-only error rather than from the output energy, so little cancels. The samples ``Ā`` themselves
are kept only when asked (solvers that minimise the samples objective; analyses that look at rows).
"""

from __future__ import annotations

import torch

F64 = torch.float64


class LayerStats:
    """The statistics above for one layer and one image set (calibration or held-out)."""

    def __init__(self, theta0: torch.Tensor, has_bias: bool, keep_samples: bool = False):
        self.theta0 = theta0.to(F64)                      # (Dout, D) with D = Din (+1 with a bias)
        self.has_bias = has_bias
        self._W0 = (self.theta0[:, :-1] if has_bias else self.theta0).contiguous()
        self._b0 = self.theta0[:, -1].contiguous() if has_bias else 0
        self.G: torch.Tensor | None = None
        self.R: torch.Tensor | None = None
        self.e0 = 0.0
        self.N = 0
        self.keep_samples = keep_samples
        self._samples: list[torch.Tensor] = []

    def add(self, A: torch.Tensor, Y: torch.Tensor) -> None:
        """One batch: regressors ``A = [X̄ | 1]`` (n, D) and the FP output ``Y = X W₀ᵀ + b₀`` (n, Dout)."""
        A, Y = A.to(F64), Y.to(F64)
        E0 = Y - A @ self.theta0.T
        G, R = A.T @ A, A.T @ E0
        self.G = G if self.G is None else self.G + G
        self.R = R if self.R is None else self.R + R
        # Σ‖E₀‖² with the quantized output formed like Y (X̄ W₀ᵀ + b₀), so it is exactly 0 where X̄ = X
        Xbar = A[:, :-1].contiguous() if self.has_bias else A
        self.e0 += float(((Y - (Xbar @ self._W0.T + self._b0)) ** 2).sum())
        self.N += A.shape[0]
        if self.keep_samples:
            self._samples.append(A)

    @property
    def samples(self) -> torch.Tensor | None:
        """``Ā`` (N, D) when kept, else None."""
        if not self.keep_samples or not self._samples:
            return None
        if len(self._samples) > 1:
            self._samples = [torch.cat(self._samples)]
        return self._samples[0]

    def error(self, theta: torch.Tensor) -> float:
        """Paper Eq. 4 for weights ``Θ`` (Dout, D): mean over the N rows of ``‖(X W₀ᵀ + b₀) − Ā Θᵀ‖²``."""
        delta = theta.to(F64) - self.theta0
        quad = float(((delta @ self.G) * delta).sum())
        return max(self.e0 - 2.0 * float((delta * self.R.T).sum()) + quad, 0.0) / self.N
