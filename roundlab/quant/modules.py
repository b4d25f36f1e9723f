"""Fake-quantized layers: ``QuantLinear``, ``QuantConv2d`` and ``QuantMatMul`` (ERQ_SPEC §1–§2).

The layers keep the FP ``weight``/``bias`` as plain parameters (the very ``nn.Parameter`` objects of the wrapped
layer), so the pipeline can overwrite them; quantization happens on the fly in ``forward`` with the fixed calibrated
quantizer parameters. Two flags per layer, set by :func:`roundlab.quant.set_quant_state`, switch it:
``quant_weight`` and ``quant_act``. The quantizers themselves always quantize when called, whatever the flags, so
``layer.act_quantizer(x)`` (or ``layer.quantize_input(x)``) runs the input quantizer on a captured FP input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from roundlab.errors import check


class _QuantWeightLayer(nn.Module):
    """Shared state of QuantLinear and QuantConv2d."""

    def _init_common(self, src: nn.Module, name: str, kind: str, act_quantizer, weight_quantizer) -> None:
        self.weight = src.weight
        if src.bias is None:
            self.register_parameter("bias", None)
        else:
            self.bias = src.bias
        self.name = name
        self.kind = kind
        self.act_quantizer = act_quantizer
        self.weight_quantizer = weight_quantizer
        self.quant_weight = False
        self.quant_act = False

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        """``X̄ = Q_a(X)`` with this layer's input quantizer; ``x`` itself if the layer has none (patch embed)."""
        return x if self.act_quantizer is None else self.act_quantizer(x)

    def quantized_weight(self, mode: str = "round") -> torch.Tensor:
        """The weight fake-quantized with the calibrated weight quantizer and rounding ``mode``."""
        return self.weight_quantizer.quantize(self.weight, mode)

    def _inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.quant_act and self.act_quantizer is not None:
            x = self.act_quantizer(x)
        w = self.weight_quantizer(self.weight) if self.quant_weight else self.weight
        return x, w


class QuantLinear(_QuantWeightLayer):
    """``nn.Linear`` with a fake-quantized input (``act_quantizer``) and weight (``weight_quantizer``).

    ``kind`` is one of ``"qkv"``, ``"proj"``, ``"fc1"``, ``"fc2"``, ``"head"``, ``"reduction"``; ``name`` is the
    module path. ``bias`` may be None (Swin's PatchMerging ``reduction``) until the reparameterisation creates one.
    """

    def __init__(self, linear: nn.Linear, *, name: str, kind: str, act_quantizer, weight_quantizer) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self._init_common(linear, name, kind, act_quantizer, weight_quantizer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, w = self._inputs(x)
        return F.linear(x, w, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"kind={self.kind!r}, quant_weight={self.quant_weight}, quant_act={self.quant_act}")


class QuantConv2d(_QuantWeightLayer):
    """``nn.Conv2d`` (the patch embedding) with a per-output-channel weight quantizer over ``C_in·k·k``.

    ``act_quantizer`` is None (the release keeps the image FP) or an 8-bit layer-wise quantizer (RepQ-ViT option).
    """

    def __init__(self, conv: nn.Conv2d, *, name: str, kind: str, act_quantizer, weight_quantizer) -> None:
        super().__init__()
        check(conv.padding_mode == "zeros",
              f"{name}: only zero-padded Conv2d can be quantized, got padding_mode={conv.padding_mode!r}")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size, self.stride, self.padding = conv.kernel_size, conv.stride, conv.padding
        self.dilation, self.groups = conv.dilation, conv.groups
        self._init_common(conv, name, kind, act_quantizer, weight_quantizer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, w = self._inputs(x)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"kind={self.kind!r}, quant_weight={self.quant_weight}, quant_act={self.quant_act}")


class QuantMatMul(nn.Module):
    """``a @ b`` with both operands fake-quantized when ``quant_act`` is on (``q·kᵀ``: uniform × uniform;
    ``attn·v``: log√2 × uniform). Quantizers may be None (``QuantConfig.quantize_attention=False``)."""

    def __init__(self, *, name: str, a_quantizer=None, b_quantizer=None) -> None:
        super().__init__()
        self.name = name
        self.a_quantizer = a_quantizer
        self.b_quantizer = b_quantizer
        self.quant_act = False

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.quant_act:
            if self.a_quantizer is not None:
                a = self.a_quantizer(a)
            if self.b_quantizer is not None:
                b = self.b_quantizer(b)
        return a @ b

    def extra_repr(self) -> str:
        return f"quant_act={self.quant_act}"
