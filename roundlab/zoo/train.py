"""Train the zoo models on Fashion-MNIST and write ``<name>.safetensors`` + ``<name>.json`` (the card).

A one-off: the checkpoints are committed. The commands that made them (two processes sharing one H100, then the
cards re-measured on CPU; each card's ``training.command`` and ``notes`` say the same)::

    python -m roundlab.zoo.train --model fmnist-vit fmnist-deit --device cuda --out-dir OUT --time-budget 3.4
    python -m roundlab.zoo.train --model fmnist-swin --device cuda --out-dir OUT --time-budget 7
    python -m roundlab.zoo.train --remeasure --model all            # on CPU, from roundlab/zoo/checkpoints

A smoke run on CPU: ``python -m roundlab.zoo.train --model all --device cpu --max-steps 3 --eval-images 200
--out-dir /tmp/zoo``.

Recipe (``roundlab.zoo.recipe.Recipe``): AdamW without weight decay on norms/biases/embeddings/tokens, linear
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
import os
import sys
import time
from pathlib import Path

import torch

import roundlab
from roundlab.errors import RoundlabError
from roundlab.zoo import ZOO, ModelCard, ZooEntry, get_entry
from roundlab.zoo.card import CHECKPOINT_DIR, sha256_of
from roundlab.zoo.fit import (TimeBudget, TrainRun, count_params, fit, load_teacher, load_train_data, make_optimizer,
                              schedule, sync)
from roundlab.zoo.measure import CHECK_IMAGES, CHECK_SEED, hardware, measure, remeasure, versions
from roundlab.zoo.recipe import Recipe, augment, lr_at

__all__ = ["CHECK_IMAGES", "CHECK_SEED", "add_arguments", "augment", "lr_at", "main", "measure", "remeasure", "run",
           "train_one"]


def train_one(name: str, recipe: Recipe, device: torch.device, out_dir: Path, data_root=None, teacher_checkpoint=None,
              max_steps: int | None = None, time_budget_s: float | None = None, eval_every: int = 10,
              eval_images: int | None = None, log=print) -> ModelCard:
    """Train zoo model ``name`` with ``recipe`` on ``device``; write its checkpoint and card into ``out_dir``."""
    entry = get_entry(name)
    t_start = time.perf_counter()
    torch.manual_seed(recipe.seed)
    data = load_train_data(recipe, device, data_root, eval_images)
    model = entry.build(drop_path_rate=recipe.drop_path).to(device).train()
    teacher, teacher_checkpoint = load_teacher(name, recipe, model, device, out_dir, teacher_checkpoint, log)
    run = TrainRun(name, model, teacher, make_optimizer(model, recipe, device), data, recipe, device,
                   *schedule(len(data.images), recipe, max_steps), max_steps=max_steps, log=log)
    log(f"[{name}] {entry.timm_class} {count_params(model)} params; {len(data.images)} images, {run.steps_per_epoch} "
        f"steps/epoch, {run.epochs} epochs ({run.total} steps) on {hardware(device)}")
    budget = TimeBudget(time_budget_s, t_start) if time_budget_s and not max_steps else None
    history = fit(run, budget, eval_every)
    sync(device)
    wall = time.perf_counter() - t_start

    ckpt = _save_checkpoint(model, name, Path(out_dir))
    card = _card(entry, run, history, wall, time_budget_s, teacher_checkpoint)
    measure(card, ckpt, device, data_root, eval_images=eval_images, test=data.test)
    card.fp_test_train_device = dict(card.fp_test)
    card.save(Path(out_dir) / f"{name}.json")
    log(f"[{name}] wrote {ckpt} ({ckpt.stat().st_size / 1e6:.2f} MB); trained {wall:.0f} s; "
        f"FP test top-1 {100 * card.fp_test['top1']:.2f}% top-5 {100 * card.fp_test['top5']:.2f}% "
        f"(on {device})")
    return card


# --------------------------------------------------------------------------------------------- checkpoint and card
def _save_checkpoint(model: torch.nn.Module, name: str, out_dir: Path) -> Path:
    """``out_dir/<name>.safetensors``: the trained weights on CPU."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = out_dir / f"{name}.safetensors"
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(ckpt), metadata={"name": name, "roundlab": roundlab.__version__})
    return ckpt


def _card(entry: ZooEntry, run: TrainRun, history: list[dict], wall: float, time_budget_s: float | None,
          teacher_checkpoint) -> ModelCard:
    """The card of a finished run (its FP measurements come from :func:`measure`)."""
    def plain(o):
        return json.loads(json.dumps(o))

    training = {"device": str(run.device), "hardware": hardware(run.device), "wall_time_s": round(wall, 1),
                "epochs": history[-1]["epoch"], "steps": run.step, "max_steps": run.max_steps,
                "time_budget_s": time_budget_s, "images": len(run.data.images),
                "teacher_sha256": sha256_of(teacher_checkpoint) if run.teacher is not None else None,
                "final": history[-1],
                "val_history": [{"epoch": r["epoch"], "val_top1": r["val_top1"]} for r in history if "val_top1" in r]}
    return ModelCard(
        name=entry.name, family=entry.family, timm_class=entry.timm_class, description=entry.description,
        architecture=plain(entry.arch), dataset=entry.dataset, data_config=plain(entry.data_config),
        params=count_params(run.model), recipe=plain(dataclasses.asdict(run.recipe)), seed=run.recipe.seed,
        training=training, versions=versions())


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
    recipe = Recipe()
    parser.add_argument("--model", nargs="+", default=["all"], metavar="NAME",
                        help=f"zoo model(s) to train, or all ({', '.join(ZOO)}); teachers train first (default: all)")
    parser.add_argument("--device", default=None,
                        help="torch device to train on (default: cuda if available, else cpu; --remeasure: cpu)")
    parser.add_argument("--data-root", default=None,
                        help="Fashion-MNIST directory with the four IDX files (default: Debian's "
                             "dataset-fashion-mnist, then ~/.cache/roundlab)")
    parser.add_argument("--out-dir", default=None,
                        help=f"where to write checkpoints + cards (default: {CHECKPOINT_DIR})")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"training epochs, overriding the recipe's (default: {recipe.epochs})")
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"images per optimizer step, overriding the recipe's (default: {recipe.batch_size})")
    parser.add_argument("--lr", type=float, default=None,
                        help=f"peak AdamW learning rate (after warm-up), overriding the recipe's (default: "
                             f"{recipe.lr:g})")
    parser.add_argument("--seed", type=int, default=None,
                        help=f"torch seed (initialisation, shuffling, augmentation), overriding the recipe's "
                             f"(default: {recipe.seed})")
    parser.add_argument("--time-budget", type=float, default=None, metavar="MIN",
                        help="minutes per model: fewer epochs if the first steps' speed says they would not fit "
                             "(default: no limit)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop after this many optimizer steps, for smoke runs (default: no limit)")
    parser.add_argument("--eval-images", type=int, default=None,
                        help="smoke runs: measure the card (and watch val) on subsets of this many images "
                             "(default: the whole splits)")
    parser.add_argument("--eval-every", type=int, default=10,
                        help="val evaluation every N epochs, and after the last (default: 10)")
    parser.add_argument("--teacher-checkpoint", default=None,
                        help="distillation teacher weights (default: out-dir's, then the committed one)")
    parser.add_argument("--remeasure", action="store_true",
                        help="only re-measure the cards of existing checkpoints in --out-dir (on CPU by default)")


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    names = _ordered(args.model)
    out_dir = Path(args.out_dir) if args.out_dir else CHECKPOINT_DIR
    v = versions()
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
