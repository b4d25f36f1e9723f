"""Train the zoo models on Fashion-MNIST and write ``<name>.safetensors`` + ``<name>.json`` (the card).

A one-off: the checkpoints are committed. The commands that made them (two processes sharing one H100, then the
cards re-measured on CPU; each card's ``training.command`` and ``notes`` say the same)::

    python -m roundlab.zoo.train --model fmnist-vit fmnist-deit --device cuda --out-dir OUT --time-budget 3.4
    python -m roundlab.zoo.train --model fmnist-swin --device cuda --out-dir OUT --time-budget 7
    python -m roundlab.zoo.train --remeasure --model all            # on CPU, from roundlab/zoo/checkpoints

A smoke run on CPU: ``python -m roundlab.zoo.train --model all --device cpu --max-steps 3 --eval-images 200
--out-dir /tmp/zoo``.

Recipe (``roundlab.zoo.registry.Recipe``): AdamW without weight decay on norms/biases/embeddings/tokens, linear
warm-up then per-step cosine decay, label smoothing, stochastic depth, random crop of the zero-padded image,
horizontal flip and random erasing, all done batched on the training device. The DeiT model adds hard-label
distillation from the trained ``fmnist-vit`` (loss = ½ CE(class head, label) + ½ CE(distillation head, teacher's
argmax)), as in DeiT. Training uses ``train[:55000]``; ``train[55000:]`` (the ``val`` split) is watched during
training; the test set is used once, at the end. ``--time-budget`` (minutes per model) lowers the epoch count,
decided on the first steps' speed, so that a run fits a lease; the card's recipe records the epochs actually run.

Seeded (``--seed``, default the recipe's 0) and run with deterministic algorithms where torch has them; GPU runs are
still not bit-for-bit reproducible across hardware or library versions.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import roundlab
from roundlab.data import load_dataset
from roundlab.errors import RoundlabError
from roundlab.evaluate import evaluate
from roundlab.zoo import ZOO, ModelCard, checkpoint_path, get_entry, load_zoo_model
from roundlab.zoo.card import CHECKPOINT_DIR, sha256_of

CHECK_IMAGES, CHECK_SEED = 1000, 0   # the card's fp_check subset of the test set


# -------------------------------------------------------------------------------------------------------- augmentation
def augment(x: torch.Tensor, recipe, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Batched augmentation of images ``x`` in [0, 1] ``(B, C, H, W)``; returns normalised images."""
    B, C, H, W = x.shape
    dev = x.device
    p = recipe.crop_padding
    if p:
        xp = F.pad(x, (p, p, p, p)).permute(0, 2, 3, 1)                      # (B, H+2p, W+2p, C)
        dy = torch.randint(0, 2 * p + 1, (B, 1), device=dev)
        dx = torch.randint(0, 2 * p + 1, (B, 1), device=dev)
        rows = (dy + torch.arange(H, device=dev))[:, :, None]                 # (B, H, 1)
        cols = (dx + torch.arange(W, device=dev))[:, None, :]                 # (B, 1, W)
        x = xp[torch.arange(B, device=dev)[:, None, None], rows, cols].permute(0, 3, 1, 2)
    if recipe.hflip:
        flip = torch.rand(B, device=dev) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    x = (x - mean) / std
    if recipe.random_erasing > 0:
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
        on = torch.rand(B, device=dev) < recipe.random_erasing
        mask = (in_r[:, :, None] & in_c[:, None, :] & on[:, None, None])[:, None]
        x = torch.where(mask, torch.randn_like(x), x)
    return x


def lr_at(step: int, total: int, warmup: int, recipe) -> float:
    if step < warmup:
        return recipe.lr * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return recipe.min_lr + 0.5 * (recipe.lr - recipe.min_lr) * (1 + math.cos(math.pi * min(t, 1.0)))


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.machine()} CPU, {torch.get_num_threads()} threads"


