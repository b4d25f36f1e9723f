"""Model surgery on tiny random timm ViT / DeiT (distilled) / Swin and on the real ImageNet architectures."""

import copy

import pytest
import timm
import torch
from torch import nn

from roundlab.errors import RoundlabError
from roundlab.quant import (DualUniformQuantizer, Log2Quantizer, QuantConfig, QuantConv2d, QuantLinear,
                            UniformQuantizer, calibrate_weights, calibration_mode, quant_layers, quant_matmuls,
                            quantize_model, reparameterize, set_quant_state)

from .helpers import build, calibrated_copy

MODELS = ["vit", "deit", "swin"]


@pytest.mark.parametrize("name", MODELS)
def test_all_quantizers_off_equals_fp(name, images):
    fp = build(name)
    q = quantize_model(copy.deepcopy(fp), QuantConfig())
    with torch.no_grad():
        assert (fp(images) - q(images)).abs().max().item() <= 1e-5
    # also after calibration, with every quantizer switched off again
    q = calibrated_copy(fp, images, reparam=False)
    with torch.no_grad():
        assert (fp(images) - q(images)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", MODELS)
def test_fp_state_dict_keys_survive(name):
    fp = build(name)
    q = quantize_model(copy.deepcopy(fp))
    assert set(fp.state_dict()) <= set(q.state_dict())
    q.load_state_dict(fp.state_dict(), strict=False)


def _forward_order(model, images):
    order = []
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: order.append(n)) for n, m in quant_layers(model)]
    with torch.no_grad():
        model(images)
    for h in hooks:
        h.remove()
    return order


@pytest.mark.parametrize("name", MODELS)
def test_layers_kinds_quantizers_and_forward_order(name, images):
    q = quantize_model(build(name))
    layers = quant_layers(q)
    assert [n for n, _ in layers] == _forward_order(q, images)
    kinds = {n: l.kind for n, l in layers}
    assert kinds["patch_embed.proj"] == "patch_embed"
    for n, layer in layers:
        assert isinstance(layer.weight, nn.Parameter) and layer.name == n
        assert isinstance(layer, QuantConv2d if layer.kind == "patch_embed" else QuantLinear)
        if layer.kind == "patch_embed":
            assert layer.act_quantizer is None
        elif layer.kind in ("qkv", "fc1"):
            assert layer.act_quantizer.granularity == "channel"
            assert isinstance(layer.weight_quantizer, DualUniformQuantizer)
        else:
            assert layer.act_quantizer.granularity == "tensor"
            assert layer.weight_quantizer.granularity == "row"
    heads = [n for n, k in kinds.items() if k == "head"]
    assert heads == {"vit": ["head"], "deit": ["head", "head_dist"], "swin": ["head.fc"]}[name]
    n_blocks = sum(k == "qkv" for k in kinds.values())
    assert len(quant_matmuls(q)) == 2 * n_blocks
    for _, mm in quant_matmuls(q):
        kinds_ = (type(mm.a_quantizer), type(mm.b_quantizer))
        assert kinds_ in ((UniformQuantizer, UniformQuantizer), (Log2Quantizer, UniformQuantizer))


def test_swin_reduction_is_bias_free_and_layer_wise():
    q = quantize_model(build("swin"))
    assert q.layers[0].blocks[1].attn_mask is not None          # the shifted-window mask path is exercised
    layer = dict(quant_layers(q))["layers.1.downsample.reduction"]
    assert layer.kind == "reduction" and layer.bias is None
    assert layer.act_quantizer.granularity == "tensor"
    q2 = quantize_model(build("swin"), QuantConfig(reparam_patch_merging=True))
    assert dict(quant_layers(q2))["layers.1.downsample.reduction"].act_quantizer.granularity == "channel"


def test_options_head_patch_embed_attention_dual():
    q = quantize_model(build("deit"), QuantConfig(quantize_head=False, quantize_patch_embed_input=True,
                                                 quantize_attention=False, dual_uniform=False))
    assert type(q.head) is nn.Linear and type(q.head_dist) is nn.Linear
    pe = dict(quant_layers(q))["patch_embed.proj"]
    assert pe.act_quantizer.bits == 8
    assert all(mm.a_quantizer is None and mm.b_quantizer is None for _, mm in quant_matmuls(q))
    assert all(isinstance(l.weight_quantizer, UniformQuantizer) for _, l in quant_layers(q))


@pytest.mark.parametrize("name", MODELS)
def test_w8a8_close_to_fp(name, images):
    fp = build(name)
    q = calibrated_copy(fp, images, QuantConfig(wbits=8, abits=8))
    set_quant_state(q, weight=True, act=True)
    with torch.no_grad():
        y, yq = fp(images), q(images)
    assert torch.isfinite(yq).all()
    assert ((yq - y).norm() / y.norm()).item() < 0.1          # loose: random weights, near-uniform attention


def test_w4a4_runs_and_changes_the_output(images):
    fp = build("vit")
    q = calibrated_copy(fp, images, QuantConfig(wbits=4, abits=4))
    set_quant_state(q, weight=True, act=True)
    with torch.no_grad():
        y, yq = fp(images), q(images)
    assert torch.isfinite(yq).all() and not torch.allclose(y, yq)


def test_float64_model(images):
    fp = build("swin").double()
    q = calibrated_copy(fp, images.double(), QuantConfig(wbits=8, abits=8))
    set_quant_state(q, weight=True, act=True)
    with torch.no_grad():
        assert q(images.double()).dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda(images):
    fp = build("swin").cuda()
    q = calibrated_copy(fp, images.cuda(), QuantConfig(wbits=8, abits=8))
    set_quant_state(q, weight=True, act=True)
    with torch.no_grad():
        assert q(images.cuda()).is_cuda


class NotATransformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)


def test_unknown_models_and_layers_raise():
    with pytest.raises(RoundlabError, match="cannot quantize a NotATransformer"):
        quantize_model(NotATransformer())
    with pytest.raises(RoundlabError, match="QuantConfig"):
        quantize_model(build("vit"), {"wbits": 4})
    m = build("vit")
    m.blocks[0].attn.extra = nn.Linear(4, 4)
    with pytest.raises(RoundlabError, match="unsupported layer blocks.0.attn.extra"):
        quantize_model(m)
    m = build("vit")
    m.blocks[1] = nn.Identity()
    with pytest.raises(RoundlabError, match="unsupported module blocks.1"):
        quantize_model(m)
    m = quantize_model(build("vit"))
    with pytest.raises(RoundlabError, match="already quantized"):
        quantize_model(m)


@pytest.mark.parametrize("arch", ["deit_small_patch16_224", "vit_small_patch16_224",
                                  "swin_small_patch4_window7_224"])
def test_real_imagenet_architectures(arch):
    torch.manual_seed(0)
    fp = timm.create_model(arch, pretrained=False).eval()
    x = torch.randn(1, 3, 224, 224)
    q = quantize_model(copy.deepcopy(fp), QuantConfig(wbits=4, abits=4))
    with torch.no_grad():
        y = fp(x)
        assert (q(x) - y).abs().max().item() <= 1e-4
        with calibration_mode(q):
            q(x)
        reparameterize(q)
        set_quant_state(q, weight=False, act=False)
        assert (q(x) - y).abs().max().item() <= 1e-4
        calibrate_weights(q)
        set_quant_state(q, weight=True, act=True)
        assert torch.isfinite(q(x)).all()
