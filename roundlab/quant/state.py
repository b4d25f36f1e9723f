"""Switching and calibrating the quantizers of a fake-quantized model.

* :func:`quant_layers` — every QuantLinear / QuantConv2d, in forward order, with its module path.
* :func:`set_quant_state` — weight and activation quantizers on/off (activation = layer inputs and both matmuls).
* :func:`calibration_mode` — a context manager in which every activation quantizer calibrates itself from the first
  tensor it receives (ERQ_SPEC §1 step 4); the previous on/off state is always restored on exit
  (:func:`calibration_state`; :mod:`roundlab.quant.streamed` calibrates the same way batch by batch).
* :func:`calibrate_weights` — calibrate every weight quantizer on the layer's current weight (§1 step 8).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn

from roundlab.errors import check
from roundlab.quant.modules import QuantConv2d, QuantLinear, QuantMatMul
from roundlab.quant.surgery import CONFIG_ATTR


def quant_layers(model: nn.Module) -> list[tuple[str, QuantLinear | QuantConv2d]]:
    """``(path, layer)`` for every QuantLinear and QuantConv2d, in forward order (module registration order, which
    for timm ViT/DeiT/Swin is the order of the forward pass)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (QuantLinear, QuantConv2d))]


def quant_matmuls(model: nn.Module) -> list[tuple[str, QuantMatMul]]:
    """``(path, matmul)`` for every QuantMatMul (q·kᵀ and attn·v of each attention), in forward order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, QuantMatMul)]


def activation_quantizers(model: nn.Module) -> list[nn.Module]:
    """Every activation quantizer: layer inputs (where present) and both operands of every QuantMatMul."""
    out = []
    for m in model.modules():
        if isinstance(m, (QuantLinear, QuantConv2d)):
            out.append(m.act_quantizer)
        elif isinstance(m, QuantMatMul):
            out += [m.a_quantizer, m.b_quantizer]
    return [q for q in out if q is not None]


def _require_quantized(model: nn.Module) -> None:
    check(getattr(model, CONFIG_ATTR, None) is not None and bool(quant_layers(model) or quant_matmuls(model)),
          f"{type(model).__name__} has no quantized layers; call roundlab.quant.quantize_model first")


def set_quant_state(model: nn.Module, weight: bool | None = None, act: bool | None = None) -> nn.Module:
    """Switch every weight quantizer (``weight``) and activation quantizer (``act``) on or off; None leaves it."""
    _require_quantized(model)
    for what, value in (("weight", weight), ("act", act)):
        check(value is None or isinstance(value, bool), f"set_quant_state: {what} must be True, False or None")
    for _, m in quant_layers(model):
        if weight is not None:
            m.quant_weight = weight
        if act is not None:
            m.quant_act = act
    if act is not None:
        for _, m in quant_matmuls(model):
            m.quant_act = act
    return model


def _save_state(model: nn.Module) -> list[tuple[nn.Module, dict]]:
    return [(m, {k: getattr(m, k) for k in ("quant_weight", "quant_act") if hasattr(m, k)})
            for m in model.modules() if isinstance(m, (QuantLinear, QuantConv2d, QuantMatMul))]


def calibrate_weights(model: nn.Module, only_uncalibrated: bool = False) -> nn.Module:
    """Calibrate every weight quantizer on its layer's current FP weight (all, or only the uncalibrated ones)."""
    _require_quantized(model)
    for _, layer in quant_layers(model):
        if not (only_uncalibrated and layer.weight_quantizer.calibrated):
            layer.weight_quantizer.calibrate(layer.weight)
    return model


@contextmanager
def calibration_state(model: nn.Module, weight: bool | None = None) -> Iterator[nn.Module]:
    """The on/off state of a calibration pass: activation quantizers on; weights quantized (``weight``; uncalibrated
    weight quantizers are calibrated on the current weights first) or FP. None takes
    ``QuantConfig.calibrate_act_with_quantized_weights``. The previous state is restored on exit, even on error."""
    _require_quantized(model)
    if weight is None:
        weight = getattr(model, CONFIG_ATTR).calibrate_act_with_quantized_weights
    saved = _save_state(model)
    try:
        if weight:
            calibrate_weights(model, only_uncalibrated=True)
        set_quant_state(model, weight=weight, act=True)
        yield model
    finally:
        for m, flags in saved:
            for k, v in flags.items():
                setattr(m, k, v)


@contextmanager
def calibration_mode(model: nn.Module, weight: bool | None = None) -> Iterator[nn.Module]:
    """Within the block, activation quantizers are on and each calibrates itself from the first tensor it receives
    (then quantizes it, so downstream quantizers see quantized upstream activations).

    ``weight``: also quantize weights during the pass (RepQ-ViT; uncalibrated weight quantizers are calibrated on the
    current weights first) or keep them FP (release). None takes ``QuantConfig.calibrate_act_with_quantized_weights``.
    On exit calibration mode ends and the previous on/off state of every layer is restored, even on error.
    :func:`roundlab.quant.streamed.calibrate_streamed` gives the same result batch by batch.
    """
    quantizers = activation_quantizers(model) if getattr(model, CONFIG_ATTR, None) is not None else []
    with calibration_state(model, weight):
        try:
            for q in quantizers:
                q.start_calibration()
            yield model
        finally:
            for q in quantizers:
                q.stop_calibration()
