"""Datasets and reproducible calibration sets.

Two datasets are known (``DATASETS``):

* ``fashion-mnist``: the four IDX files (gzipped or not), read from the directory the user names, else from Debian's
  ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``), else from ``~/.cache/roundlab/fashion-mnist``;
  downloaded into that cache (or the named directory) only when ``download=True``. Splits: ``train`` (60,000),
  ``test`` (10,000), and ``val`` = the last 5,000 training images (``train[55000:]``), which the zoo models never
  trained on (they train on ``train[:55000]``, see ``roundlab.zoo.train``).
* ``imagenet``: a standard class-folder tree ``ROOT/<split>/<wnid>/<image>`` (classes sorted, as torchvision's
  ``ImageFolder`` and timm's ImageNet-1k indices), transformed with the timm model's own data config (resize,
  centre crop, mean/std). ``split="test"`` reads ``ROOT/val``, ImageNet's labelled evaluation set.

Every dataset yields normalised float images ``(C, H, W)`` ready for the model, an integer label, and supports
``subset(n, seed)`` and ``batches(batch_size)``. Calibration sets are drawn from a seeded permutation
(``calibration_indices``), so the same ``(seed, n)`` always gives the same images.

Anything missing or malformed raises :class:`~roundlab.errors.RoundlabError` with one line saying where roundlab looked.
"""

from __future__ import annotations

