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
from roundlab.quant.base import Quantizer
from roundlab.quant.grid import check_bits
from roundlab.quant.quantile import OrderStatistics
from roundlab.quant.uniform import check_finite, work_dtype


def log2_levels(scale: float | torch.Tensor, bits: int) -> torch.Tensor:
    """The non-zero representable values ``s · 2^(-k/2)``, k = 0 .. 2^b − 1 (descending), in float64."""
    k = torch.arange(2 ** check_bits(bits), dtype=torch.float64)
    return torch.as_tensor(scale, dtype=torch.float64) * torch.exp2(-k / 2)


def log2_fake_quant(x: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    """Quantize-dequantize non-negative ``x`` on the log√2 grid of ``scale``; zeros and negatives map to 0."""
    n = 2 ** bits
    e = torch.round(-2 * torch.log2(x / scale))
    keep = e < n                                   # False for underflow, +inf (x = 0) and NaN (x < 0)
    out = scale * torch.exp2(-torch.clamp(e, 0, n - 1) / 2)
    return torch.where(keep, out, torch.zeros_like(out))


def search_log2(values: torch.Tensor, bits: int, percentiles, rank: str = "float64") -> torch.Tensor:
    """The MSE-best scale among the ``percentiles`` quantiles of all of ``values`` (0-d tensor)."""
    with torch.no_grad():
        v = values.detach().reshape(1, -1).to(work_dtype(values.dtype))
        stats = OrderStatistics(v, percentiles, rank)
        top = stats.quantile(1.0)[0]
        best_err = best_s = None
        for p in percentiles:
            s = stats.quantile(p)[0]
            s = torch.where(s > 0, s, torch.where(top > 0, top, torch.ones_like(top)))
            err = (log2_fake_quant(v, s, bits) - v).pow(2).mean()
            if best_err is None or err < best_err:
                best_err, best_s = err, s
    return best_s


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
