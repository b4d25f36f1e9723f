"""Uniform fake-quantizer with the percentile-MSE scale search (ERQ_SPEC §3.1).

One class serves weights and activations; ``granularity`` says what one (s, z) pair covers:

* ``"tensor"``: the whole tensor (layer-wise activations); ``scale``/``zero`` are 0-d.
* ``"channel"``: each index of the LAST dim (post-LN activations ``[..., C]``, also NHWC Swin); shape ``[C]``.
* ``"row"``: each index of the FIRST dim over everything else (weights, conv weights as ``W.reshape(Dout, -1)``);
  shape ``[R, 1]``, broadcastable to the 2-D view.

A quantizer starts uncalibrated; using it then raises :class:`~roundlab.errors.RoundlabError`.
"""

from __future__ import annotations

import torch

from roundlab.errors import RoundlabError, check
from roundlab.quant.base import Quantizer, check_finite
from roundlab.quant.grid import check_bits, fake_quant, levels
from roundlab.quant.quantile import OrderStatistics
from roundlab.quant.search_stream import SearchStream, pick_best

GRANULARITIES = ("tensor", "channel", "row")


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """Calibration arithmetic runs in float64 for float64 inputs and in float32 otherwise (half inputs included)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def safe_scale(hi: torch.Tensor, lo: torch.Tensor, full_range: torch.Tensor, bits: int) -> torch.Tensor:
    """``s = (hi - lo) / L``, guarded for degenerate slices so that it is always finite and > 0.

    Falls back, where the clipped range is empty, to the slice's full range (max − min) / L, then (constant slice c)
    to |c| / L, which reproduces c exactly, then to 1 (all-zero slice: any scale maps 0 to 0).
    """
    L = levels(bits)
    s = (hi - lo) / L
    s = torch.where(s > 0, s, full_range / L)
    s = torch.where(s > 0, s, torch.maximum(hi.abs(), lo.abs()) / L)
    s = torch.where((s > 0) & torch.isfinite(s), s, torch.ones_like(s))
    return s


def uniform_candidates(stats: OrderStatistics, bits: int, percentiles) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The search's candidate grids, one ``(s, z)`` (each ``[R]``) per percentile ``p``: ``hi = q_p``,
    ``lo = q_{1-p}``, ``s = (hi - lo) / L`` (:func:`safe_scale`), ``z = rnd(-lo / s)``."""
    full_range = stats.quantile(1.0) - stats.quantile(0.0)
    cands = []
    for p in percentiles:
        hi, lo = stats.quantile(p), stats.quantile(1.0 - p)
        s = safe_scale(hi, lo, full_range, bits)
        cands.append((s, torch.round(-lo / s)))
    return cands


def uniform_diff(v: torch.Tensor, cand: tuple[torch.Tensor, torch.Tensor], bits: int) -> torch.Tensor:
    """``fake_quant(v, s, z, bits) - v`` for the rows ``v`` on the per-row grid ``cand = (s, z)`` (of ``v``'s dtype):
    the same operations in the same order, in place on one buffer (the searches' hot loop; bit-identical)."""
    s, z = cand[0][:, None], cand[1][:, None]
    q = v / s
    return q.round_().add_(z).clamp_(0, levels(bits)).sub_(z).mul_(s).sub_(v)


def search_uniform(rows: torch.Tensor, bits: int, percentiles,
                   rank: str = "float64") -> tuple[torch.Tensor, torch.Tensor]:
    """Percentile-MSE search (ERQ_SPEC §3.1) for every row of the 2-D ``rows``, vectorised over rows.

    For each candidate ``p`` in order (:func:`uniform_candidates`): error = mean squared fake-quantization error
    with round-to-nearest; a row keeps a later candidate only if its error is strictly smaller (the earliest wins
    ties). Returns ``(scale, zero)``, each of shape ``[R]``. ``rank``: the quantile rank convention
    (:data:`roundlab.quant.quantile.RANKS`).
    """
    bits = check_bits(bits)
    with torch.no_grad():
        v = rows.detach().to(work_dtype(rows.dtype))
        stats = OrderStatistics(v, search_ps(percentiles), rank)
        cands = uniform_candidates(stats, bits, percentiles)
        errors = [uniform_diff(v, cand, bits).pow_(2).mean(dim=-1) for cand in cands]
    return pick_best(errors, cands)


def search_ps(percentiles) -> list[float]:
    """The quantiles a uniform search reads: every ``p`` and ``1 - p``."""
    return [q for p in percentiles for q in (p, 1.0 - p)]


