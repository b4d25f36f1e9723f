"""The uniform quantization grid shared by the quantizers, the rounding problems and Wqer.

``Q(x; s, z, rho) = s * (clip(rho(x / s) + z, 0, 2**b - 1) - z)`` (ERQ_SPEC §0): the zero point is added after
rounding ``x / s``; ``rho`` is round-half-to-even (``torch.round``), floor or ceil. ``scale`` and ``zero`` broadcast
against ``x``, so a per-row, per-column-set (dual-uniform) or per-element grid all go through the same function.
"""

from __future__ import annotations

import torch

from roundlab.errors import RoundlabError
from roundlab.validate import check_known

MIN_BITS, MAX_BITS = 2, 8
ROUNDING = {"round": torch.round, "floor": torch.floor, "ceil": torch.ceil}


def check_bits(bits: int, what: str = "bits") -> int:
    """Return ``bits`` if it is an integer in [2, 8]; otherwise raise one clear error."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise RoundlabError(f"{what} must be an integer in [{MIN_BITS}, {MAX_BITS}], got {bits!r}")
    return bits


def levels(bits: int) -> int:
    """Largest integer level ``L_b = 2**b - 1``."""
    return 2**bits - 1


def fake_quant(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int,
               mode: str = "round") -> torch.Tensor:
    """Quantize-dequantize ``x`` on the uniform grid ``(scale, zero, bits)`` with rounding ``mode``."""
    try:
        rho = ROUNDING[mode]
    except (KeyError, TypeError):
        check_known("rounding mode", mode, sorted(ROUNDING))
        raise
    q = torch.clamp(rho(x / scale) + zero, 0, levels(bits))
    return (q - zero) * scale

