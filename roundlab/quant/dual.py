"""Dual-uniform weight quantizer (TPAMI "Dual Uniform Quantization"; release ``two_part``; ERQ_SPEC §3.3).

Used for the ``qkv`` and ``fc1`` weights, whose input columns the reparameterisation rescaled. Calibration:

1. Row i marks column j if ``W[i, j]`` is above the (1 − tail) quantile of the row's positive entries or below the
   ``tail`` quantile of its negative entries (strict; a row without positive/negative entries marks none there).
2. ``count_j`` = number of rows marking j. The outlier set 𝒪 is the K columns with the largest count (count ≥ 1
   only), ties in first-encounter order (earliest marking row, then column index). K = ⌊D / divisor⌋ with D = Dout
   (release) or Din. 𝒩 = the other columns; both sets are shared by all rows.
3. Each row gets two independent percentile-MSE uniform quantizers: one over its 𝒪 entries, one over its 𝒩 entries.

Everything is vectorised over rows (no Python loop over rows or columns).
"""

from __future__ import annotations

import math

import torch

from roundlab.errors import RoundlabError, check
from roundlab.quant.base import Quantizer, check_finite
from roundlab.quant.grid import fake_quant
from roundlab.quant.quantile import masked_row_quantile
from roundlab.quant.uniform import search_uniform, work_dtype


def outlier_counts(W: torch.Tensor, tail: float = 0.01, rank: str = "float64") -> torch.Tensor:
    """``marked[i, j]``: whether row i marks column j as one of its outliers (step 1)."""
    W = W.to(work_dtype(W.dtype))
    pos_thr = masked_row_quantile(W, W > 0, 1.0 - tail, empty=math.inf, rank=rank)
    neg_thr = masked_row_quantile(W, W < 0, tail, empty=-math.inf, rank=rank)
    return (W > pos_thr[:, None]) | (W < neg_thr[:, None])


def outlier_columns(W: torch.Tensor, k: int, tail: float = 0.01, rank: str = "float64") -> torch.Tensor:
    """Indices (ordered by rank) of the at most ``k`` outlier columns of the 2-D ``W`` (steps 1–2)."""
    marked = outlier_counts(W, tail, rank)
    dout, din = marked.shape
    count = marked.sum(dim=0)
    rows = torch.arange(dout, device=W.device)[:, None].expand(dout, din)
    first_row = torch.where(marked, rows, torch.full_like(rows, dout)).min(dim=0).values
    cols = torch.arange(din, device=W.device)
    key = (dout - count) * ((dout + 1) * din) + first_row * din + cols   # count desc, first row asc, column asc
    order = torch.argsort(key)
    n_candidates = int((count > 0).sum())
    return order[: min(k, n_candidates)]


class DualUniformQuantizer(Quantizer):
    """Per-row dual-uniform weight quantizer over a shared outlier/non-outlier column split.

    Args:
        bits: integer in [2, 8] (both parts use it).
        percentiles: candidate percentiles of each part's search.
        k_from: ``"dout"`` (release, K = ⌊Dout / divisor⌋) or ``"din"`` (K = ⌊Din / divisor⌋).
        k_divisor: the divisor (release 20).
        tail: per-row tail probability of step 1 (release 0.01).
        name: the layer, for error messages.
    """

    PARAMS = ('outlier_mask', 'scale_out', 'zero_out', 'scale_in', 'zero_in')

    def __init__(self, bits: int, percentiles, k_from: str = "dout", k_divisor: int = 20, tail: float = 0.01,
                 name: str = "") -> None:
        super().__init__(bits, percentiles, name, "weight")
        check(k_from in ("dout", "din"), f"k_from must be 'dout' or 'din', got {k_from!r}")
        self.k_from, self.k_divisor, self.tail = k_from, int(k_divisor), float(tail)
        self.granularity = "dual"

    def num_outliers(self, dout: int, din: int) -> int:
        """K for a ``dout × din`` weight."""
        return (dout if self.k_from == "dout" else din) // self.k_divisor

    @property
    def outlier_columns(self) -> torch.Tensor:
        """Column indices of 𝒪 (ascending)."""
        self._require()
        return torch.nonzero(self.outlier_mask).flatten()

    def calibrate(self, W: torch.Tensor) -> "DualUniformQuantizer":
        """Choose the column split and both per-row (s, z) pairs for the 2-D weight ``W``; returns ``self``."""
        W = W.detach()
        check(W.dim() == 2, f"{self.describe()}: the dual-uniform quantizer needs a 2-D weight, got {tuple(W.shape)}")
        check(W.numel() > 0, f"{self.describe()} got an empty weight")
        check_finite(W, self.describe())
        dout, din = W.shape
        cols = outlier_columns(W, self.num_outliers(dout, din), self.tail, self.quantile_rank)
        mask = torch.zeros(din, dtype=torch.bool, device=W.device)
        mask[cols] = True
        ones = torch.ones(dout, 1, dtype=work_dtype(W.dtype), device=W.device)
        params = []
        for part in (mask, ~mask):
            if bool(part.any()):
                s, z = search_uniform(W[:, part], self.bits, self.percentiles, self.quantile_rank)
                params.append((s[:, None], z[:, None]))
            else:  # an empty part is never used; keep a harmless grid
                params.append((ones.clone(), torch.zeros_like(ones)))
        self.outlier_mask = mask
        (self.scale_out, self.zero_out), (self.scale_in, self.zero_in) = params
        return self

    def element_grid(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-element ``(scale, zero)``, each ``[Dout, Din]``: the outlier pair on 𝒪 columns, the other on 𝒩."""
        self._require()
        m = self.outlier_mask[None, :]
        return torch.where(m, self.scale_out, self.scale_in), torch.where(m, self.zero_out, self.zero_in)

    def quantize(self, W: torch.Tensor, mode: str = "round") -> torch.Tensor:
        """Fake-quantize ``W`` with the fixed split and parameters, rounding ``mode`` ("round", "floor", "ceil")."""
        scale, zero = self.element_grid()
        if tuple(W.shape) != tuple(scale.shape):
            raise RoundlabError(f"{self.describe()} was calibrated for a weight of shape {tuple(scale.shape)}, "
                                f"got {tuple(W.shape)}")
        return fake_quant(W, scale.to(W.dtype), zero.to(W.dtype), self.bits, mode)

    def forward(self, W: torch.Tensor) -> torch.Tensor:
        return self.quantize(W)                  # weights are calibrated explicitly, never on the first batch

    def extra_repr(self) -> str:
        return (f"bits={self.bits}, dual-uniform, K from {self.k_from}/{self.k_divisor}, tail={self.tail}, "
                f"{self._state()}, name={self.name!r}")
