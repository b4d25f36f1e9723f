"""Randomly initialised timm models for the pipeline tests (a uniquely named module, importable beside other
test folders' conftest.py files)."""

import torch
from timm.models.swin_transformer import SwinTransformer
from timm.models.vision_transformer import VisionTransformer


def tiny_model(family: str, seed: int = 0) -> torch.nn.Module:
    """Randomly initialised timm models of the zoo's input shape (28×28 grayscale, 10 classes), kept tiny."""
    torch.manual_seed(seed)
    if family == "vit":
        return VisionTransformer(img_size=28, patch_size=7, in_chans=1, num_classes=10, embed_dim=32, depth=2,
                                 num_heads=2).eval()
    return SwinTransformer(img_size=28, patch_size=2, in_chans=1, num_classes=10, embed_dim=16, depths=(1, 1),
                           num_heads=(2, 2), window_size=7).eval()


