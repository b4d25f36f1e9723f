"""The FP reference of a run: the full-precision model's metrics and logits on the test split, cached on disk.

Agreement and KL of a quantized model are measured against these logits. The cache lives beside the run
directories (``<runs>/_fp_cache/<model>-<hash>.pt``), keyed by a hash of every weight and of the evaluated images,
so every run of one model shares it. It is read with ``weights_only=True`` (tensors and plain values only: a crafted
file cannot run code); a damaged or foreign file is announced, recomputed and replaced.
"""

from __future__ import annotations

import hashlib
import io
import sys
from pathlib import Path

import torch

from roundlab.pipeline.config import ERQConfig
from roundlab.pipeline.rundir import atomic_write


def cache_key(model: torch.nn.Module, n_test: int, config: ERQConfig) -> str:
    """SHA-256 (16 hex digits) of the model's state and of which test images are evaluated."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    h.update(f"{n_test}:{config.eval_images}:{config.dataset}:{config.data_root}".encode())
    return h.hexdigest()[:16]


def fp_reference(model, test, config: ERQConfig, cache_dir: Path, fresh: bool = False) -> tuple[dict, torch.Tensor]:
    """FP metrics and logits on the test split, from the cache when it holds them (unless ``fresh``)."""
    from roundlab.evaluate import evaluate

    path = Path(cache_dir) / f"{config.model}-{cache_key(model, len(test), config)}.pt"
    if path.exists() and not fresh:
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            return saved["metrics"], saved["logits"]
        except Exception as e:  # damaged, foreign or crafted: recomputed and replaced below
            print(f"roundlab: warning: ignoring the FP-logit cache {path} ({type(e).__name__}); recomputing",
                  file=sys.stderr)
    out = evaluate(model, test, batch_size=config.batch_size, device=config.device, return_logits=True)
    logits = out.pop("logits")
    out.pop("labels")
    out.update(agreement=1.0, kl=0.0)
    buf = io.BytesIO()
    torch.save({"metrics": out, "logits": logits}, buf)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buf.getvalue())
    return out, logits
