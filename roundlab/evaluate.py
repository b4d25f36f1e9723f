"""Evaluation metrics: top-1, top-5, top-1 agreement with the FP model, and mean KL(FP ‖ quantized).

At 4 bits on a 10-class set top-1 alone moves little, so agreement (the fraction of images on which the quantized
model's top-1 class equals the FP model's) and the KL divergence of the softmax outputs are what separate methods.

All accuracies are fractions in [0, 1]; KL is in nats, averaged over images. ``top5`` is ``None`` when the model has
five classes or fewer; ``agreement`` and ``kl`` are ``None`` when no reference logits are given.

``data`` for :func:`evaluate` / :func:`fp_logits` may be a roundlab dataset (anything with ``batches(batch_size)``),
a ``torch.utils.data.DataLoader`` (or any iterable) of ``(images, labels)``, or one ``(images, labels)`` pair of tensors.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import torch

from roundlab.errors import RoundlabError


# ------------------------------------------------------------------------------------------------- metric functions
def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> int:
    """How many rows of ``logits`` have their label among the ``k`` largest entries."""
    k = min(k, logits.shape[-1])
    top = logits.topk(k, dim=-1).indices
    return int((top == labels.view(-1, 1).to(top.device)).any(dim=-1).sum())


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    _check_rows(logits, labels.view(-1, 1), "labels")
    return topk_correct(logits, labels, k) / max(len(labels), 1)


def agreement(logits: torch.Tensor, reference_logits: torch.Tensor) -> float:
    """Fraction of images whose top-1 class under ``logits`` equals that under ``reference_logits``."""
    _check_same(logits, reference_logits)
    return float((logits.argmax(-1) == reference_logits.argmax(-1).to(logits.device)).double().mean())


def kl_per_image(reference_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(reference) ‖ softmax(logits)) of every image in nats, float64."""
    _check_same(logits, reference_logits)
    log_p = torch.log_softmax(reference_logits.double(), dim=-1)
    log_q = torch.log_softmax(logits.double().to(log_p.device), dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def kl_divergence(reference_logits: torch.Tensor, logits: torch.Tensor) -> float:
    """Mean over images of KL(softmax(reference) ‖ softmax(logits)) in nats, computed in float64."""
    return float(kl_per_image(reference_logits, logits).mean())


def per_image(logits: torch.Tensor, labels: torch.Tensor, reference_logits: torch.Tensor | None = None) -> dict:
    """Per-image outcomes, for paired comparisons of two models on the same images (CPU tensors):
    ``prediction`` (top-1 class), ``correct``, and with reference logits ``agree`` and ``kl`` (nats, float64)."""
    _check_rows(logits, labels.view(-1, 1), "labels")
    pred = logits.argmax(-1).cpu()
    out = {"prediction": pred, "correct": pred == labels.view(-1).cpu()}
    if reference_logits is not None:
        out["agree"] = pred == reference_logits.argmax(-1).cpu()
        out["kl"] = kl_per_image(reference_logits, logits).cpu()
    return out


def metrics_from_logits(logits: torch.Tensor, labels: torch.Tensor,
                        reference_logits: torch.Tensor | None = None) -> dict:
    """The metric dict of :func:`evaluate` from precomputed logits."""
    _check_rows(logits, labels.view(-1, 1), "labels")
    n = len(labels)
    if n == 0:
        raise RoundlabError("cannot evaluate on an empty dataset")
    correct1 = topk_correct(logits, labels, 1)
    out = {"top1": correct1 / n, "top5": None, "agreement": None, "kl": None, "n": n, "correct_top1": correct1}
    if logits.shape[-1] > 5:
        out["correct_top5"] = topk_correct(logits, labels, 5)
        out["top5"] = out["correct_top5"] / n
    if reference_logits is not None:
        out["agreement"] = agreement(logits, reference_logits)
        out["kl"] = kl_divergence(reference_logits, logits)
    return out


def _check_rows(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if a.ndim != 2 or a.shape[0] != b.shape[0]:
        raise RoundlabError(f"logits {tuple(a.shape)} and {what} {tuple(b.shape)} do not match row for row")


def _check_same(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise RoundlabError(f"logits {tuple(a.shape)} and reference logits {tuple(b.shape)} differ in shape "
                            "(reference logits must come from the same images in the same order)")


# ------------------------------------------------------------------------------------------------------- model runs
def iterate_batches(data, batch_size: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(images, labels)`` batches from a roundlab dataset, an iterable of pairs, or one pair of tensors."""
    if hasattr(data, "batches"):
        yield from data.batches(batch_size)
    elif isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        x, y = data
        for s in range(0, len(x), batch_size):
            yield x[s:s + batch_size], torch.as_tensor(y[s:s + batch_size])
    elif isinstance(data, Iterable):
        for batch in data:
            x, y = batch[0], batch[1]
            yield x, torch.as_tensor(y)
    else:
        raise RoundlabError(f"cannot evaluate on {type(data).__name__}: expected a dataset, a loader of "
                            "(images, labels), or an (images, labels) pair")


def _device_of(model: torch.nn.Module, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def _run(model: torch.nn.Module, data, batch_size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    dev = _device_of(model, device)
    was_training = model.training
    model.eval()
    try:
        logits, labels = [], []
        for x, y in iterate_batches(data, batch_size):
            out = model(x.to(dev))
            if isinstance(out, (tuple, list)):   # a distilled model in training mode: average its heads
                out = sum(out) / len(out)
            logits.append(out.float().cpu())
            labels.append(y.cpu().long())
    finally:
        model.train(was_training)
    if not logits:
        raise RoundlabError("cannot evaluate on an empty dataset")
    out = torch.cat(logits)
    if not torch.isfinite(out).all():
        raise RoundlabError(f"the model produced non-finite logits on {int((~torch.isfinite(out)).any(-1).sum())} "
                            "images")
    return out, torch.cat(labels)


def fp_logits(model: torch.nn.Module, data, batch_size: int = 256, device=None) -> torch.Tensor:
    """Logits ``(N, classes)`` (float32, CPU) of ``model`` on ``data``, in order: the reference for agreement and KL."""
    return _run(model, data, batch_size, device)[0]


def evaluate(model: torch.nn.Module, data, reference_logits: torch.Tensor | None = None, batch_size: int = 256,
             device=None, return_logits: bool = False) -> dict:
    """Evaluate ``model`` on ``data``: ``{"top1", "top5", "agreement", "kl", "n", "correct_top1"[, "correct_top5"]}``.

    ``reference_logits`` (from :func:`fp_logits` on the same data) enables agreement and KL(FP ‖ model).
    ``device``: where to run (None → the model's own device). ``return_logits`` adds ``"logits"`` (CPU tensor) and ``"labels"``.
    """
    logits, labels = _run(model, data, batch_size, device)
    out = metrics_from_logits(logits, labels, reference_logits)
    if return_logits:
        out["logits"], out["labels"] = logits, labels
    return out
