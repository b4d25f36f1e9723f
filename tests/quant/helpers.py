"""Tiny random timm models of the zoo's shapes (28×28 grayscale, 10 classes) and model-level checks.

The checks are written so that the zoo-checkpoint tests are a few lines: load a checkpoint, then e.g.
``assert reparam_max_abs_diff(model, calib, images) <= 1e-4`` and
``assert top1(fp_logits, y) - top1(quantized_logits(model, calib, x, QuantConfig(wbits=8, abits=8)), y) <= 0.5``.
"""

from __future__ import annotations

import copy

import torch
from timm.models.deit import VisionTransformerDistilled
from timm.models.swin_transformer import SwinTransformer
from timm.models.vision_transformer import VisionTransformer

from roundlab.quant import (QuantConfig, calibrate_weights, calibration_mode, quantize_model, reparameterize,
                            set_quant_state)


@torch.no_grad()
def calibrated_copy(model: torch.nn.Module, calib: torch.Tensor, cfg: QuantConfig | None = None,
                    reparam: bool = True) -> torch.nn.Module:
    """A quantized copy of ``model``: activations calibrated on ``calib``, reparameterised (if ``reparam`` and the
    config says so), weight quantizers calibrated on the (folded) weights; every quantizer left off."""
    q = quantize_model(copy.deepcopy(model).eval(), cfg or QuantConfig())
    with calibration_mode(q):
        q(calib)
    if reparam:
        reparameterize(q)
    calibrate_weights(q)
    set_quant_state(q, weight=False, act=False)
    return q


@torch.no_grad()
def reparam_max_abs_diff(model: torch.nn.Module, calib: torch.Tensor, images: torch.Tensor,
                         cfg: QuantConfig | None = None) -> float:
    """max |logits(FP model) − logits(reparameterised quantized model, every quantizer off)| on ``images``."""
    q = calibrated_copy(model, calib, cfg)
    return (model.eval()(images) - q(images)).abs().max().item()


@torch.no_grad()
def quantized_logits(model: torch.nn.Module, calib: torch.Tensor, images: torch.Tensor,
                     cfg: QuantConfig) -> torch.Tensor:
    """Logits of the round-to-nearest fake-quantized model (activations + weights on) on ``images``."""
    q = calibrated_copy(model, calib, cfg)
    set_quant_state(q, weight=True, act=True)
    return q(images)


@torch.no_grad()
def top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    return 100.0 * (logits.argmax(-1) == labels).float().mean().item()


def tiny_vit() -> VisionTransformer:
    return VisionTransformer(img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=64, depth=2,
                             num_heads=4)


def tiny_deit() -> VisionTransformerDistilled:
    return VisionTransformerDistilled(img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=64, depth=2,
                                      num_heads=4)


def tiny_swin() -> SwinTransformer:
    return SwinTransformer(img_size=28, patch_size=2, in_chans=1, num_classes=10, embed_dim=32, depths=(2, 2),
                           num_heads=(2, 4), window_size=7)


TINY_BUILDERS = {"vit": tiny_vit, "deit": tiny_deit, "swin": tiny_swin}


def build(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return TINY_BUILDERS[name]().eval()
