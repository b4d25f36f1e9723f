"""The zoo's training loop: data on the device, teacher, AdamW and its schedule, epochs of steps, the time budget.

:func:`roundlab.zoo.train.train_one` strings these together; the recipe's pieces (augmentation, learning-rate curve)
are in :mod:`roundlab.zoo.recipe`.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from roundlab.data import load_dataset
from roundlab.errors import RoundlabError
from roundlab.evaluate import evaluate
from roundlab.zoo import checkpoint_path, load_zoo_model
from roundlab.zoo.recipe import Recipe, augment, lr_at

@dataclasses.dataclass
class TrainData:
    """The training images (uint8, on the training device) with their labels and normalisation; val and test."""

    images: torch.Tensor
    labels: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    val: object
    test: object


@dataclasses.dataclass
class TrainRun:
    """One model's training: what the epoch loop reads, and the step count and schedule it advances."""

    name: str
    model: torch.nn.Module
    teacher: torch.nn.Module | None
    opt: torch.optim.Optimizer
    data: TrainData
    recipe: Recipe
    device: torch.device
    steps_per_epoch: int
    epochs: int
    total: int                      # steps of the learning-rate schedule
    warmup: int                     # warm-up steps
    max_steps: int | None = None
    log: Callable[[str], None] = print
    step: int = 0


# --------------------------------------------------------------------------------------------------------------- data
def load_train_data(recipe: Recipe, device: torch.device, data_root, eval_images: int | None) -> TrainData:
    """``train[:fit_images]`` on ``device``; the val split (a subset of ``eval_images`` in smoke runs); test."""
    train = load_dataset("fashion-mnist", "train", root=data_root)
    val = load_dataset("fashion-mnist", "val", root=data_root)
    if eval_images:   # smoke runs: watch a val subset of the same size
        val = val.subset(min(eval_images, len(val)))
    test = load_dataset("fashion-mnist", "test", root=data_root)
    if recipe.fit_images > len(train):
        raise RoundlabError(f"recipe fit_images={recipe.fit_images} exceeds the {len(train)} training images")
    n = recipe.fit_images
    return TrainData(train.images[:n].to(device), train.labels[:n].to(device), train.mean.to(device),
                     train.std.to(device), val, test)


# -------------------------------------------------------------------------------------------------------------- model
def load_teacher(name: str, recipe: Recipe, model, device, out_dir, checkpoint, log):
    """The frozen distillation teacher and its weights file (``out_dir``'s, else the committed one), or None."""
    if not recipe.distill:
        return None, checkpoint
    if checkpoint is None:
        local = Path(out_dir) / f"{recipe.teacher}.safetensors"
        checkpoint = local if local.is_file() else checkpoint_path(recipe.teacher)
    teacher, _ = load_zoo_model(recipe.teacher, checkpoint)
    teacher = teacher.to(device).eval().requires_grad_(False)
    model.set_distilled_training(True)
    log(f"[{name}] hard distillation from {recipe.teacher} ({checkpoint})")
    return teacher, checkpoint


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------- optimizer and schedule
def make_optimizer(model: torch.nn.Module, recipe: Recipe, device: torch.device) -> torch.optim.Optimizer:
    """AdamW, weight decay on all but norms, biases, position embeddings and tokens (fused on CUDA)."""
    from timm.optim import param_groups_weight_decay

    groups = param_groups_weight_decay(model, recipe.weight_decay, model.no_weight_decay())
    return torch.optim.AdamW(groups, lr=recipe.lr, betas=recipe.betas,
                             **({"fused": True} if device.type == "cuda" else {}))


