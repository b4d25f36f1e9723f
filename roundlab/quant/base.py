"""What every roundlab fake-quantizer shares: bits and search percentiles, a name and role for error messages,
calibrated buffers that start empty, and calibration on the first tensor seen inside
:func:`roundlab.quant.calibration_mode`.

A subclass lists its buffers in ``PARAMS`` (the first one tells whether it is calibrated) and implements
``calibrate(x)`` and ``quantize(x, mode)``; an activation quantizer also ``search_stream(total_images)``, its search
over batches (:mod:`roundlab.quant.search_stream`), for streamed calibration.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from roundlab.errors import RoundlabError, check
from roundlab.quant.grid import check_bits

_HINTS = {"activation": "run a forward pass inside roundlab.quant.calibration_mode(model) first",
          "weight": "call .calibrate(layer.weight) (or roundlab.quant.calibrate_weights(model)) first"}



def check_finite(x: torch.Tensor, what: str) -> None:
    """Raise one clear error if ``x`` holds NaN or Inf (``what`` names the quantizer)."""
    check(bool(torch.isfinite(x).all()), f"{what} saw NaN/Inf during calibration")

class Quantizer(nn.Module):
    """Base of the uniform, log√2 and dual-uniform quantizers (see the module docstring)."""

    PARAMS: ClassVar[tuple[str, ...]] = ("scale",)

    #: How quantile ranks are taken in the percentile searches (``roundlab.quant.quantile.RANKS``); set from
    #: ``QuantConfig.quantile_rank`` by :func:`roundlab.quant.quantize_model`.
    quantile_rank: str = "float64"

    def __init__(self, bits: int, percentiles, name: str = "", role: str = "activation") -> None:
        super().__init__()
        self.bits = check_bits(bits)
        self.percentiles = tuple(float(p) for p in percentiles)
        self.name = name
        self.role = role
        for buf in self.PARAMS:
            self.register_buffer(buf, None)
        self.calibrating = False
        self._seen = False

    @property
    def calibrated(self) -> bool:
        return getattr(self, self.PARAMS[0]) is not None

    def describe(self) -> str:
        return f"{self.role} quantizer for {self.name or '<unnamed>'}"

    def reset(self) -> None:
        """Forget the calibrated parameters (the quantizer must be calibrated again before use)."""
        for buf in self.PARAMS:
            setattr(self, buf, None)

    def start_calibration(self) -> None:
        self.calibrating, self._seen = True, False

    def stop_calibration(self) -> None:
        self.calibrating, self._seen = False, False

    def _require(self) -> None:
        if not self.calibrated:
            raise RoundlabError(f"{self.describe()} is not calibrated; {_HINTS.get(self.role, _HINTS['weight'])}")

    def calibrate(self, x: torch.Tensor) -> "Quantizer":  # pragma: no cover - abstract
        raise NotImplementedError

    def quantize(self, x: torch.Tensor, mode: str = "round") -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def search_stream(self, total_images: int):
        """A :class:`~roundlab.quant.search_stream.SearchStream`: this quantizer's calibration search over an input
        that arrives in batches of images (streamed calibration). A kind that supports it overrides this."""
        raise RoundlabError(f"{self.describe()} ({type(self).__name__}) cannot be calibrated streamed; "
                            "calibrate without a calibration batch size")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating and not self._seen:
            self.calibrate(x)
            self._seen = True
        return self.quantize(x)

    def _state(self) -> str:
        return "calibrated" if self.calibrated else "uncalibrated"
