"""The embedded zoo: small timm transformers trained by roundlab on Fashion-MNIST.

Each :class:`ZooEntry` names a timm class, its constructor arguments, and the :class:`Recipe` that trained it. The
trained weights and a card (``<name>.json``, see :mod:`roundlab.zoo.card`) live in ``roundlab/zoo/checkpoints/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from roundlab.data import FMNIST_MEAN, FMNIST_STD
from roundlab.errors import RoundlabError


@dataclass(frozen=True)
class Recipe:
    """How a zoo model is trained (``roundlab train-zoo``): AdamW, linear warm-up then cosine decay, per step."""

    epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_epochs: int = 5
    weight_decay: float = 0.05          # not on norms, biases, position embeddings, tokens
    betas: tuple[float, float] = (0.9, 0.999)
    clip_grad: float | None = 1.0
    label_smoothing: float = 0.1
    drop_path: float = 0.1
    crop_padding: int = 2               # random crop of the image zero-padded by this many pixels
    hflip: bool = True
    random_erasing: float = 0.25        # probability; a rectangle of 2%..33% of the image, filled with N(0, 1) noise
    distill: str | None = None          # "hard": DeiT hard-label distillation from `teacher`
    teacher: str | None = None
    fit_images: int = 55000             # train on train[:fit_images]; train[fit_images:] is the val split
    seed: int = 0

    def __post_init__(self):
        for name in ("epochs", "batch_size", "fit_images"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise RoundlabError(f"recipe {name} must be a positive integer, got {getattr(self, name)!r}")
        if not (self.lr > 0 and 0 <= self.min_lr <= self.lr):
            raise RoundlabError(f"recipe needs lr > 0 and 0 <= min_lr <= lr, got lr={self.lr}, min_lr={self.min_lr}")
        if self.warmup_epochs < 0 or self.weight_decay < 0 or not (0 <= self.label_smoothing < 1):
            raise RoundlabError("recipe warmup_epochs, weight_decay >= 0 and 0 <= label_smoothing < 1 required")
        if not (0 <= self.random_erasing <= 1 and 0 <= self.drop_path < 1 and self.crop_padding >= 0):
            raise RoundlabError("recipe random_erasing in [0, 1], drop_path in [0, 1), crop_padding >= 0 required")
        if self.distill not in (None, "hard"):
            raise RoundlabError(f"recipe distill must be None or 'hard', got {self.distill!r}")
        if self.distill and not self.teacher:
            raise RoundlabError("recipe distill='hard' needs a teacher model")


@dataclass(frozen=True)
class ZooEntry:
    name: str
    family: str                      # "vit" | "deit" | "swin": what model surgery expects
    timm_class: str                  # "VisionTransformer" | "VisionTransformerDistilled" | "SwinTransformer"
    arch: dict                       # constructor arguments
    recipe: Recipe
    description: str
    dataset: str = "fashion-mnist"
    data_config: dict = field(default_factory=lambda: {
        "dataset": "fashion-mnist", "num_classes": 10, "input_size": (1, 28, 28), "mean": FMNIST_MEAN,
        "std": FMNIST_STD, "interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "center"})

    def build(self, **extra):
        """A fresh, randomly initialised model (``extra``: e.g. ``drop_path_rate`` for training)."""
        import timm.models.deit as deit
        import timm.models.swin_transformer as swin
        import timm.models.vision_transformer as vit

        classes = {"VisionTransformer": vit.VisionTransformer, "VisionTransformerDistilled":
                   deit.VisionTransformerDistilled, "SwinTransformer": swin.SwinTransformer}
        model = classes[self.timm_class](**self.arch, **extra)
        model.pretrained_cfg = dict(self.data_config, architecture=self.name)
        return model


_FMNIST = dict(img_size=28, in_chans=1, num_classes=10)

ZOO: dict[str, ZooEntry] = {e.name: e for e in [
    ZooEntry(
        "fmnist-vit", "vit", "VisionTransformer",
        dict(_FMNIST, patch_size=4, embed_dim=64, depth=6, num_heads=4, mlp_ratio=4.0, class_token=True,
             global_pool="token"),
        Recipe(),
        "ViT: 4x4 patches (7x7 tokens + class token), width 64, depth 6, 4 heads"),
    ZooEntry(
        "fmnist-deit", "deit", "VisionTransformerDistilled",
        dict(_FMNIST, patch_size=4, embed_dim=96, depth=4, num_heads=3, mlp_ratio=4.0),
        Recipe(distill="hard", teacher="fmnist-vit"),
        "DeiT: class + distillation tokens, width 96, depth 4, 3 heads; hard distillation from fmnist-vit"),
    ZooEntry(
        "fmnist-swin", "swin", "SwinTransformer",
        dict(_FMNIST, patch_size=2, window_size=7, embed_dim=48, depths=(2, 2), num_heads=(3, 6), mlp_ratio=4.0),
        Recipe(),
        "Swin: 2x2 patches (14x14 tokens, 7x7 windows, shifted), patch merging to 7x7, widths 48/96"),
]}


def get_entry(name: str) -> ZooEntry:
    if name not in ZOO:
        raise RoundlabError(f"unknown zoo model {name!r}; zoo: {', '.join(ZOO)}")
    return ZOO[name]