def schedule(n: int, recipe: Recipe, max_steps: int | None) -> tuple[int, int, int, int]:
    """Steps per epoch, epochs, schedule steps and warm-up steps; a ``max_steps`` run warms up for at most half."""
    spe = n // recipe.batch_size
    total = min(recipe.epochs * spe, max_steps) if max_steps else recipe.epochs * spe
    warmup = min(recipe.warmup_epochs * spe, total // 2) if max_steps else recipe.warmup_epochs * spe
    return spe, recipe.epochs, total, warmup


class TimeBudget:
    """``--time-budget``: steps 20..70 time the training speed; the epochs are then cut, once, to fit ``seconds``."""

    def __init__(self, seconds: float, t_start: float):
        self.seconds, self.t_start, self.t0 = seconds, t_start, 0.0

    def after_step(self, run: TrainRun) -> None:
        if run.step not in (20, 70):
            return
        sync(run.device)
        if run.step == 20:
            self.t0 = time.perf_counter()
            return
        per_step = (time.perf_counter() - self.t0) / 50
        # budget minus time so far, minus ~1 s per val evaluation and the final test evaluation
        left = self.seconds - (time.perf_counter() - self.t_start) - 10
        spe, epochs = run.steps_per_epoch, run.epochs
        fitting = int(left / (per_step * spe * 1.05))
        if fitting >= epochs:
            run.log(f"[{run.name}] {per_step * 1e3:.1f} ms/step; {epochs} epochs fit the budget")
            return
        new_epochs = max(min(epochs, 2 * run.recipe.warmup_epochs), fitting)
        run.log(f"[{run.name}] {per_step * 1e3:.1f} ms/step: {epochs} epochs would take "
                f"{per_step * spe * epochs:.0f} s; running {new_epochs} to fit {self.seconds:.0f} s")
        run.epochs, run.total = new_epochs, new_epochs * spe
        run.recipe = dataclasses.replace(run.recipe, epochs=new_epochs)


# ---------------------------------------------------------------------------------------------------- the epoch loop
def fit(run: TrainRun, budget: TimeBudget | None, eval_every: int) -> list[dict]:
    """Train epoch by epoch, watching val every ``eval_every`` epochs and after the last; one row per epoch."""
    history: list[dict] = []
    for epoch in range(run.epochs):           # the count before any time-budget cut; `last` ends a cut run
        t_epoch = time.perf_counter()
        loss_sum, correct, steps, done = _train_epoch(run, budget)
        last = done or epoch == run.epochs - 1
        row = {"epoch": epoch + 1, "loss": float(loss_sum) / max(1, steps),
               "train_top1": float(correct) / (steps * run.recipe.batch_size),
               "lr": run.opt.param_groups[0]["lr"], "epoch_s": time.perf_counter() - t_epoch}
        if last or (epoch + 1) % eval_every == 0:
            row["val_top1"] = evaluate(run.model, run.data.val, batch_size=1000, device=run.device)["top1"]
        history.append(row)
        run.log(f"[{run.name}] epoch {epoch + 1}/{run.epochs} loss {row['loss']:.4f} "
                f"train {100 * row['train_top1']:.2f}% "
                + (f"val {100 * row['val_top1']:.2f}% " if "val_top1" in row else "")
                + f"lr {row['lr']:.2e} {row['epoch_s']:.1f}s")
        if last:
            break
    return history


def _train_epoch(run: TrainRun, budget: TimeBudget | None) -> tuple[torch.Tensor, torch.Tensor, int, bool]:
    """One pass over a fresh permutation: summed loss, correct predictions, steps run, whether max_steps was hit."""
    run.model.train()
    d, bs = run.data, run.recipe.batch_size
    perm = torch.randperm(len(d.images), device=run.device)
    loss_sum = torch.zeros((), device=run.device)
    correct = torch.zeros((), device=run.device)
    for i in range(run.steps_per_epoch):
        idx = perm[i * bs:(i + 1) * bs]
        x = augment(d.images[idx].float().div_(255.0), run.recipe, d.mean, d.std)
        y = d.labels[idx]
        loss, out = _loss(run, x, y)
        _optimizer_step(run, loss)
        loss_sum += loss.detach()
        correct += (out.detach().argmax(-1) == y).sum()
        run.step += 1
        if budget is not None:
            budget.after_step(run)
        if run.max_steps and run.step >= run.max_steps:
            return loss_sum, correct, i + 1, True
    return loss_sum, correct, run.steps_per_epoch, False


def _loss(run: TrainRun, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch loss and the logits scored for train accuracy.

    With a teacher (DeiT hard distillation): ½ CE(class head, label) + ½ CE(distillation head, teacher's argmax),
    scored on the two heads' mean."""
    out = run.model(x)
    smoothing = run.recipe.label_smoothing
    if run.teacher is None:
        return F.cross_entropy(out, y, label_smoothing=smoothing), out
    cls_out, dist_out = out
    with torch.no_grad():
        t_label = run.teacher(x).argmax(-1)
    loss = 0.5 * F.cross_entropy(cls_out, y, label_smoothing=smoothing) + 0.5 * F.cross_entropy(dist_out, t_label)
    return loss, (cls_out + dist_out) / 2


def _optimizer_step(run: TrainRun, loss: torch.Tensor) -> None:
    """The scheduled learning rate, back-propagation, gradient-norm clipping, an AdamW step."""
    for g in run.opt.param_groups:
        g["lr"] = lr_at(run.step, run.total, run.warmup, run.recipe)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    if run.recipe.clip_grad:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.recipe.clip_grad)
    run.opt.step()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


