"""The zoo's training recipe: its settings (:class:`Recipe`), the batched augmentation and the learning-rate schedule.

Every zoo model is trained with AdamW, a linear warm-up then per-step cosine decay, label smoothing, stochastic
depth, and a random crop of the zero-padded image, horizontal flip and random erasing, done batched on the training
device (``roundlab train-zoo``, :mod:`roundlab.zoo.train`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from roundlab.errors import RoundlabError
from roundlab.validate import check_choice, check_float, check_int


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
            check_int(f"recipe {name}", getattr(self, name), 1)
        check_float("recipe lr", self.lr, 0, lo_open=True)
        check_float("recipe min_lr", self.min_lr, 0, self.lr)
        check_int("recipe warmup_epochs", self.warmup_epochs, 0)
        check_float("recipe weight_decay", self.weight_decay, 0)
        check_float("recipe random_erasing", self.random_erasing, 0, 1)
        check_int("recipe crop_padding", self.crop_padding, 0)
        for name in ("label_smoothing", "drop_path"):    # [0, 1): check_float's ranges are closed on the right
            if not 0 <= getattr(self, name) < 1:
                raise RoundlabError(f"recipe {name} must be a number in [0, 1), got {getattr(self, name)!r}")
        check_choice("recipe distill", self.distill, (None, "hard"))
        if self.distill and not self.teacher:
            raise RoundlabError("recipe distill='hard' needs a teacher model")


def augment(x: torch.Tensor, recipe: Recipe, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Batched augmentation of images ``x`` in [0, 1] ``(B, C, H, W)``; returns normalised images."""
    if recipe.crop_padding:
        x = _random_crop(x, recipe.crop_padding)
    if recipe.hflip:
        flip = torch.rand(x.shape[0], device=x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    x = (x - mean) / std
    if recipe.random_erasing > 0:
        x = _random_erasing(x, recipe.random_erasing)
    return x


def _random_crop(x: torch.Tensor, p: int) -> torch.Tensor:
    """Each image shifted by up to ``p`` pixels each way, the uncovered border zero (a crop of the padded image)."""
    B, C, H, W = x.shape
    dev = x.device
    xp = F.pad(x, (p, p, p, p)).permute(0, 2, 3, 1)                      # (B, H+2p, W+2p, C)
    dy = torch.randint(0, 2 * p + 1, (B, 1), device=dev)
    dx = torch.randint(0, 2 * p + 1, (B, 1), device=dev)
    rows = (dy + torch.arange(H, device=dev))[:, :, None]                 # (B, H, 1)
    cols = (dx + torch.arange(W, device=dev))[:, None, :]                 # (B, 1, W)
    return xp[torch.arange(B, device=dev)[:, None, None], rows, cols].permute(0, 3, 1, 2)


def _random_erasing(x: torch.Tensor, probability: float) -> torch.Tensor:
    """With ``probability`` per image, a rectangle of 2%..33% of it (aspect 0.3..3.3) replaced by N(0, 1) noise."""
    B, C, H, W = x.shape
    dev = x.device
    area = H * W * torch.empty(B, device=dev).uniform_(0.02, 1 / 3)
    ratio = torch.exp(torch.empty(B, device=dev).uniform_(math.log(0.3), math.log(1 / 0.3)))
    h = torch.sqrt(area * ratio).round().clamp(1, H - 1)
    w = torch.sqrt(area / ratio).round().clamp(1, W - 1)
    top = (torch.rand(B, device=dev) * (H - h + 1)).floor()
    left = (torch.rand(B, device=dev) * (W - w + 1)).floor()
    r = torch.arange(H, device=dev)[None, :]
    c = torch.arange(W, device=dev)[None, :]
    in_r = (r >= top[:, None]) & (r < (top + h)[:, None])                 # (B, H)
    in_c = (c >= left[:, None]) & (c < (left + w)[:, None])               # (B, W)
    on = torch.rand(B, device=dev) < probability
    mask = (in_r[:, :, None] & in_c[:, None, :] & on[:, None, None])[:, None]
    return torch.where(mask, torch.randn_like(x), x)


def lr_at(step: int, total: int, warmup: int, recipe: Recipe) -> float:
    """The learning rate of ``step`` (0-based): linear warm-up over ``warmup`` steps, then cosine to ``min_lr``."""
    if step < warmup:
        return recipe.lr * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return recipe.min_lr + 0.5 * (recipe.lr - recipe.min_lr) * (1 + math.cos(math.pi * min(t, 1.0)))
