"""Fashion-MNIST: the four IDX files, found in the directory the user names, else in Debian's
``dataset-fashion-mnist`` package, else in ``~/.cache/roundlab/fashion-mnist``; downloaded only when asked.

Splits: ``train`` (60,000), ``test`` (10,000) and ``val`` = the last 5,000 training images (``train[55000:]``),
which the zoo models never trained on.
"""

from __future__ import annotations

import os
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import torch

from roundlab.data.datasets import TensorImageDataset
from roundlab.data.idx import read_idx_cached
from roundlab.errors import RoundlabError

DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")
FMNIST_MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FMNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                  "Ankle boot")
# Pixel mean/std of the 60,000 training images (scaled to [0, 1]); the zoo models are trained with these.
FMNIST_MEAN = (0.2860,)
FMNIST_STD = (0.3530,)
FMNIST_FIT = 55000   # train[:FMNIST_FIT] trains the zoo; train[FMNIST_FIT:] is the "val" split


def fmnist_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "roundlab" / "fashion-mnist"


def _fmnist_candidates(root: Path) -> list[Path]:
    return [root, root / "FashionMNIST" / "raw", root / "fashion-mnist"]


def _find_idx(dirs: list[Path], stem: str) -> Path | None:
    for d in dirs:
        for name in (stem + ".gz", stem):
            if (d / name).is_file():
                return d / name
    return None


def download_fashion_mnist(dest: str | Path, mirror: str | None = None) -> Path:
    """Download the four gzipped IDX files into ``dest`` (mirror: ``$ROUNDLAB_FMNIST_MIRROR`` or the official one)."""
    dest = Path(dest)
    mirror = mirror or os.environ.get("ROUNDLAB_FMNIST_MIRROR") or FMNIST_MIRROR
    mirror = mirror if mirror.endswith("/") else mirror + "/"
    dest.mkdir(parents=True, exist_ok=True)
    for stems in FMNIST_FILES.values():
        for stem in stems:
            target = dest / (stem + ".gz")
            if target.is_file():
                continue
            tmp = target.with_suffix(".gz.part")
            try:
                with urllib.request.urlopen(mirror + stem + ".gz", timeout=60) as r, open(tmp, "wb") as f:
                    shutil.copyfileobj(r, f)
            except OSError as e:
                tmp.unlink(missing_ok=True)
                raise RoundlabError(f"could not download Fashion-MNIST {stem}.gz from {mirror}: {e}") from None
            tmp.replace(target)
    return dest


def load_fmnist(split: str, root, download: bool, mean, std, debian_dir: Path = DEBIAN_FMNIST) -> TensorImageDataset:
    """Split ``split`` read from ``root`` only, or (``root`` None) from ``debian_dir`` then the user cache."""
    base = "train" if split in ("train", "val") else split
    if root is not None:
        looked = _fmnist_candidates(Path(root).expanduser())
    else:
        looked = [debian_dir] + _fmnist_candidates(fmnist_cache_dir())
    img_stem, lbl_stem = FMNIST_FILES[base]
    img, lbl = _find_idx(looked, img_stem), _find_idx(looked, lbl_stem)
    if (img is None or lbl is None) and download:
        download_fashion_mnist(Path(root).expanduser() if root is not None else fmnist_cache_dir())
        img, lbl = _find_idx(looked, img_stem), _find_idx(looked, lbl_stem)
    if img is None or lbl is None:
        missing = img_stem if img is None else lbl_stem
        hint = "install Debian's dataset-fashion-mnist, pass --data-root DIR, or download=True when online"
        raise RoundlabError(f"Fashion-MNIST {missing}[.gz] not found; looked in {', '.join(map(str, looked))}; "
                            f"{hint}")
    images, labels = read_idx_cached(img), read_idx_cached(lbl)
    _check_fmnist_arrays(images, labels, img, lbl)
    ds = TensorImageDataset(torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)),
                            mean, std, 10, "fashion-mnist", base, str(img.parent))
    if split == "val":
        if len(ds) <= FMNIST_FIT:
            raise RoundlabError(f"the val split is train[{FMNIST_FIT}:], but {img} holds only {len(ds)} images")
        ds = ds.select(range(FMNIST_FIT, len(ds)), split="val")
    return ds


def _check_fmnist_arrays(images: np.ndarray, labels: np.ndarray, img: Path, lbl: Path) -> None:
    """uint8 28×28 images, one label in 0..9 each; else one line naming the file."""
    if images.ndim != 3 or images.dtype != np.uint8:
        raise RoundlabError(f"{img} holds {images.dtype} {images.shape}, expected uint8 (N, H, W) images")
    if images.shape[1:] != (28, 28):
        raise RoundlabError(f"{img} holds {images.shape[1]}×{images.shape[2]} images; Fashion-MNIST's are 28×28")
    if labels.ndim != 1 or len(labels) != len(images):
        raise RoundlabError(f"{lbl} holds labels of shape {labels.shape} for {len(images)} images in {img}")
    if labels.size and (labels.min() < 0 or labels.max() >= 10):
        raise RoundlabError(f"{lbl} has labels outside 0..9 (min {labels.min()}, max {labels.max()})")