def _versions() -> dict:
    import timm

    return {"roundlab": roundlab.__version__, "torch": torch.__version__, "timm": timm.__version__,
            "python": platform.python_version()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------------------------------ training
def train_one(name: str, recipe, device: torch.device, out_dir: Path, data_root=None, teacher_checkpoint=None,
              max_steps: int | None = None, time_budget_s: float | None = None, eval_every: int = 10,
              eval_images: int | None = None, log=print) -> ModelCard:
    """Train zoo model ``name`` with ``recipe`` on ``device``; write its checkpoint and card into ``out_dir``."""
    entry = get_entry(name)
    t_start = time.perf_counter()
    torch.manual_seed(recipe.seed)
    train = load_dataset("fashion-mnist", "train", root=data_root)
    val = load_dataset("fashion-mnist", "val", root=data_root)
    if eval_images:   # smoke runs: watch a val subset of the same size
        val = val.subset(min(eval_images, len(val)))
    test = load_dataset("fashion-mnist", "test", root=data_root)
    if recipe.fit_images > len(train):
        raise RoundlabError(f"recipe fit_images={recipe.fit_images} exceeds the {len(train)} training images")
    X = train.images[:recipe.fit_images].to(device)
    Y = train.labels[:recipe.fit_images].to(device)
    mean, std = train.mean.to(device), train.std.to(device)

    model = entry.build(drop_path_rate=recipe.drop_path).to(device).train()
    teacher = None
    if recipe.distill:
        if teacher_checkpoint is None:
            local = Path(out_dir) / f"{recipe.teacher}.safetensors"
            teacher_checkpoint = local if local.is_file() else checkpoint_path(recipe.teacher)
        teacher, _ = load_zoo_model(recipe.teacher, teacher_checkpoint)
        teacher = teacher.to(device).eval().requires_grad_(False)
        model.set_distilled_training(True)
        log(f"[{name}] hard distillation from {recipe.teacher} ({teacher_checkpoint})")

    from timm.optim import param_groups_weight_decay

    groups = param_groups_weight_decay(model, recipe.weight_decay, model.no_weight_decay())
    opt = torch.optim.AdamW(groups, lr=recipe.lr, betas=recipe.betas,
                            **({"fused": True} if device.type == "cuda" else {}))
    n = len(X)
    spe = n // recipe.batch_size
    epochs = recipe.epochs
    total = min(epochs * spe, max_steps) if max_steps else epochs * spe
    warmup = min(recipe.warmup_epochs * spe, total // 2) if max_steps else recipe.warmup_epochs * spe
    params = sum(p.numel() for p in model.parameters())
    log(f"[{name}] {entry.timm_class} {params} params; {n} images, {spe} steps/epoch, {epochs} epochs "
        f"({total} steps) on {_hardware(device)}")

    step, history, probe_t0 = 0, [], None
    done = False
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(n, device=device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        t_epoch = time.perf_counter()
        for i in range(spe):
            idx = perm[i * recipe.batch_size:(i + 1) * recipe.batch_size]
            x = augment(X[idx].float().div_(255.0), recipe, mean, std)
            y = Y[idx]
            out = model(x)
            if teacher is not None:
                cls_out, dist_out = out
                with torch.no_grad():
                    t_label = teacher(x).argmax(-1)
                loss = 0.5 * F.cross_entropy(cls_out, y, label_smoothing=recipe.label_smoothing) \
                    + 0.5 * F.cross_entropy(dist_out, t_label)
                out = (cls_out + dist_out) / 2
            else:
                loss = F.cross_entropy(out, y, label_smoothing=recipe.label_smoothing)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, warmup, recipe)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.clip_grad:
                torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_grad)
            opt.step()
            loss_sum += loss.detach()
            correct += (out.detach().argmax(-1) == y).sum()
            step += 1
            if time_budget_s and not max_steps and step in (20, 70):
                _sync(device)
                if step == 20:
                    probe_t0 = time.perf_counter()
                else:
                    per_step = (time.perf_counter() - probe_t0) / 50
                    # budget minus time so far, minus ~1 s per val evaluation and the final test evaluation
                    left = time_budget_s - (time.perf_counter() - t_start) - 10
                    fit = int(left / (per_step * spe * 1.05))
                    if fit < epochs:
                        new_epochs = max(min(epochs, 2 * recipe.warmup_epochs), fit)
                        log(f"[{name}] {per_step * 1e3:.1f} ms/step: {epochs} epochs would take "
                            f"{per_step * spe * epochs:.0f} s; running {new_epochs} to fit {time_budget_s:.0f} s")
                        epochs, total = new_epochs, new_epochs * spe
                        recipe = dataclasses.replace(recipe, epochs=new_epochs)
                    else:
                        log(f"[{name}] {per_step * 1e3:.1f} ms/step; {epochs} epochs fit the budget")
            if max_steps and step >= max_steps:
                done = True
                break
        last = done or epoch == epochs - 1
        row = {"epoch": epoch + 1, "loss": float(loss_sum) / max(1, i + 1),
               "train_top1": float(correct) / ((i + 1) * recipe.batch_size),
               "lr": opt.param_groups[0]["lr"], "epoch_s": time.perf_counter() - t_epoch}
        if last or (epoch + 1) % eval_every == 0:
            row["val_top1"] = evaluate(model, val, batch_size=1000, device=device)["top1"]
        history.append(row)
        log(f"[{name}] epoch {epoch + 1}/{epochs} loss {row['loss']:.4f} train {100 * row['train_top1']:.2f}% "
            + (f"val {100 * row['val_top1']:.2f}% " if "val_top1" in row else "")
            + f"lr {row['lr']:.2e} {row['epoch_s']:.1f}s")
        if last:
            break
    _sync(device)
    wall = time.perf_counter() - t_start

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = out_dir / f"{name}.safetensors"
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(ckpt), metadata={"name": name, "roundlab": roundlab.__version__})

    card = ModelCard(
        name=name, family=entry.family, timm_class=entry.timm_class, description=entry.description,
        architecture=json.loads(json.dumps(entry.arch)), dataset=entry.dataset,
        data_config=json.loads(json.dumps(entry.data_config)), params=params,
        recipe=json.loads(json.dumps(dataclasses.asdict(recipe))), seed=recipe.seed,
        training={"device": str(device), "hardware": _hardware(device), "wall_time_s": round(wall, 1),
                  "epochs": history[-1]["epoch"], "steps": step, "max_steps": max_steps,
                  "time_budget_s": time_budget_s, "images": n, "teacher_sha256":
                  sha256_of(teacher_checkpoint) if teacher is not None else None,
                  "final": history[-1], "val_history": [
                      {"epoch": r["epoch"], "val_top1": r["val_top1"]} for r in history if "val_top1" in r]},
        versions=_versions())
    measure(card, ckpt, device, data_root, eval_images=eval_images, test=test)
    card.fp_test_train_device = dict(card.fp_test)
    card.save(out_dir / f"{name}.json")
    log(f"[{name}] wrote {ckpt} ({ckpt.stat().st_size / 1e6:.2f} MB); trained {wall:.0f} s; "
        f"FP test top-1 {100 * card.fp_test['top1']:.2f}% top-5 {100 * card.fp_test['top5']:.2f}% "
        f"(on {device})")
    return card


