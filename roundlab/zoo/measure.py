"""A zoo card's FP measurements: test top-1/top-5 from the checkpoint file, the fast-check subset, the file's hash.

``python -m roundlab.zoo.train --remeasure`` re-measures the committed cards on CPU (see :mod:`roundlab.zoo.card`).
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import torch

import roundlab
from roundlab.data import load_dataset
from roundlab.evaluate import evaluate
from roundlab.zoo import ModelCard, load_zoo_model
from roundlab.zoo.card import CHECKPOINT_DIR, sha256_of

CHECK_IMAGES, CHECK_SEED = 1000, 0   # the card's fp_check subset of the test set


def hardware(device: torch.device) -> str:
    """The device's name for a card: the GPU's, or the CPU architecture and torch's thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.machine()} CPU, {torch.get_num_threads()} threads"


def versions() -> dict:
    """The library versions a card records (roundlab, torch, timm, python)."""
    import timm

    return {"roundlab": roundlab.__version__, "torch": torch.__version__, "timm": timm.__version__,
            "python": platform.python_version()}


def measure(card: ModelCard, ckpt: Path, device, data_root=None, eval_images: int | None = None, test=None,
            batch_size: int = 1000) -> ModelCard:
    """(Re-)measure ``card``'s FP test metrics from the checkpoint file ``ckpt`` on ``device``; updates ``card``."""
    device = torch.device(device)
    model, _ = load_zoo_model(card.name, ckpt)
    model = model.to(device).eval()
    test = test if test is not None else load_dataset("fashion-mnist", "test", root=data_root)
    full = test.subset(eval_images) if eval_images else test
    stamp = {"device": str(device), "hardware": hardware(device), **versions(),
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
