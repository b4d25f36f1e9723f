"""Downstream forwards of a model whose layer is being varied: a block's output and the logits (Fig. 3).

:class:`Suffix` starts each forward at the varied layer's block from the block's cached input; it falls back to full
forwards where that is not possible or does not reproduce them.
"""

from __future__ import annotations

import torch

from analysis.log import log


def block_of(model, name: str) -> str | None:
    """The transformer block containing layer ``name`` (longest prefix whose class name ends with 'Block')."""
    parts = name.split(".")
    best = None
    for i in range(1, len(parts)):
        prefix = ".".join(parts[:i])
        try:
            m = model.get_submodule(prefix)
        except AttributeError:
            continue
        if type(m).__name__.endswith("Block"):
            best = prefix
    return best


def forward_block(model, block: str | None, images: torch.Tensor):
    """(logits, block output or None) of a full forward on ``images``."""
    store = {}
    h = None
    if block is not None:
        h = model.get_submodule(block).register_forward_hook(lambda m, a, o: store.__setitem__("y", o.detach()))
    try:
        with torch.no_grad():
            logits = model(images)
    finally:
        if h is not None:
            h.remove()
    return logits, store.get("y")


def kl(ref: torch.Tensor, logits: torch.Tensor) -> float:
    """Mean over images of KL(softmax(ref) ‖ softmax(logits))."""
    lp, lq = ref.log_softmax(-1), logits.log_softmax(-1)
    return float((lp.exp() * (lp - lq)).sum(-1).mean())


class Suffix:
    """Downstream forwards that start at the layer's block: (logits, block output) from the block's cached input.

    On a timm ViT/DeiT (``blocks`` a Sequential, ``norm``, ``forward_head``) the input of ``blocks[b]`` does not
    depend on any layer inside blocks ≥ b, so it is captured once per block (quantized model in its final state) and
    each forward runs ``blocks[b:]`` → ``norm`` → ``forward_head`` only: the same numbers as a full forward (checked
    on first use per block, else every forward is a full one). ``b = len(blocks)`` (the head): the input of
    ``norm``."""

    def __init__(self, model, images: torch.Tensor):
        self.model, self.images, self.inputs = model, images, {}
        blocks = getattr(model, "blocks", None)
        self.ok = isinstance(blocks, torch.nn.Sequential) and hasattr(model, "norm") and \
            hasattr(model, "forward_head")
        self.checked = set()

    def index(self, block: str | None) -> int | None:
        if not self.ok:
            return None
        if block is None:
            return len(self.model.blocks)
        head, _, i = block.partition(".")
        return int(i) if head == "blocks" and i.isdigit() else None

    def _input(self, b: int) -> torch.Tensor:
        if b not in self.inputs:
            store = {}
            m = self.model.blocks[b] if b < len(self.model.blocks) else self.model.norm
            h = m.register_forward_pre_hook(lambda mod, a: store.__setitem__("x", a[0].detach()))
            try:
                with torch.no_grad():
                    self.model(self.images)
            finally:
                h.remove()
            self.inputs[b] = store["x"]
        return self.inputs[b]

    def __call__(self, block: str | None):
        """(logits, block output or None) of the model as it is now, on ``images``."""
        b = self.index(block)
        if b is None:
            return forward_block(self.model, block, self.images)
        x, y = self._input(b), None
        with torch.no_grad():
            for i, blk in enumerate(self.model.blocks[b:]):
                x = blk(x)
                if i == 0:
                    y = x
            logits = self.model.forward_head(self.model.norm(x))
        if b not in self.checked:                                  # once per block: equal to the full forward
            ref_logits, ref_y = forward_block(self.model, block, self.images)
            same = torch.allclose(logits, ref_logits, rtol=1e-5, atol=1e-6) and \
                (y is None or ref_y is None or torch.allclose(y, ref_y, rtol=1e-5, atol=1e-6))
            if not same:
                log(f"suffix forward differs from the full one at {block}: full forwards from now on")
                self.ok = False
                return ref_logits, ref_y
            self.checked.add(b)
        return logits, y
