"""The two dataset classes: images held in memory (Fashion-MNIST) and a class-folder tree decoded on access (ImageNet).

Both yield normalised float images ``(C, H, W)`` ready for the model and an integer label, and support
``images_at(indices)``, ``batches(batch_size)``, ``select(indices)`` and ``subset(n, seed)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from roundlab.data.calibration import calibration_indices
from roundlab.errors import RoundlabError


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
