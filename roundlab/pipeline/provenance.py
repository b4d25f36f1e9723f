"""What a ``result.json`` records about where it was made: package versions, platform, peak memory."""

from __future__ import annotations

import platform
import resource
import sys

import torch

import roundlab


def versions() -> dict:
    import timm

    return {"roundlab": roundlab.__version__, "torch": torch.__version__, "timm": timm.__version__,
            "python": sys.version.split()[0], "platform": platform.platform()}


def peak_memory_mb(device: str) -> dict:
    """Peak resident memory of this process (MiB) and, on CUDA, the peak allocated device memory."""
    out = {"cpu_max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if str(device).startswith("cuda") and torch.cuda.is_available():
        out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out
