"""Images as the pipeline reads them: ``len(images)`` of them, in batches. Either held in memory
(:class:`TensorImages`, what a tensor becomes) or loaded batch by batch from a dataset each time a pass asks
(:class:`DatasetImages`), so that a streamed run holds no calibration or held-out image beyond the batch in hand.

A pass asks for ``images.batches(batch_size)``; the images of a batch are the same whichever way they are held and
however they are batched (a dataset's transform is per image), so a run's numbers do not depend on it.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from roundlab.errors import RoundlabError, check


class Images:
    """``n`` images ``(C, H, W)``; a subclass supplies ``__len__`` and ``batch(start, stop)``."""

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def batch(self, start: int, stop: int) -> torch.Tensor:  # pragma: no cover - abstract
        """Images ``start … stop−1`` as one ``(stop − start, C, H, W)`` tensor."""
        raise NotImplementedError

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """Every image, ``batch_size`` at a time, in order."""
        check(isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size >= 1,
              f"batch size must be a positive integer, got {batch_size!r}")
        for start in range(0, len(self), batch_size):
            yield self.batch(start, min(start + batch_size, len(self)))

    def all(self) -> torch.Tensor:
        """Every image as one tensor (the one-pass calibration's input)."""
        return self.batch(0, len(self))


class TensorImages(Images):
    """Images held in memory as one ``(n, C, H, W)`` tensor; batches are views of it."""

    def __init__(self, images: torch.Tensor):
        check(isinstance(images, torch.Tensor) and images.ndim >= 2,
              f"images must be a tensor (n, C, H, W), got {type(images).__name__}")
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, start: int, stop: int) -> torch.Tensor:
        return self.images[start:stop]

    def all(self) -> torch.Tensor:
        return self.images

    def __repr__(self) -> str:
        return f"TensorImages({tuple(self.images.shape)}, {self.images.dtype}, {self.images.device})"


class DatasetImages(Images):
    """The images of ``dataset`` at ``indices``, loaded (``dataset.images_at``) and moved to ``device`` batch by
    batch, every time a pass asks for them: nothing is kept between batches."""

    def __init__(self, dataset, indices, device: str | torch.device = "cpu"):
        self.dataset, self.device = dataset, torch.device(device)
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= len(dataset)):
            raise RoundlabError(f"image indices must lie in [0, {len(dataset)}) for {dataset!r}")

    def __len__(self) -> int:
        return len(self.indices)

    def batch(self, start: int, stop: int) -> torch.Tensor:
        return self.dataset.images_at(self.indices[start:stop]).to(self.device)

    def __repr__(self) -> str:
        return f"DatasetImages({self.dataset!r}, n={len(self)}, device={str(self.device)!r})"


def as_images(images) -> Images:
    """``images`` as :class:`Images`: a tensor is wrapped, an :class:`Images` passes through."""
    if isinstance(images, Images):
        return images
    if isinstance(images, torch.Tensor):
        return TensorImages(images)
    raise RoundlabError(f"images must be a tensor (n, C, H, W) or roundlab.data.Images, got {type(images).__name__}")
