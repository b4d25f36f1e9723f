"""Streamed activation calibration: :func:`~roundlab.quant.calibration_mode`'s result without one forward pass over
every calibration image at once, so memory does not grow with the activations of all images.

Each activation quantizer calibrates on its input over all images, and that input depends on every quantizer
upstream (calibrated and quantizing, as in the one-pass calibration). So quantizers are calibrated one at a time,
in the order the forward pass reaches them, each by its own streamed search (``Quantizer.search_stream``,
:mod:`roundlab.quant.search_stream`) over the images in batches: pass 0 finds which uncalibrated quantizer the
forward reaches first (the target) and feeds it its input (the searches gather the tails there), later passes feed
it again (the candidates' errors). Every run stops at the target (its pre-hook raises), so nothing downstream of it
is computed.

The forward is cut into segments (``Architecture.segments``: ViT/DeiT blocks, Swin downsamples and blocks, then
norm + head; an architecture without them is one segment). The current segment's input is kept for all images —
one block input, not every activation inside the blocks (DeiT-S: 197 × 384 values per image, half the image's own
size) — so each pass runs from the target's own segment, not from the image. When a segment has no uncalibrated
quantizer left, its outputs replace its inputs. A target's pass-0 inputs are kept too, and later passes read them
instead of running the segment again. Both are kept in a :class:`~roundlab.quant.batch_store.BatchStore`: on the
accelerator up to :data:`DEVICE_BYTES`, in host memory up to :data:`MEMORY_BYTES`, on disk beyond (bit for bit), so
neither the process nor the device grows with the number of images (with a single batch, which holds every image
anyway, both stay as they are); the first segment reads its images from the caller's
:class:`~roundlab.data.image_batches.Images` (a tensor, or a dataset loaded batch by batch).

With one batch covering all images the result is bit-identical to the one-pass calibration; with several it is the
same exact search, its errors summed in float64 (a different pick only where two candidates nearly tie).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from roundlab.errors import RoundlabError, check
from roundlab.heap import compact, return_freed_memory
from roundlab.quant.batch_store import BatchStore
from roundlab.quant.state import activation_quantizers, calibration_state
from roundlab.quant.surgery import find_architecture

#: Bytes of host memory the kept batches (segment inputs, pass-0 inputs) may take; beyond them they go to disk.
#: DeiT-S at 32 images needs 48 MB (its block inputs and its widest target's, the MLP's hidden activations).
MEMORY_BYTES = 64 * 2**20
#: Bytes of accelerator memory the kept batches may take (a CPU run has none); beyond them they go to the host
#: tiers above. DeiT-S at 1024 images keeps 310 MB of block inputs and up to 1.2 GB of one target's pass-0 inputs.
DEVICE_BYTES = 512 * 2**20


class _Reached(Exception):
    """Raised by a pre-hook to end a forward pass once the input wanted has been seen."""


@contextmanager
def _pre_hooks(modules, on_input):
    """``on_input(module, x)`` before each module's forward, which is then aborted (``_Reached``)."""
    def hook(module, args):
        on_input(module, args[0])
        raise _Reached

    handles = [m.register_forward_pre_hook(hook) for m in modules]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _run(fn, x):
    """``fn(x)``, or None when a hook ended it."""
    try:
        return fn(x)
    except _Reached:
        return None


def _segments(model: nn.Module) -> list:
    """The forward as a chain: the stem (image → first segment's input), then the architecture's segments."""
    arch = find_architecture(model)
    chain = arch.segments(model) if arch.segments is not None else []
    if not chain:
        return [model]
    first = chain[0]
    check(isinstance(first, nn.Module), f"architecture {arch.name}: its first segment must be an nn.Module")

    def stem(images):
        box = []
        with _pre_hooks([first], lambda module, x: box.append(x)):
            try:
                model(images)
            except _Reached:
                if not box:         # a quantizer inside the stem was reached first: the caller's target
                    raise
        check(bool(box), f"architecture {arch.name}: the forward pass never reached its first segment")
        return box[0]

    return [stem] + list(chain)


class _Inputs:
    """The current segment's input, batch by batch: the images at first, then each finished segment's outputs."""

    def __init__(self, images, batch_size: int, store):
        self.images, self.store = images, store
        self.bounds = [(s, min(s + batch_size, len(images))) for s in range(0, len(images), batch_size)]
        self.counts = [b - a for a, b in self.bounds]
        self.one_batch: torch.Tensor | None = None     # a single batch is kept as it is, never in the store

    def get(self, i: int) -> torch.Tensor:
        if self.one_batch is not None:
            return self.one_batch
        return self.store.get(("input", i)) if ("input", i) in self.store else self.images.batch(*self.bounds[i])

    def set(self, i: int, x: torch.Tensor) -> None:
        if len(self.counts) == 1:           # copied out of a larger buffer it may be a view of, as the store does
            self.one_batch = compact(x)
        else:
            self.store.put(("input", i), x)


