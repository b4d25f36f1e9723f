"""Reproducible calibration sets: the first ``n`` of a seeded permutation, so the same ``(seed, n)`` gives the same
images on every platform and a larger ``n`` extends a smaller one."""

from __future__ import annotations

import numpy as np
import torch

from roundlab.errors import RoundlabError


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
    _check_calibration_size(n)
    return dataset.images_at(calibration_indices(len(dataset), n, seed))


def calibration_split(dataset, n: int = 32, n_heldout: int = 0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A calibration set of ``n`` images and a disjoint held-out set of ``n_heldout`` images from one permutation."""
    calib_idx, heldout_idx = _split_indices(dataset, n, n_heldout, seed)
    calib = dataset.images_at(calib_idx)
    heldout = dataset.images_at(heldout_idx) if n_heldout else calib.new_zeros((0, *calib.shape[1:]))
    return calib, heldout


def calibration_split_images(dataset, n: int = 32, n_heldout: int = 0, seed: int = 0, device="cpu"):
    """:func:`calibration_split`'s images as :class:`~roundlab.data.image_batches.DatasetImages`: the same images,
    loaded batch by batch whenever a pass reads them instead of held in memory (streamed runs). Each refers to
    ``dataset.select(indices)`` where the dataset has it, so neither keeps the rest of the dataset alive (an ImageNet
    folder's list of 1.3 M samples)."""
    from roundlab.data.image_batches import DatasetImages

    def images(idx):
        if hasattr(dataset, "select"):
            return DatasetImages(dataset.select(idx), range(len(idx)), device)
        return DatasetImages(dataset, idx, device)

    calib_idx, heldout_idx = _split_indices(dataset, n, n_heldout, seed)
    return images(calib_idx), images(heldout_idx)


def _split_indices(dataset, n: int, n_heldout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The calibration and held-out indices: the first ``n`` and the next ``n_heldout`` of one seeded permutation."""
    _check_calibration_size(n)
    idx = calibration_indices(len(dataset), n + n_heldout, seed)
    return idx[:n], idx[n:]


def _check_calibration_size(n) -> None:
    if n < 1:
        raise RoundlabError(f"a calibration set needs at least one image, got n={n}")
