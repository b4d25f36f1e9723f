"""Quantizers, quantized modules, model surgery and the RepQ-ViT reparameterisation (ERQ_SPEC §0–§4).

Typical use (the pipeline's order, ERQ_SPEC §1)::

    from roundlab.quant import (QuantConfig, quantize_model, set_quant_state, quant_layers, calibration_mode,
                                reparameterize, calibrate_weights)
    model = quantize_model(model, QuantConfig(wbits=4, abits=4))
    with calibration_mode(model):          # activation quantizers calibrate on the first tensor they see
        model(images)
    # or, batch by batch (same grids; memory does not hold every image's activations):
    # calibrate_streamed(model, images, batch_size=32)
    reparameterize(model)                  # fold channel-wise post-LN quantizers (exact in FP)
    calibrate_weights(model)               # or layer.weight_quantizer.calibrate(layer.weight) per layer
    set_quant_state(model, weight=True, act=True)

Modules: ``grid`` (the uniform grid), ``quantile`` (exact quantiles), ``config`` (QuantConfig), ``uniform``
(percentile-MSE uniform quantizer), ``log2`` (log√2), ``dual`` (dual-uniform weights), ``modules`` (QuantLinear,
QuantConv2d, QuantMatMul), ``attention`` (quantized attention forwards), ``surgery`` (architectures,
quantize_model), ``state`` (on/off, calibration), ``streamed`` and ``search_stream`` (streamed calibration),
``reparam`` (§4).
"""

import importlib

# Lazy exports (PEP 562): ``roundlab.quant.grid`` is imported by the solvers, which must not pay for importing timm.
_EXPORTS = {
    "ACT_PERCENTILES": "config", "WEIGHT_PERCENTILES": "config", "QuantConfig": "config",
    "DualUniformQuantizer": "dual", "Log2Quantizer": "log2", "UniformQuantizer": "uniform",
    "QuantConv2d": "modules", "QuantLinear": "modules", "QuantMatMul": "modules",
    "reparameterize": "reparam",
    "activation_quantizers": "state", "calibrate_weights": "state", "calibration_mode": "state",
    "quant_layers": "state", "quant_matmuls": "state", "set_quant_state": "state",
    "ARCHITECTURES": "surgery", "find_architecture": "surgery", "model_config": "surgery",
    "quantize_model": "surgery", "calibrate_streamed": "streamed",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"roundlab.quant.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'roundlab.quant' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