import gzip
import os
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

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


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is: its name, class count, image shape and normalisation."""

    name: str
    num_classes: int
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    splits: tuple[str, ...]


DATASETS = {
    "fashion-mnist": DatasetSpec("fashion-mnist", 10, (1, 28, 28), FMNIST_MEAN, FMNIST_STD, ("train", "val", "test")),
    "imagenet": DatasetSpec("imagenet", 1000, (3, 224, 224), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                            ("train", "val", "test")),
}
_ALIASES = {"fmnist": "fashion-mnist", "fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist",
            "imagenet-1k": "imagenet", "imagenet1k": "imagenet", "in1k": "imagenet"}


def list_datasets() -> list[str]:
    return sorted(DATASETS)


def get_spec(name: str) -> DatasetSpec:
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        raise RoundlabError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}")
    return DATASETS[key]


# ----------------------------------------------------------------------------------------------------------- datasets
class TensorImageDataset(torch.utils.data.Dataset):
    """Images held in memory as uint8 ``(N, C, H, W)`` with int64 labels; normalised on access."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean, std, num_classes: int,
                 name: str = "", split: str = "", source: str = ""):
        if images.ndim == 3:
            images = images.unsqueeze(1)
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise RoundlabError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if len(images) != len(labels):
            raise RoundlabError(f"{len(images)} images but {len(labels)} labels in {source or name}")
        self.images, self.labels = images, labels.long()
        c = images.shape[1]
        self.mean = torch.tensor(_per_channel(mean, c, "mean"), dtype=torch.float32).view(1, c, 1, 1)
        self.std = torch.tensor(_per_channel(std, c, "std"), dtype=torch.float32).view(1, c, 1, 1)
        self.num_classes, self.name, self.split, self.source = num_classes, name, split, source

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.normalize(self.images[i:i + 1])[0], int(self.labels[i])

    def normalize(self, u8: torch.Tensor) -> torch.Tensor:
        """uint8 images (any leading batch shape ``(B, C, H, W)``) → normalised float32."""
        return (u8.float().div_(255.0) - self.mean.to(u8.device)) / self.std.to(u8.device)

    def images_at(self, indices) -> torch.Tensor:
        """The normalised images at ``indices`` as one ``(n, C, H, W)`` float tensor."""
        return self.normalize(self.images[torch.as_tensor(indices, dtype=torch.long)])

    def batches(self, batch_size: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for s in range(0, len(self), batch_size):
            yield self.normalize(self.images[s:s + batch_size]), self.labels[s:s + batch_size]

    def select(self, indices, split: str | None = None) -> "TensorImageDataset":
        idx = torch.as_tensor(indices, dtype=torch.long)
        return TensorImageDataset(self.images[idx], self.labels[idx], self.mean.flatten().tolist(),
                                  self.std.flatten().tolist(), self.num_classes, self.name,
                                  split or self.split, self.source)

    def subset(self, n: int, seed: int = 0) -> "TensorImageDataset":
        """``n`` images drawn reproducibly (seeded permutation), kept in their original order."""
        idx = np.sort(calibration_indices(len(self), n, seed))
        return self.select(idx, split=f"{self.split}[{n} of {len(self)}, seed {seed}]")

    def __repr__(self) -> str:
        return f"TensorImageDataset({self.name!r}, split={self.split!r}, n={len(self)}, source={self.source!r})"


class ImageFolderDataset(torch.utils.data.Dataset):
    """A class-folder tree ``root/<class>/<image>``; images are decoded and transformed on access."""

    EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")

    def __init__(self, root: Path, transform, name: str = "imagenet", split: str = "", classes=None,
                 samples=None, num_classes: int | None = None):
        self.root, self.transform, self.name, self.split = Path(root), transform, name, split
        if samples is None:
            classes = sorted(d.name for d in self.root.iterdir() if d.is_dir())
            if not classes:
                raise RoundlabError(f"no class folders in {self.root} (expected {self.root}/<class>/<image>)")
            samples = []
            for label, cls in enumerate(classes):
                for dirpath, _, files in sorted(os.walk(self.root / cls)):
                    samples += [(os.path.join(dirpath, f), label) for f in sorted(files)
                                if f.lower().endswith(self.EXTENSIONS)]
            if not samples:
                raise RoundlabError(f"no images under {self.root} (extensions {', '.join(self.EXTENSIONS)})")
        self.classes, self.samples = classes, samples
        self.num_classes = num_classes or len(classes)
        self.source = str(self.root)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        from PIL import Image

        path, label = self.samples[i]
        try:
            with Image.open(path) as im:
                img = im.convert("RGB")
        except OSError as e:
            raise RoundlabError(f"cannot read image {path}: {e}") from None
        return self.transform(img), label

    def images_at(self, indices) -> torch.Tensor:
        return torch.stack([self[int(i)][0] for i in indices])

    def batches(self, batch_size: int = 64, num_workers: int | None = None):
        workers = min(8, os.cpu_count() or 1) if num_workers is None else num_workers
        loader = torch.utils.data.DataLoader(self, batch_size=batch_size, shuffle=False, num_workers=workers)
        for x, y in loader:
            yield x, torch.as_tensor(y)

    def select(self, indices, split: str | None = None) -> "ImageFolderDataset":
        return ImageFolderDataset(self.root, self.transform, self.name, split or self.split, self.classes,
                                  [self.samples[int(i)] for i in indices], self.num_classes)

    def subset(self, n: int, seed: int = 0) -> "ImageFolderDataset":
        idx = np.sort(calibration_indices(len(self), n, seed))
        return self.select(idx, split=f"{self.split}[{n} of {len(self)}, seed {seed}]")

    def __repr__(self) -> str:
        return f"ImageFolderDataset({self.name!r}, split={self.split!r}, n={len(self)}, root={str(self.root)!r})"


def _per_channel(values, c: int, what: str) -> list[float]:
    values = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    if len(values) == 1:
        values = values * c
    if len(values) != c:
        raise RoundlabError(f"{what} has {len(values)} values for {c} image channels")
    return values


# --------------------------------------------------------------------------------------------------------- IDX files
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (``.gz`` or plain) into a numpy array; a malformed file raises RoundlabError naming it."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise RoundlabError(f"IDX file not found: {path}") from None
    except (OSError, EOFError) as e:
        raise RoundlabError(f"cannot read IDX file {path}: {e}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise RoundlabError(f"not an IDX file (bad magic number {data[:4].hex() or 'empty'}): {path}")
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise RoundlabError(f"truncated IDX header ({len(data)} bytes, {ndim} dimensions): {path}")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise RoundlabError(f"IDX file {path} has {len(data)} bytes, its header {shape} implies {expected}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzipped when ``path`` ends in .gz); for tests and tiny fixtures."""
    codes = {np.dtype(v).newbyteorder(">").str if np.dtype(v).itemsize > 1 else np.dtype(v).str: k
             for k, v in _IDX_DTYPES.items()}
    a = np.asarray(array)
    dt = a.dtype.newbyteorder(">") if a.dtype.itemsize > 1 else a.dtype
    code = codes.get(dt.str)
    if code is None:
        raise RoundlabError(f"IDX cannot store dtype {a.dtype}")
    payload = bytes([0, 0, code, a.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in a.shape) \
        + a.astype(dt).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(payload)


# ------------------------------------------------------------------------------------------------------ Fashion-MNIST
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


_IDX_CACHE: dict = {}


def _read_cached(path: Path) -> np.ndarray:
    """read_idx, remembered per (path, size, mtime) for the process: Fashion-MNIST's train split takes ~1 s to inflate."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _IDX_CACHE:
        if len(_IDX_CACHE) >= 8:
            _IDX_CACHE.clear()
        arr = read_idx(path)
        arr.setflags(write=False)
        _IDX_CACHE[key] = arr
    return _IDX_CACHE[key]


def _load_fmnist(split: str, root, download: bool, mean, std) -> TensorImageDataset:
    base = "train" if split in ("train", "val") else split
    if root is not None:
        looked = _fmnist_candidates(Path(root).expanduser())
    else:
        looked = [DEBIAN_FMNIST] + _fmnist_candidates(fmnist_cache_dir())
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
    images, labels = _read_cached(img), _read_cached(lbl)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise RoundlabError(f"{img} holds {images.dtype} {images.shape}, expected uint8 (N, H, W) images")
    if images.shape[1:] != (28, 28):
        raise RoundlabError(f"{img} holds {images.shape[1]}×{images.shape[2]} images; Fashion-MNIST's are 28×28")
    if labels.ndim != 1 or len(labels) != len(images):
        raise RoundlabError(f"{lbl} holds labels of shape {labels.shape} for {len(images)} images in {img}")
    if labels.size and (labels.min() < 0 or labels.max() >= 10):
        raise RoundlabError(f"{lbl} has labels outside 0..9 (min {labels.min()}, max {labels.max()})")
    ds = TensorImageDataset(torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)),
                            mean, std, 10, "fashion-mnist", base, str(img.parent))
    if split == "val":
        if len(ds) <= FMNIST_FIT:
            raise RoundlabError(f"the val split is train[{FMNIST_FIT}:], but {img} holds only {len(ds)} images")
        ds = ds.select(range(FMNIST_FIT, len(ds)), split="val")
    return ds


# ------------------------------------------------------------------------------------------------------------ ImageNet
def imagenet_transform(data_config: dict | None):
    """The timm eval transform for ``data_config`` (a timm data config; None → ImageNet defaults at 224)."""
    from timm.data import create_transform

    spec = DATASETS["imagenet"]
    cfg = {"input_size": spec.input_size, "interpolation": "bicubic", "mean": spec.mean, "std": spec.std,
           "crop_pct": 0.875, "crop_mode": "center"}
    cfg.update({k: v for k, v in (data_config or {}).items() if k in cfg and v is not None})
    return create_transform(**cfg, is_training=False)


def _load_imagenet(split: str, root, data_config) -> ImageFolderDataset:
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


# ------------------------------------------------------------------------------------------------------------ public
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
        raise RoundlabError(f"unknown split {split!r} for {spec.name}; known: {', '.join(spec.splits)}")
    cfg = dict(data_config or {})
    if spec.name == "fashion-mnist":
        return _load_fmnist(split, root, download, cfg.get("mean", spec.mean), cfg.get("std", spec.std))
    return _load_imagenet(split, root, cfg)


def calibration_indices(n_total: int, n: int, seed: int = 0) -> np.ndarray:
    """The first ``n`` entries of a seeded permutation of ``range(n_total)`` (numpy PCG64: stable across platforms)."""
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise RoundlabError(f"the number of images must be a non-negative integer, got {n!r}")
    if n > n_total:
        raise RoundlabError(f"asked for {n} images from a dataset of {n_total}")
    return np.random.default_rng(seed).permutation(n_total)[:n]


def calibration_set(dataset, n: int = 32, seed: int = 0) -> torch.Tensor:
    """``n`` images drawn reproducibly from ``dataset`` as one ``(n, C, H, W)`` float tensor, ready for the model.

    32 images is the paper's default. Same ``(seed, n)`` → same images; a larger ``n`` extends a smaller one.
    """
    if n < 1:
        raise RoundlabError(f"a calibration set needs at least one image, got n={n}")
    return dataset.images_at(calibration_indices(len(dataset), n, seed))


def calibration_split(dataset, n: int = 32, n_heldout: int = 0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A calibration set of ``n`` images and a disjoint held-out set of ``n_heldout`` images from one permutation."""
    if n < 1:
        raise RoundlabError(f"a calibration set needs at least one image, got n={n}")
    idx = calibration_indices(len(dataset), n + n_heldout, seed)
    calib = dataset.images_at(idx[:n])
    heldout = dataset.images_at(idx[n:]) if n_heldout else calib.new_zeros((0, *calib.shape[1:]))
    return calib, heldout
