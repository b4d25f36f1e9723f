"""The embedded zoo: small timm transformers trained by roundlab on Fashion-MNIST.

Each :class:`ZooEntry` names a timm class, its constructor arguments, and the :class:`Recipe` that trained it. The
trained weights and a card (``<name>.json``, see :mod:`roundlab.zoo.card`) live in ``roundlab/zoo/checkpoints/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from roundlab.data import FMNIST_MEAN, FMNIST_STD
from roundlab.registry import Registry
from roundlab.zoo.recipe import Recipe

__all__ = ["ZOO", "Recipe", "ZooEntry", "get_entry", "register_zoo_model"]


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model: its timm class and constructor arguments, the recipe that trained it, and its data config."""

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


#: Every zoo model by name, in registration order (the order `roundlab models` lists them).
ZOO: Registry[ZooEntry] = Registry.of_named("zoo model", ZooEntry)


def register_zoo_model(entry: ZooEntry, *, override: bool = False) -> ZooEntry:
    """Add ``entry`` to the zoo under its own name."""
    return ZOO.add(entry, override=override)


def get_entry(name: str) -> ZooEntry:
    """The zoo entry ``name``; one RoundlabError line listing the zoo for anything else."""
    return ZOO.get(name)


_FMNIST = dict(img_size=28, in_chans=1, num_classes=10)

register_zoo_model(ZooEntry(
    "fmnist-vit", "vit", "VisionTransformer",
    dict(_FMNIST, patch_size=4, embed_dim=64, depth=6, num_heads=4, mlp_ratio=4.0, class_token=True,
         global_pool="token"),
    Recipe(),
    "ViT: 4x4 patches (7x7 tokens + class token), width 64, depth 6, 4 heads"))
register_zoo_model(ZooEntry(
    "fmnist-deit", "deit", "VisionTransformerDistilled",
    dict(_FMNIST, patch_size=4, embed_dim=96, depth=4, num_heads=3, mlp_ratio=4.0),
    Recipe(distill="hard", teacher="fmnist-vit"),
    "DeiT: class + distillation tokens, width 96, depth 4, 3 heads; hard distillation from fmnist-vit"))
register_zoo_model(ZooEntry(
    "fmnist-swin", "swin", "SwinTransformer",
    dict(_FMNIST, patch_size=2, window_size=7, embed_dim=48, depths=(2, 2), num_heads=(3, 6), mlp_ratio=4.0),
    Recipe(),
    "Swin: 2x2 patches (14x14 tokens, 7x7 windows, shifted), patch merging to 7x7, widths 48/96"))
