"""ImageNet: a standard class-folder tree ``ROOT/<split>/<wnid>/<image>`` (classes sorted, as torchvision's
``ImageFolder`` and timm's ImageNet-1k indices), transformed with the timm model's own data config. ``split="test"``
reads ``ROOT/val``, ImageNet's labelled evaluation set."""

from __future__ import annotations

import os
from pathlib import Path

from roundlab.data.datasets import ImageFolderDataset
from roundlab.errors import RoundlabError

IMAGENET_INPUT_SIZE = (3, 224, 224)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_transform(data_config: dict | None):
    """The timm eval transform for ``data_config`` (a timm data config; None → ImageNet defaults at 224)."""
    from timm.data import create_transform

    cfg = {"input_size": IMAGENET_INPUT_SIZE, "interpolation": "bicubic", "mean": IMAGENET_MEAN,
           "std": IMAGENET_STD, "crop_pct": 0.875, "crop_mode": "center"}
    cfg.update({k: v for k, v in (data_config or {}).items() if k in cfg and v is not None})
    return create_transform(**cfg, is_training=False)


def load_imagenet(split: str, root, data_config) -> ImageFolderDataset:
    """Split ``split`` from ``root`` (or ``$ROUNDLAB_IMAGENET``): ``root/<split>`` or ``root`` itself as the tree."""
    root = root or os.environ.get("ROUNDLAB_IMAGENET")
    if not root:
        raise RoundlabError("ImageNet needs a class-folder root: pass root=/--data-root DIR (DIR/val/<wnid>/*.JPEG) "
                            "or set ROUNDLAB_IMAGENET")
    root = Path(root).expanduser()
    folder = "val" if split == "test" else split
    if (root / folder).is_dir():
        where = root / folder
    elif root.is_dir() and not any((root / s).is_dir() for s in ("train", "val")):
        where = root    # root itself is the class tree of the requested split
    else:
        raise RoundlabError(f"ImageNet {split} split not found: looked for class folders in {root / folder} "
                            f"and {root}")
    return ImageFolderDataset(where, imagenet_transform(data_config), "imagenet", split, num_classes=1000)