class UniformSearch(SearchStream):
    """:func:`search_uniform` streamed (:mod:`roundlab.quant.search_stream`), per the quantizer's granularity."""

    def __init__(self, quantizer: "UniformQuantizer", total_images: int) -> None:
        super().__init__(quantizer, total_images, search_ps(quantizer.percentiles))

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantizer._rows(x).to(work_dtype(x.dtype))

    def candidates(self, stats: OrderStatistics) -> list[tuple[torch.Tensor, ...]]:
        return uniform_candidates(stats, self.quantizer.bits, self.quantizer.percentiles)

    def diff(self, v: torch.Tensor, cand: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return uniform_diff(v, cand, self.quantizer.bits)

    def apply(self, best: tuple[torch.Tensor, ...]) -> None:
        self.quantizer._set_searched(*best)


class UniformQuantizer(Quantizer):
    """Asymmetric uniform fake-quantizer ``Q(x; s, z, rho)`` with percentile-MSE calibration.

    Args:
        bits: integer in [2, 8].
        percentiles: candidate percentiles of the search (ERQ_SPEC §3.1).
        granularity: ``"tensor"``, ``"channel"`` (last dim) or ``"row"`` (first dim).
        name: the layer it belongs to, used in error messages (e.g. ``"blocks.3.attn.qkv"``).
        role: ``"activation"`` or ``"weight"``, used in error messages.

    ``forward(x)`` quantizes with round-to-nearest. Inside :func:`roundlab.quant.calibration_mode` an activation
    quantizer first calibrates itself from the first tensor it receives.
    """

    PARAMS = ('scale', 'zero')

    def __init__(self, bits: int, percentiles, granularity: str = "tensor", name: str = "",
                 role: str = "activation") -> None:
        super().__init__(bits, percentiles, name, role)
        check(granularity in GRANULARITIES,
              f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
        self.granularity = granularity

    # -- state -------------------------------------------------------------------------------------------------------
    def set_params(self, scale: torch.Tensor, zero: torch.Tensor) -> "UniformQuantizer":
        """Set (s, z) directly (shapes as for this granularity); used by the reparameterisation (§4)."""
        scale, zero = torch.as_tensor(scale), torch.as_tensor(zero)
        check(bool(torch.isfinite(scale).all() and (scale > 0).all() and torch.isfinite(zero).all()),
              f"{self.describe()}: scale must be finite and > 0 and zero finite")
        self.scale, self.zero = scale.detach().clone(), zero.detach().clone()
        return self

    # -- calibration -------------------------------------------------------------------------------------------------
    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        if self.granularity == "tensor":
            return x.reshape(1, -1)
        if self.granularity == "channel":
            return x.reshape(-1, x.shape[-1]).transpose(0, 1)
        return x.reshape(x.shape[0], -1)

    def calibrate(self, x: torch.Tensor) -> "UniformQuantizer":
        """Choose (s, z) for ``x`` by the percentile-MSE search; returns ``self``."""
        x = x.detach()
        check(x.numel() > 0, f"{self.describe()} got an empty tensor to calibrate on")
        check_finite(x, self.describe())
        return self._set_searched(*search_uniform(self._rows(x), self.bits, self.percentiles, self.quantile_rank))

    def _set_searched(self, scale: torch.Tensor, zero: torch.Tensor) -> "UniformQuantizer":
        """Keep a search's per-row ``(scale, zero)`` (each ``[R]``) in this granularity's shape."""
        if self.granularity == "tensor":
            scale, zero = scale[0], zero[0]
        elif self.granularity == "row":
            scale, zero = scale[:, None], zero[:, None]
        self.scale, self.zero = scale, zero
        return self

    def search_stream(self, total_images: int) -> UniformSearch:
        """The percentile-MSE search over an input that arrives in batches (streamed calibration). Not for the
        ``"row"`` granularity: its rows index the first dimension, which for an activation is the batch."""
        if self.granularity == "row":
            raise RoundlabError(f"{self.describe()} is row-granular (a grid per first-dimension index, i.e. per "
                                "image of an activation) and cannot be calibrated streamed")
        return UniformSearch(self, total_images)

    # -- quantization ------------------------------------------------------------------------------------------------
    def element_grid(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, zero)``: 0-d (tensor), ``[C]`` (channel) or ``[R, 1]`` (row; broadcastable to the 2-D view)."""
        self._require()
        return self.scale, self.zero

    def quantize(self, x: torch.Tensor, mode: str = "round") -> torch.Tensor:
        """Fake-quantize ``x`` with the fixed calibrated (s, z) and rounding ``mode`` ("round", "floor", "ceil")."""
        self._require()
        s, z = self.scale.to(x.dtype), self.zero.to(x.dtype)
        if self.granularity == "tensor":
            return fake_quant(x, s, z, self.bits, mode)
        if self.granularity == "channel":
            if x.shape[-1] != s.shape[0]:
                raise RoundlabError(f"{self.describe()} was calibrated for {s.shape[0]} channels (last dim), "
                                    f"got a tensor of shape {tuple(x.shape)}")
            return fake_quant(x, s, z, self.bits, mode)
        if x.shape[0] != s.shape[0]:
            raise RoundlabError(f"{self.describe()} was calibrated for {s.shape[0]} rows, "
                                f"got a tensor of shape {tuple(x.shape)}")
        return fake_quant(x.reshape(x.shape[0], -1), s, z, self.bits, mode).reshape(x.shape)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, granularity={self.granularity}, {self._state()}, name={self.name!r}"
