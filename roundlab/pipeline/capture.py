"""Capture the inputs of chosen layers with forward pre-hooks, always removed (a context manager).

Inputs are kept in memory as (N, Din) matrices: the token dimension is flattened for Linears, and a Conv2d's input is
unfolded into its patches (``F.unfold``, rows ordered (c, ky, kx) like ``weight.reshape(Dout, -1)``).
``stop_after`` aborts the forward pass once that layer's input is captured, so a sequential pipeline pays only for the
network up to the layer it is working on.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


class _Stop(Exception):
    pass


def as_rows(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A layer input as the (N, Din) matrix its weight multiplies."""
    if isinstance(module, nn.Conv2d) or hasattr(module, "kernel_size"):
        cols = F.unfold(x, kernel_size=module.kernel_size, stride=module.stride, padding=module.padding,
                        dilation=module.dilation)                  # (B, C·k·k, L)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    return x.reshape(-1, x.shape[-1])


@contextmanager
def capture_inputs(layers: dict[str, nn.Module], stop_after: str | None = None):
    """Yield a dict name -> list of captured (N_i, Din) tensors, filled by each forward pass inside the block."""
    store: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    handles = []

    def make_hook(name):
        def hook(module, args):
            store[name].append(as_rows(module, args[0].detach()))
            if name == stop_after:
                raise _Stop
        return hook

    for name, module in layers.items():
        handles.append(module.register_forward_pre_hook(make_hook(name)))
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


def run_capturing(model: nn.Module, images: torch.Tensor, layers: dict[str, nn.Module],
                  stop_after: str | None = None, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Run ``model`` on ``images`` in batches and return each layer's concatenated (N, Din) input."""
    with capture_inputs(layers, stop_after=stop_after) as store, torch.no_grad():
        for i in range(0, images.shape[0], batch_size):
            try:
                model(images[i:i + batch_size])
            except _Stop:
                pass
    return {name: torch.cat(chunks) for name, chunks in store.items() if chunks}
