"""RepQ-ViT reparameterisation (ERQ_SPEC §4): exact in FP, quantized-equivalent for integer z̄, guards."""

import copy

import pytest
import torch
from torch import nn

from roundlab.errors import RoundlabError
from roundlab.quant import (QuantConfig, UniformQuantizer, calibration_mode, quant_layers, quantize_model,
                            reparameterize, set_quant_state)
from roundlab.quant.modules import QuantLinear
from roundlab.quant.reparam import fold_channelwise

from .helpers import build, calibrated_copy, reparam_max_abs_diff


@pytest.mark.parametrize("name", ["vit", "deit", "swin"])
def test_exact_in_fp(name, images):
    fp = build(name)
    assert reparam_max_abs_diff(fp, images, images) <= 1e-5


def test_exact_in_fp_with_patch_merging_and_bias_creation(images):
    fp = build("swin")
    cfg = QuantConfig(reparam_patch_merging=True)
    assert reparam_max_abs_diff(fp, images, images, cfg) <= 1e-5
    q = calibrated_copy(fp, images, cfg)
    red = dict(quant_layers(q))["layers.1.downsample.reduction"]
    assert red.bias is not None and red.act_quantizer.granularity == "tensor"


@pytest.mark.parametrize("name", ["vit", "swin"])
def test_folded_layers_become_layer_wise_and_weights_are_reset(name, images):
    q = quantize_model(build(name))
    with torch.no_grad(), calibration_mode(q):
        q(images)
    before = {n: (l.act_quantizer.scale.clone(), l.act_quantizer.zero.clone()) for n, l in quant_layers(q)
              if l.kind in ("qkv", "fc1")}
    for _, l in quant_layers(q):
        l.weight_quantizer.calibrate(l.weight)
    reparameterize(q)
    for n, l in quant_layers(q):
        if l.kind in ("qkv", "fc1"):
            s, z = before[n]
            assert l.act_quantizer.granularity == "tensor"
            assert l.act_quantizer.scale.item() == pytest.approx(s.mean().item(), rel=1e-6)
            assert l.act_quantizer.zero.item() == pytest.approx(z.mean().item(), rel=1e-6)   # unrounded z̄
            assert not l.weight_quantizer.calibrated
        else:
            assert l.weight_quantizer.calibrated


@pytest.mark.parametrize("name", ["vit", "swin"])
def test_quantized_equivalence_with_integer_zero(name, images):
    """With z̄ rounded, the layer-wise quantizer on the folded input equals the channel-wise one on the original."""
    cfg = QuantConfig(round_zero=True, reparam_patch_merging=(name == "swin"))
    q = quantize_model(build(name).double(), cfg)
    x = images.double()
    with torch.no_grad():
        with calibration_mode(q):
            q(x)
        set_quant_state(q, weight=False, act=True)
        before = q(x)
        reparameterize(q)
        after = q(x)
    assert (before - after).abs().max().item() <= 1e-8


@pytest.mark.parametrize("round_zero", [True, False])
def test_fold_on_one_layernorm_linear_pair(round_zero):
    torch.manual_seed(0)
    D = 16
    norm = nn.LayerNorm(D).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.normal_()
    lin = nn.Linear(D, 8).double()
    x = torch.randn(500, D, dtype=torch.float64) * torch.linspace(0.2, 5, D, dtype=torch.float64)
    layer = QuantLinear(copy.deepcopy(lin), name="fc1", kind="fc1",
                        act_quantizer=UniformQuantizer(4, (0.999, 0.9999, 0.99999), "channel", "fc1"),
                        weight_quantizer=UniformQuantizer(4, (1.0,), "row", "fc1", role="weight"))
    folded_norm = copy.deepcopy(norm)
    with torch.no_grad():
        h = norm(x)
        q_channel = layer.act_quantizer.calibrate(h)(h)            # channel-wise quantized original input
        s_c, z_c = layer.act_quantizer.scale.clone(), layer.act_quantizer.zero.clone()
        fold_channelwise(folded_norm, layer, round_zero)
        h2 = folded_norm(x)
        assert (layer(h2) - lin(h)).abs().max().item() <= 1e-10       # exact in FP
        s_bar, z_bar = layer.act_quantizer.scale, layer.act_quantizer.zero
        r = s_c / s_bar
        t = (-z_c * s_c) / r + z_bar * s_bar
        assert torch.allclose(h2, h / r - t, atol=1e-10)               # x' = x / r − t
        back = r * (layer.act_quantizer(h2) + t)                       # layer-wise grid mapped back to x
    if round_zero:
        assert z_bar.item() == round(z_bar.item())
        assert torch.allclose(back, q_channel, atol=1e-9)              # quantized equivalence
    else:
        assert z_bar.item() != round(z_bar.item())                     # release: fractional z̄ ...
        assert not torch.allclose(back, q_channel, atol=1e-9)          # ... so the grids differ


def test_guards(images):
    q = quantize_model(build("vit"))
    with pytest.raises(RoundlabError, match="not calibrated"):
        reparameterize(q)
    with torch.no_grad(), calibration_mode(q):
        q(images)
    reparameterize(q)
    with pytest.raises(RoundlabError, match="already reparameterized"):
        reparameterize(q)
    with pytest.raises(RoundlabError, match="quantize_model"):
        reparameterize(build("vit"))
    q = quantize_model(build("vit"), QuantConfig(reparam=False))
    with torch.no_grad(), calibration_mode(q):
        q(images)
    reparameterize(q)                                    # reparam=False: a no-op, quantizers stay channel-wise
    assert dict(quant_layers(q))["blocks.0.attn.qkv"].act_quantizer.granularity == "channel"
