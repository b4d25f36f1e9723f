"""log√2 fake-quantizer for post-softmax attention probabilities (RepQ-ViT; ERQ_SPEC §3.2).

With one scale ``s`` (the largest representable value) and no zero point::

    e = rnd(-2 * log2(x / s))            # x = 0 gives +inf
    e >= 2**b        -> 0                 # underflow: exact zero
    otherwise        -> s * 2**(-clip(e, 0, 2**b - 1) / 2)

so the representable values are ``{0} ∪ {s · 2^(-k/2) : k = 0 .. 2^b - 1}``; inputs above ``s`` saturate to ``s``.
``s`` is chosen among the ``percentiles`` quantiles of the whole tensor by MSE (strict <, earliest wins).
"""

from __future__ import annotations

import torch

from roundlab.errors import check
from roundlab.quant.base import Quantizer, check_finite
from roundlab.quant.grid import check_bits
from roundlab.quant.quantile import OrderStatistics
from roundlab.quant.search_stream import SearchStream, pick_best
from roundlab.quant.uniform import work_dtype


def log2_levels(scale: float | torch.Tensor, bits: int) -> torch.Tensor:
    """The non-zero representable values ``s · 2^(-k/2)``, k = 0 .. 2^b − 1 (descending), in float64."""
    scale = torch.as_tensor(scale, dtype=torch.float64)
    k = torch.arange(2 ** check_bits(bits), dtype=torch.float64, device=scale.device)
    return scale * torch.exp2(-k / 2)


def log2_fake_quant(x: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    """Quantize-dequantize non-negative ``x`` on the log√2 grid of ``scale``; zeros and negatives map to 0."""
    n = 2 ** bits
    e = torch.round(-2 * torch.log2(x / scale))
    keep = e < n                                   # False for underflow, +inf (x = 0) and NaN (x < 0)
    out = scale * torch.exp2(-torch.clamp(e, 0, n - 1) / 2)
    return torch.where(keep, out, torch.zeros_like(out))


def log2_diff(v: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    """``log2_fake_quant(v, scale, bits) - v``: the same operations in the same order, in place on one buffer (the
    search's hot loop; bit-identical)."""
    n = 2 ** bits
    e = (v / scale).log2_().mul_(-2).round_()
    keep = e < n
    out = e.clamp_(0, n - 1).neg_().div_(2).exp2_().mul_(scale)
    return out.masked_fill_(~keep, 0).sub_(v)


def log2_candidates(stats: OrderStatistics, percentiles) -> list[tuple[torch.Tensor]]:
    """The candidate scales, one per percentile: the quantile, or (for a quantile of 0) the maximum, or 1."""
    top = stats.quantile(1.0)[0]
    cands = []
    for p in percentiles:
        s = stats.quantile(p)[0]
        cands.append((torch.where(s > 0, s, torch.where(top > 0, top, torch.ones_like(top))),))
    return cands


def search_log2(values: torch.Tensor, bits: int, percentiles, rank: str = "float64") -> torch.Tensor:
    """The MSE-best scale among the ``percentiles`` quantiles of all of ``values`` (0-d tensor; strict <, the
    earliest candidate wins ties)."""
    with torch.no_grad():
        v = values.detach().reshape(1, -1).to(work_dtype(values.dtype))
        stats = OrderStatistics(v, percentiles, rank)
        cands = log2_candidates(stats, percentiles)
        errors = [log2_diff(v, s, bits).pow_(2).mean() for (s,) in cands]
    return pick_best(errors, cands)[0]


class Log2Search(SearchStream):
    """:func:`search_log2` streamed (:mod:`roundlab.quant.search_stream`)."""

    def __init__(self, quantizer: "Log2Quantizer", total_images: int) -> None:
        super().__init__(quantizer, total_images, quantizer.percentiles)

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(1, -1).to(work_dtype(x.dtype))

    def candidates(self, stats: OrderStatistics) -> list[tuple[torch.Tensor, ...]]:
        return log2_candidates(stats, self.quantizer.percentiles)

    def diff(self, v: torch.Tensor, cand: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return log2_diff(v, cand[0], self.quantizer.bits)

    def mean(self, sq: torch.Tensor) -> torch.Tensor:
        return sq.mean()

    def total(self, sq: torch.Tensor) -> torch.Tensor:
        return sq.sum()

    def apply(self, best: tuple[torch.Tensor, ...]) -> None:
        self.quantizer.scale = best[0]


class Log2Quantizer(Quantizer):
    """Layer-wise log√2 quantizer (one scale for the whole tensor, all heads), for the softmax operand of attn·v."""

    PARAMS = ('scale',)

    def __init__(self, bits: int, percentiles, name: str = "") -> None:
        super().__init__(bits, percentiles, name, "activation")

    def calibrate(self, x: torch.Tensor) -> "Log2Quantizer":
        x = x.detach()
        check(x.numel() > 0, f"{self.describe()} got an empty tensor to calibrate on")
        check_finite(x, self.describe())
        self.scale = search_log2(x, self.bits, self.percentiles, self.quantile_rank)
        return self

    def search_stream(self, total_images: int) -> Log2Search:
        """The log√2 scale search over an input that arrives in batches (streamed calibration)."""
        return Log2Search(self, total_images)

    def levels(self) -> torch.Tensor:
        """The non-zero representable values (float64, descending)."""
        self._require()
        return log2_levels(self.scale, self.bits)

    def quantize(self, x: torch.Tensor, mode: str = "round") -> torch.Tensor:
        self._require()
        check(mode == "round", f"{self.describe()}: the log√2 quantizer only rounds to nearest, got mode {mode!r}")
        return log2_fake_quant(x, self.scale.to(x.dtype), self.bits)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, log√2, {self._state()}, name={self.name!r}"