def measure(card: ModelCard, ckpt: Path, device, data_root=None, eval_images: int | None = None, test=None,
            batch_size: int = 1000) -> ModelCard:
    """(Re-)measure ``card``'s FP test metrics from the checkpoint file ``ckpt`` on ``device``; updates ``card``."""
    device = torch.device(device)
    model, _ = load_zoo_model(card.name, ckpt)
    model = model.to(device).eval()
    test = test if test is not None else load_dataset("fashion-mnist", "test", root=data_root)
    full = test.subset(eval_images) if eval_images else test
    stamp = {"device": str(device), "hardware": _hardware(device), **_versions(),
             "measured_at": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    m = evaluate(model, full, batch_size=batch_size, device=device)
    card.fp_test = {k: m[k] for k in ("top1", "top5", "n", "correct_top1", "correct_top5")} | stamp
    if eval_images:
        card.fp_test["subset"] = f"test.subset({eval_images}, seed=0)"
    sub = test.subset(CHECK_IMAGES, seed=CHECK_SEED)
    c = evaluate(model, sub, batch_size=batch_size, device=device)
    card.fp_check = {"subset": f"test.subset({CHECK_IMAGES}, seed={CHECK_SEED})", "n": c["n"],
                     "correct_top1": c["correct_top1"], "correct_top5": c["correct_top5"], "device": str(device)}
    card.checkpoint = {"file": ckpt.name, "bytes": ckpt.stat().st_size, "sha256": sha256_of(ckpt)}
    return card


def remeasure(name: str, directory: Path | None = None, device="cpu", data_root=None, log=print) -> ModelCard:
    """Re-measure the card of ``directory/<name>.safetensors`` on ``device`` (CPU for the committed cards)."""
    directory = Path(directory or CHECKPOINT_DIR)
    ckpt = directory / f"{name}.safetensors"
    card = ModelCard.load(name, directory)
    before = card.fp_test.get("correct_top1")
    t = time.perf_counter()
    measure(card, ckpt, device, data_root)
    card.save(directory / f"{name}.json")
    log(f"[{name}] FP test top-1 {100 * card.fp_test['top1']:.2f}% top-5 {100 * card.fp_test['top5']:.2f}% on "
        f"{device} ({time.perf_counter() - t:.0f} s; correct {card.fp_test['correct_top1']}, was {before}; on the "
        f"training device {card.fp_test_train_device.get('correct_top1')})")
    return card


# ----------------------------------------------------------------------------------------------------------------- CLI
def _ordered(names: list[str]) -> list[str]:
    """Zoo names with teachers before their students."""
    chosen = list(ZOO) if "all" in names else names
    for n in chosen:
        get_entry(n)
    order: list[str] = []

    def visit(n):
        if n in order:
            return
        t = ZOO[n].recipe.teacher
        if t and t in chosen:
            visit(t)
        order.append(n)

    for n in chosen:
        visit(n)
    return order


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", nargs="+", default=["all"], metavar="NAME",
                        help=f"zoo model(s) to train, or all ({', '.join(ZOO)}); teachers train first")
    parser.add_argument("--device", default=None, help="cuda if available, else cpu (--remeasure: cpu)")
    parser.add_argument("--data-root", default=None, help="Fashion-MNIST directory (default: Debian's, then cache)")
    parser.add_argument("--out-dir", default=None, help=f"where to write checkpoints + cards (default {CHECKPOINT_DIR})")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    parser.add_argument("--batch-size", type=int, default=None, help="override the recipe's batch size")
    parser.add_argument("--lr", type=float, default=None, help="override the recipe's peak learning rate")
    parser.add_argument("--seed", type=int, default=None, help="override the recipe's seed")
    parser.add_argument("--time-budget", type=float, default=None, metavar="MIN",
                        help="minutes per model: fewer epochs if the first steps' speed says they would not fit")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (smoke runs)")
    parser.add_argument("--eval-images", type=int, default=None,
                        help="smoke runs: measure the card (and watch val) on subsets of this size")
    parser.add_argument("--eval-every", type=int, default=10, help="val evaluation every N epochs")
    parser.add_argument("--teacher-checkpoint", default=None,
                        help="distillation teacher weights (default: out-dir's, then the committed one)")
    parser.add_argument("--remeasure", action="store_true",
                        help="only re-measure the cards of existing checkpoints in --out-dir (on CPU by default)")


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    names = _ordered(args.model)
    out_dir = Path(args.out_dir) if args.out_dir else CHECKPOINT_DIR
    v = _versions()
    print(f"roundlab {v['roundlab']}, torch {v['torch']}, timm {v['timm']}, python {v['python']}", flush=True)
    if args.remeasure:
        for name in names:
            remeasure(name, out_dir, args.device or "cpu", args.data_root)
        return 0
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RoundlabError("--device cuda asked for, but torch sees no CUDA device")
    torch.use_deterministic_algorithms(True, warn_only=True)
    overrides = {k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "seed") if getattr(args, k) is not None}
    for name in names:
        recipe = dataclasses.replace(ZOO[name].recipe, **overrides)
        train_one(name, recipe, device, out_dir, args.data_root, args.teacher_checkpoint, args.max_steps,
                  args.time_budget * 60 if args.time_budget else None, args.eval_every, args.eval_images)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m roundlab.zoo.train", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except RoundlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
