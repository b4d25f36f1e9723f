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
quantizer left, its outputs replace its inputs. A target's pass-0 inputs are also kept, up to
:data:`PASS_CACHE_BYTES`, and later passes read them instead of running the segment again.

With one batch covering all images the result is bit-identical to the one-pass calibration; with several it is the
same exact search, its errors summed in float64 (a different pick only where two candidates nearly tie).
"""

from __future__ import annotations

import ctypes
from contextlib import contextmanager

import torch
from torch import nn

from roundlab.errors import RoundlabError, check
from roundlab.quant.state import activation_quantizers, calibration_state
from roundlab.quant.surgery import find_architecture

#: Bytes of a target's pass-0 inputs kept for its pass 1 (beyond them, pass 1 runs the segment again).
PASS_CACHE_BYTES = 256 * 2**20


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


class _Target:
    """The quantizer a segment's pass-0 run reaches first, its streamed search, and its cached pass-0 inputs."""

    def __init__(self, total_images: int, batches: int):
        self.total_images, self.batches, self.quantizer, self.search = total_images, batches, None, None
        self.cache: dict[int, torch.Tensor] = {}
        self.cached_bytes = 0

    def observe(self, quantizer, x: torch.Tensor, images: int, batch: int) -> None:
        if self.quantizer is None:
            self.quantizer, self.search = quantizer, quantizer.search_stream(self.total_images)
        elif quantizer is not self.quantizer:
            raise RoundlabError(f"streamed calibration: the forward reached {quantizer.describe()} first on one "
                                f"batch and {self.quantizer.describe()} on another")
        self.search.observe(0, x, images)
        size = x.untyped_storage().nbytes()     # a view (q, k, v of the qkv output) keeps its whole storage
        if self.batches > 1 and size > x.numel() * x.element_size():
            # compacted; kept as it is for one batch, whose search must see the one-pass layout (float32 mean)
            x = x.clone(memory_format=torch.contiguous_format)
            size = x.numel() * x.element_size()
        if self.cached_bytes + size <= PASS_CACHE_BYTES:
            self.cache[batch], self.cached_bytes = x, self.cached_bytes + size


def _calibrate_next(fn, quantizers: list, inputs: list, counts: list[int], last: bool) -> bool:
    """Calibrate the first uncalibrated quantizer that the segment ``fn`` reaches and return True; or return False
    when it reaches none, after replacing ``inputs`` by the segment's outputs (unless it is the ``last``)."""
    pending = [q for q in quantizers if not q.calibrated]
    target = _Target(sum(counts), len(counts))
    for i, (x, n) in enumerate(zip(inputs, counts)):
        with _pre_hooks(pending, lambda q, a, i=i, n=n: target.observe(q, a, n, i)):
            out = _run(fn, x)
        if (out is None) != (target.quantizer is not None):
            raise RoundlabError("streamed calibration: the forward reached an uncalibrated quantizer on some batches "
                                "and none on others")
        if out is None:
            continue
        if last:
            return False
        inputs[i] = out                     # this segment is calibrated: its output is the next one's input
    if target.quantizer is None:
        return False
    search = target.search
    search.end_pass(0)
    for pass_ in range(1, search.passes):
        for i, (x, n) in enumerate(zip(inputs, counts)):
            a = target.cache.get(i)
            if a is None:
                with _pre_hooks([target.quantizer], lambda q, t, p=pass_, n=n: search.observe(p, t, n)):
                    _run(fn, x)
            else:
                search.observe(pass_, a, n)
        search.end_pass(pass_)
    search.finish()
    return True


def calibrate_streamed(model: nn.Module, images: torch.Tensor, batch_size: int,
                       weight: bool | None = None) -> nn.Module:
    """Calibrate every activation quantizer of the quantized ``model`` on ``images``, ``batch_size`` images per
    forward pass: the result of ``with calibration_mode(model, weight): model(images)``, without holding every
    image's activations at once. Returns ``model``."""
    check(isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size >= 1,
          f"calibration batch size must be a positive integer, got {batch_size!r}")
    check(images.shape[0] >= 1, "streamed calibration needs at least one image")
    with calibration_state(model, weight), torch.no_grad():
        quantizers = activation_quantizers(model)
        for q in quantizers:                # calibration_mode re-calibrates every one of them too
            q.reset()
        _calibrate_chain(model, quantizers, images, batch_size)
    _return_freed_memory()
    return model


def _calibrate_chain(model: nn.Module, quantizers: list, images: torch.Tensor, batch_size: int) -> None:
    """Every segment in turn, each until it reaches no uncalibrated quantizer; its outputs feed the next."""
    inputs = [images[i:i + batch_size] for i in range(0, images.shape[0], batch_size)]
    counts = [x.shape[0] for x in inputs]
    chain = _segments(model)
    for k, fn in enumerate(chain):
        while _calibrate_next(fn, quantizers, inputs, counts, last=k == len(chain) - 1):
            pass


def _return_freed_memory() -> None:
    """Hand the heap pages the passes freed back to the OS (glibc's ``malloc_trim``). The many batch-sized
    temporaries leave the heap fragmented, and the resident size the next stage starts from would otherwise keep
    them (measured: DeiT-S, 64 images, 1517 MB resident after calibration, 941 MB after the trim). A no-op where the
    C library has no ``malloc_trim``."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):
        return
    trim(0)
