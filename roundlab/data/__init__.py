"""Datasets and reproducible calibration sets.

Two datasets are known (``DATASETS``):

* ``fashion-mnist``: the four IDX files (gzipped or not), read from the directory the user names, else from Debian's
  ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``), else from
  ``~/.cache/roundlab/fashion-mnist``; downloaded into that cache (or the named directory) only when
  ``download=True``. Splits: ``train`` (60,000), ``test`` (10,000), and ``val`` = the last 5,000 training images
  (``train[55000:]``), which the zoo models never trained on (they train on ``train[:55000]``, see
  ``roundlab.zoo.train``).
* ``imagenet``: a standard class-folder tree ``ROOT/<split>/<wnid>/<image>`` (classes sorted, as torchvision's
  ``ImageFolder`` and timm's ImageNet-1k indices), transformed with the timm model's own data config (resize,
  centre crop, mean/std). ``split="test"`` reads ``ROOT/val``, ImageNet's labelled evaluation set.

Every dataset yields normalised float images ``(C, H, W)`` ready for the model, an integer label, and supports
``subset(n, seed)`` and ``batches(batch_size)``. Calibration sets are drawn from a seeded permutation
(``calibration_indices``), so the same ``(seed, n)`` always gives the same images.

Anything missing or malformed raises :class:`~roundlab.errors.RoundlabError` with one line saying where roundlab looked.

Modules: ``idx`` (IDX files), ``fmnist`` and ``imagenet`` (finding and reading each dataset), ``datasets`` (the two
dataset classes), ``calibration`` (seeded draws), ``image_batches`` (images held in memory or loaded
batch by batch, as the pipeline's passes read them); every public name is importable from ``roundlab.data``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from roundlab.data.calibration import (calibration_indices, calibration_set, calibration_split,
                                       calibration_split_images)
from roundlab.data.datasets import ImageFolderDataset, TensorImageDataset
from roundlab.data.fmnist import (DEBIAN_FMNIST, FMNIST_CLASSES, FMNIST_FILES, FMNIST_FIT, FMNIST_MEAN, FMNIST_MIRROR,
                                  FMNIST_STD, download_fashion_mnist, fmnist_cache_dir, load_fmnist)
from roundlab.data.idx import read_idx, write_idx
from roundlab.data.image_batches import DatasetImages, Images, TensorImages, as_images
from roundlab.data.imagenet import IMAGENET_INPUT_SIZE, IMAGENET_MEAN, IMAGENET_STD, imagenet_transform, load_imagenet
from roundlab.errors import RoundlabError
from roundlab.registry import Registry
from roundlab.validate import check_known

__all__ = ["DATASETS", "DEBIAN_FMNIST", "FMNIST_CLASSES", "FMNIST_FILES", "FMNIST_FIT", "FMNIST_MEAN", "FMNIST_MIRROR",
           "FMNIST_STD", "DatasetImages", "DatasetSpec", "ImageFolderDataset", "Images", "TensorImageDataset",
           "TensorImages", "as_images", "calibration_indices",
           "calibration_set", "calibration_split", "calibration_split_images", "download_fashion_mnist",
           "fmnist_cache_dir", "get_spec",
           "imagenet_transform", "list_datasets", "load_dataset", "read_idx", "write_idx"]


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is: its name, class count, image shape and normalisation."""

    name: str
    num_classes: int
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    splits: tuple[str, ...]


#: Every known dataset by name.
DATASETS: Registry[DatasetSpec] = Registry("dataset")
DATASETS.register("fashion-mnist", DatasetSpec("fashion-mnist", 10, (1, 28, 28), FMNIST_MEAN, FMNIST_STD,
                                               ("train", "val", "test")))
DATASETS.register("imagenet", DatasetSpec("imagenet", 1000, IMAGENET_INPUT_SIZE, IMAGENET_MEAN, IMAGENET_STD,
                                          ("train", "val", "test")))
_ALIASES = {"fmnist": "fashion-mnist", "fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist",
            "imagenet-1k": "imagenet", "imagenet1k": "imagenet", "in1k": "imagenet"}


def list_datasets() -> list[str]:
    return sorted(DATASETS.names())


def get_spec(name: str) -> DatasetSpec:
    """The dataset ``name`` (case-insensitive, common aliases accepted)."""
    key = _ALIASES.get(name.lower(), name.lower()) if isinstance(name, str) else name
    if key not in DATASETS:
        check_known("dataset", name, list_datasets())
    return DATASETS.get(key)


def load_dataset(name: str = "fashion-mnist", split: str = "test", root: str | Path | None = None,
                 download: bool = False, data_config: dict | None = None):
    """Load ``split`` of dataset ``name``; images come normalised for the model (``data_config``'s mean/std).

    ``root``: the directory to read (only there); None → the default places (module docstring).
    ``download``: Fashion-MNIST only; fetch the files when they are not found.
    ``data_config``: a timm-style data config (mean, std, input_size, ...), e.g. the one ``roundlab.zoo.load_model``
    returns; None → the dataset's own normalisation (and for ImageNet, timm's defaults at 224×224).
    """
    spec = get_spec(name)
    if split not in spec.splits:
        raise RoundlabError(f"unknown split {split!r} for {spec.name}; choose one of {', '.join(spec.splits)}")
    cfg = dict(data_config or {})
    if spec.name == "fashion-mnist":
        # DEBIAN_FMNIST is read from this module at call time, so setting roundlab.data.DEBIAN_FMNIST moves it
        return load_fmnist(split, root, download, cfg.get("mean", spec.mean), cfg.get("std", spec.std),
                           debian_dir=DEBIAN_FMNIST)
    return load_imagenet(split, root, cfg)
