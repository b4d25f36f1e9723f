"""Capture the inputs of chosen layers with forward pre-hooks, always removed (a context manager).

:func:`stream_inputs` hands each batch's inputs to a callback (the pipeline accumulates statistics from them);
:func:`run_capturing` keeps them in memory as (N, Din) matrices: the token dimension is flattened for Linears, and a Conv2d's input is
unfolded into its patches (``F.unfold``, rows ordered (c, ky, kx) like ``weight.reshape(Dout, -1)``).
``stop_after`` aborts the forward pass once that layer's input is captured, so a sequential pipeline pays only for the
network up to the layer it is working on.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from roundlab.heap import return_freed_memory


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
def input_hooks(layers: dict[str, nn.Module], on_input, stop_after: str | None = None):
    """Within the block, every forward pass calls ``on_input(name, rows)`` with each layer's (n, Din) input."""
    handles = []

    def make_hook(name):
        def hook(module, args):
            on_input(name, as_rows(module, args[0].detach()))
            if name == stop_after:
                raise _Stop
        return hook

    for name, module in layers.items():
        handles.append(module.register_forward_pre_hook(make_hook(name)))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def stream_inputs(model: nn.Module, images, layers: dict[str, nn.Module], on_input,
                  stop_after: str | None = None, batch_size: int = 64) -> None:
    """Run ``model`` on ``images`` (a tensor or :class:`~roundlab.data.image_batches.Images`) in batches;
    ``on_input(name, rows)`` receives each layer's input batch by batch (nothing is kept here: memory does not grow
    with the number of images)."""
    from roundlab.data.image_batches import as_images

    with input_hooks(layers, on_input, stop_after=stop_after), torch.no_grad():
        for batch in as_images(images).batches(batch_size):
            try:
                model(batch)
            except _Stop:
                pass
            del batch
            return_freed_memory()           # the batch's temporaries: see roundlab.heap


def run_capturing(model: nn.Module, images, layers: dict[str, nn.Module],
                  stop_after: str | None = None, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Run ``model`` on ``images`` in batches and return each layer's concatenated (N, Din) input."""
    store: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    stream_inputs(model, images, layers, lambda name, rows: store[name].append(rows), stop_after, batch_size)
    return {name: torch.cat(chunks) for name, chunks in store.items() if chunks}
