"""Quantizer on/off state, calibration mode, weight calibration, and the errors around them."""

import pytest
import torch

from roundlab.errors import RoundlabError
from roundlab.quant import (QuantConfig, activation_quantizers, calibrate_weights, calibration_mode, quant_layers,
                            quant_matmuls, quantize_model, set_quant_state)

from .helpers import build


def _flags(model):
    return ([(l.quant_weight, l.quant_act) for _, l in quant_layers(model)]
            + [m.quant_act for _, m in quant_matmuls(model)])


def test_set_quant_state():
    q = quantize_model(build("vit"))
    assert not any(w or a for w, a in _flags(q)[: len(quant_layers(q))])
    set_quant_state(q, weight=True)
    assert all(l.quant_weight and not l.quant_act for _, l in quant_layers(q))
    set_quant_state(q, act=True)
    assert all(l.quant_act for _, l in quant_layers(q)) and all(m.quant_act for _, m in quant_matmuls(q))
    set_quant_state(q, weight=False, act=False)
    assert not any(l.quant_weight or l.quant_act for _, l in quant_layers(q))
    with pytest.raises(RoundlabError, match="True, False or None"):
        set_quant_state(q, weight=1)
    with pytest.raises(RoundlabError, match="quantize_model"):
        set_quant_state(build("vit"), weight=True)


def test_calibration_mode_calibrates_every_activation_quantizer_and_restores_state(images):
    q = quantize_model(build("swin"))
    set_quant_state(q, weight=False, act=False)
    before = _flags(q)
    with torch.no_grad(), calibration_mode(q):
        assert all(l.quant_act and not l.quant_weight for _, l in quant_layers(q))
        q(images)
        scales = [a.scale.clone() for a in activation_quantizers(q)]
        q(images * 5)                                   # only the first tensor calibrates
        assert all(torch.equal(a.scale, s) for a, s in zip(activation_quantizers(q), scales))
    assert _flags(q) == before
    assert all(a.calibrated and not a.calibrating for a in activation_quantizers(q))
    # patch embed: FP input, no quantizer (release)
    assert dict(quant_layers(q))["patch_embed.proj"].act_quantizer is None


def test_calibration_mode_restores_state_on_error(images):
    q = quantize_model(build("vit"))
    with pytest.raises(RuntimeError):
        with calibration_mode(q):
            q(torch.randn(2, 3, 28, 28))                # wrong channel count
    assert not any(l.quant_act for _, l in quant_layers(q))
    assert not any(a.calibrating for a in activation_quantizers(q))


def test_calibration_with_quantized_weights_repq_style(images):
    q = quantize_model(build("vit"), QuantConfig(calibrate_act_with_quantized_weights=True))
    with torch.no_grad(), calibration_mode(q):
        assert all(l.quant_weight and l.weight_quantizer.calibrated for _, l in quant_layers(q))
        q(images)
    assert not any(l.quant_weight for _, l in quant_layers(q))


def test_activation_quantizer_on_a_captured_input(images):
    q = quantize_model(build("vit"))
    captured = {}
    layer = dict(quant_layers(q))["blocks.1.mlp.fc2"]
    h = layer.register_forward_hook(lambda m, i, o: captured.update(x=i[0]))
    with torch.no_grad(), calibration_mode(q):
        q(images)
    h.remove()
    x = captured["x"]
    xbar = layer.act_quantizer(x)                       # quantizes although the layer's act flag is off
    assert not torch.equal(xbar, x) and torch.equal(xbar, layer.quantize_input(x))
    pe = dict(quant_layers(q))["patch_embed.proj"]
    assert pe.quantize_input(images) is images


def test_calibrate_weights_and_quantized_weight():
    q = quantize_model(build("swin"))
    calibrate_weights(q)
    for _, layer in quant_layers(q):
        Wq = layer.quantized_weight()
        assert Wq.shape == layer.weight.shape
        assert torch.equal(layer.weight_quantizer.quantize(Wq), Wq)


def test_nan_during_calibration_names_the_layer(images):
    q = quantize_model(build("vit"))
    bad = images.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(RoundlabError) as err, torch.no_grad(), calibration_mode(q):
        q(bad)
    assert str(err.value) == "activation quantizer for blocks.0.attn.qkv saw NaN/Inf during calibration"


def test_uncalibrated_quantizers_raise(images):
    q = quantize_model(build("vit"))
    set_quant_state(q, act=True)
    with pytest.raises(RoundlabError, match="activation quantizer for blocks.0.attn.qkv is not calibrated"):
        q(images)
    set_quant_state(q, weight=True, act=False)
    with pytest.raises(RoundlabError, match="weight quantizer for patch_embed.proj is not calibrated"):
        q(images)