class _Target:
    """The quantizer a segment's pass-0 run reaches first, its streamed search, and its kept pass-0 inputs."""

    def __init__(self, total_images: int, batches: int, store):
        self.total_images, self.batches, self.quantizer, self.search = total_images, batches, None, None
        self.store = store
        self.one_batch: torch.Tensor | None = None

    def observe(self, quantizer, x: torch.Tensor, images: int, batch: int) -> None:
        if self.quantizer is None:
            self.quantizer, self.search = quantizer, quantizer.search_stream(self.total_images)
        elif quantizer is not self.quantizer:
            raise RoundlabError(f"streamed calibration: the forward reached {quantizer.describe()} first on one "
                                f"batch and {self.quantizer.describe()} on another")
        self.search.observe(0, x, images)
        if self.batches == 1:
            self.one_batch = x      # as it is: one batch's search must see the one-pass layout (float32 mean)
        else:
            self.store.put(("pass0", batch), x)

    def kept(self, batch: int) -> torch.Tensor:
        return self.one_batch if self.batches == 1 else self.store.get(("pass0", batch))

    def release(self) -> None:
        self.one_batch = None
        for i in range(self.batches):
            self.store.discard(("pass0", i))


def _calibrate_next(fn, quantizers: list, inputs: _Inputs, last: bool) -> bool:
    """Calibrate the first uncalibrated quantizer that the segment ``fn`` reaches and return True; or return False
    when it reaches none, after replacing ``inputs`` by the segment's outputs (unless it is the ``last``)."""
    pending = [q for q in quantizers if not q.calibrated]
    counts = inputs.counts
    target = _Target(sum(counts), len(counts), inputs.store)
    try:
        for i, n in enumerate(counts):
            with _pre_hooks(pending, lambda q, a, i=i, n=n: target.observe(q, a, n, i)):
                out = _run(fn, inputs.get(i))
            return_freed_memory()           # the forward's temporaries (roundlab.heap)
            if (out is None) != (target.quantizer is not None) or (i > 0 and (out is None) != first_reached):
                raise RoundlabError("streamed calibration: the forward reached an uncalibrated quantizer on some "
                                    "batches and none on others")
            if i == 0:
                first_reached = out is None
            if out is None or last:         # the last segment still runs every batch: one may reach a quantizer
                continue
            inputs.set(i, out)              # this segment is calibrated: its output is the next one's input
        if target.quantizer is None:
            return False
        search = target.search
        search.end_pass(0)
        for pass_ in range(1, search.passes):
            for i, n in enumerate(counts):
                search.observe(pass_, target.kept(i), n)
                return_freed_memory()
            search.end_pass(pass_)
        search.finish()
        return True
    finally:
        target.release()


def calibrate_streamed(model: nn.Module, images, batch_size: int, weight: bool | None = None) -> nn.Module:
    """Calibrate every activation quantizer of the quantized ``model`` on ``images`` (a tensor or
    :class:`~roundlab.data.image_batches.Images`), ``batch_size`` images per forward pass: the result of
    ``with calibration_mode(model, weight): model(images)``, without holding every image's activations at once.
    Returns ``model``."""
    from roundlab.data.image_batches import as_images

    check(isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size >= 1,
          f"calibration batch size must be a positive integer, got {batch_size!r}")
    images = as_images(images)
    check(len(images) >= 1, "streamed calibration needs at least one image")
    store = BatchStore(MEMORY_BYTES, device_bytes=DEVICE_BYTES)
    with calibration_state(model, weight), torch.no_grad(), store:
        quantizers = activation_quantizers(model)
        for q in quantizers:                # calibration_mode re-calibrates every one of them too
            q.reset()
        _calibrate_chain(model, quantizers, _Inputs(images, batch_size, store))
    return_freed_memory()
    return model


def _calibrate_chain(model: nn.Module, quantizers: list, inputs: _Inputs) -> None:
    """Every segment in turn, each until it reaches no uncalibrated quantizer; its outputs feed the next."""
    chain = _segments(model)
    for k, fn in enumerate(chain):
        while _calibrate_next(fn, quantizers, inputs, last=k == len(chain) - 1):
            pass
