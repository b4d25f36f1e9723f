"""A layer's data as streamed sufficient statistics: everything Aqer, Wqer's proxy and the Eq. 4 records need,
accumulated in float64 block by block (GPTQ's ``add_batch``), so memory does not grow with the number of images.

With ``Ā = [X̄ | 1]`` (the layer's quantized input ``X̄ = Q_a(X_in)``, a ones column when it has a bias), ``Θ₀ = [W₀ | b₀]``
its weights before ERQ touches them and ``E₀ = (X W₀ᵀ + b₀) − Ā Θ₀ᵀ`` the error the quantized input alone causes
(``X``: the FP network's input, the Eq. 4 reference):

* ``G = ĀᵀĀ`` — Aqer's and Wqer's Gram matrix (Wqer's proxy ``M = G_SS / N``);
* ``R = ĀᵀE₀`` — Aqer's right-hand side (paper Eq. 8: ``ΔΘᵀ = (G + cI)⁻¹ R``);
* ``e0 = Σ‖E₀‖²`` and ``N``.

The Eq. 4 error of any weights ``Θ = Θ₀ + Δ`` on this data is ``(e0 − 2 tr(Δ R) + tr(Δ G Δᵀ)) / N`` — exact algebra,
measured from the act-only error rather than from the output energy, so little cancels. The samples ``Ā`` themselves
are kept only when asked (solvers that minimise the samples objective; analyses that look at rows).

Rows arrive in whatever batches the forward passes use; :class:`RowBlocks` regroups them into blocks of
:data:`BLOCK_ROWS` rows counted from the first, so the sums — and every integer code downstream — do not depend on
``--batch-size``.
"""

from __future__ import annotations

import torch

from roundlab.heap import compact
from roundlab.pipeline.ridge import with_ones

F64 = torch.float64

#: Rows per accumulation block (fixed: the float64 sums do not depend on how the images were batched). Every layer
#: holds its remainder (< one block of float32 rows) between batches, all layers at once in the independent flow —
#: DeiT-S: 256 rows × 33k input channels ≈ 34 MB at most; how close it comes to that bound does not depend on the
#: number of images, but with one batch of few images it is small, so a smaller block keeps the peak for 1024 images
#: near the one for 32. 4096 (until 393a0a3) held up to 540 MB, 1024 (until this change) 137 MB; the three zoo
#: models give the same weights with each (records within 4e-14).
BLOCK_ROWS = 256


class LayerStats:
    """The statistics above for one layer and one image set (calibration or held-out)."""

    def __init__(self, keep_samples: bool = False):
        self.G: torch.Tensor | None = None
        self.R: torch.Tensor | None = None
        self.e0 = 0.0
        self.N = 0
        self.keep_samples = keep_samples
        self._samples: list[torch.Tensor] = []

    def add(self, A: torch.Tensor, E0: torch.Tensor, e0: float) -> None:
        """One block: regressors ``A = [X̄ | 1]`` (n, D), the act-only error ``E₀`` (n, Dout) and ``Σ‖E₀‖²``."""
        G, R = A.T @ A, A.T @ E0
        if self.G is None:
            self.G, self.R = G, R
        else:                           # in place: no third Gram-sized buffer per block (and no heap churn)
            self.G.add_(G)
            self.R.add_(R)
        self.e0 += e0
        self.N += A.shape[0]
        if self.keep_samples:
            self._samples.append(A)

    def add_rows(self, W0: torch.Tensor, b0: torch.Tensor | None, X: torch.Tensor, Xbar: torch.Tensor) -> None:
        """One block of rows: ``X`` the FP input (Eq. 4 reference), ``Xbar`` the quantized input; ``W0``/``b0``
        float64. ``Σ‖E₀‖²`` is formed from ``X W₀ᵀ`` and ``X̄ W₀ᵀ`` computed alike, so it is exactly 0 where X̄ = X."""
        b = 0 if b0 is None else b0
        X64, Xbar64 = X.to(F64).contiguous(), Xbar.to(F64).contiguous()
        Y = X64 @ W0.T + b
        A = Xbar64 if b0 is None else with_ones(Xbar64)
        theta0 = W0 if b0 is None else torch.cat([W0, b0[:, None]], dim=1)
        self.add(A, Y - A @ theta0.T, float(((Y - (Xbar64 @ W0.T + b)) ** 2).sum()))

    @property
    def samples(self) -> torch.Tensor | None:
        """``Ā`` (N, D) when kept, else None."""
        if not self.keep_samples or not self._samples:
            return None
        if len(self._samples) > 1:
            self._samples = [torch.cat(self._samples)]
        return self._samples[0]

    def error(self, delta: torch.Tensor) -> float:
        """Paper Eq. 4 for weights ``Θ₀ + delta`` (``delta``: (Dout, D)): the mean over the N rows of
        ``‖(X W₀ᵀ + b₀) − Ā (Θ₀ + delta)ᵀ‖²``."""
        delta = delta.to(F64)
        quad = float(((delta @ self.G) * delta).sum())
        return max(self.e0 - 2.0 * float((delta * self.R.T).sum()) + quad, 0.0) / self.N


class RowBlocks:
    """Regroups one layer's incoming row batches into fixed blocks of :data:`BLOCK_ROWS` rows for ``consume(X,
    X_in)``; ``flush()`` hands over the remainder.

    Holds fewer than one block of rows between calls, copied out of the batch it came from (a view would keep the
    whole batch alive), and one copy only when ``X_in`` is ``X`` (the independent data flow): with a block's
    remainder per layer for every layer of a network, that is what the statistics pass holds beyond the forward.
    """

    def __init__(self, consume, block_rows: int | None = None):
        self.consume, self.block_rows = consume, BLOCK_ROWS if block_rows is None else block_rows
        self._pieces: list[tuple[torch.Tensor, ...]] = []
        self._rows = 0

    def add(self, X: torch.Tensor, X_in: torch.Tensor) -> None:
        self._pieces.append((X,) if X_in is X else (X, X_in))
        self._rows += X.shape[0]
        while self._rows >= self.block_rows:
            self._consume_block()
        self._pieces = [tuple(compact(t) for t in piece) for piece in self._pieces]   # less than a block

    def _consume_block(self) -> None:
        """Hand over the first ``block_rows`` rows; keep the rest (views for now)."""
        need, head, rest = self.block_rows, [], []
        for piece in self._pieces:
            n = piece[0].shape[0]
            if need >= n:
                head.append(piece)
                need -= n
            elif need > 0:
                head.append(tuple(t[:need] for t in piece))
                rest.append(tuple(t[need:] for t in piece))
                need = 0
            else:
                rest.append(piece)
        self._pieces, self._rows = rest, self._rows - self.block_rows
        self._hand_over(head)

    def _hand_over(self, pieces: list[tuple[torch.Tensor, ...]]) -> None:
        streams = [torch.cat(parts) if len(parts) > 1 else parts[0] for parts in zip(*pieces)]
        self.consume(streams[0], streams[-1])

    def flush(self) -> None:
        if self._rows:
            self._hand_over(self._pieces)
        self._pieces, self._rows = [], 0

    @property
    def held_bytes(self) -> int:
        """Bytes of the storages the rows held between calls keep alive."""
        return sum(t.untyped_storage().nbytes() for piece in self._pieces for t in piece)

