"""Each quantized layer's data for ERQ, streamed into :class:`~roundlab.pipeline.stats.LayerStats` block by block.

``independent`` data flow (the release): one forward pass of the calibrated FP network (quantizers off) feeds every
layer's statistics at once — its input is both the Eq. 4 reference ``X`` and the input ``X_in`` it quantizes.
``sequential``: a layer's statistics are gathered when its turn comes, pairing per batch the FP network's input
(a frozen copy of the calibrated network, quantizers off) with the input of the network quantized so far.
Memory holds statistics (Gram-sized) and less than one block of rows per layer between batches (one copy: in the
independent flow ``X_in`` is ``X``), never the N rows — unless samples are asked for (``keep_samples``). Only the layers given are gathered (a resumed run skips the finished ones).
"""

from __future__ import annotations

import copy

from roundlab.pipeline.capture import run_capturing, stream_inputs
from roundlab.pipeline.stages import add_rows
from roundlab.pipeline.stats import LayerStats, RowBlocks


class LayerData:
    """``take(name)`` → ``(stats on the calibration images, stats on the held-out images or None)``."""

    def __init__(self, qmodel, layers: dict, calib, heldout, data_flow: str, batch_size: int,
                 keep_samples: bool = False):
        """``calib``, ``heldout``: tensors or :class:`~roundlab.data.image_batches.Images` (``heldout`` may be None
        or empty)."""
        from roundlab.data.image_batches import as_images
        from roundlab.quant import set_quant_state

        self.qmodel, self.layers, self.batch_size, self.keep = qmodel, layers, batch_size, keep_samples
        heldout = None if heldout is None else as_images(heldout)
        self.images = {"calib": as_images(calib), "heldout": heldout if heldout is not None and len(heldout) else None}
        self.sequential = data_flow == "sequential"
        self._ready: dict[str, dict] = {name: {} for name in layers}
        set_quant_state(qmodel, weight=False, act=False)
        if self.sequential:
            from roundlab.quant import quant_layers

            self.fp_model = copy.deepcopy(qmodel)
            self.fp_layers = dict(quant_layers(self.fp_model))
        elif layers:
            for part, images in self.images.items():
                if images is not None:
                    self._independent(part, images)

    def _blocks(self, name: str, stats: LayerStats) -> RowBlocks:
        return RowBlocks(lambda X, X_in: add_rows(stats, self.layers[name], X, X_in))

    def _independent(self, part: str, images) -> None:
        stats = {name: LayerStats(self.keep) for name in self.layers}
        blocks = {name: self._blocks(name, st) for name, st in stats.items()}
        stream_inputs(self.qmodel, images, self.layers, lambda name, X: blocks[name].add(X, X),
                      batch_size=self.batch_size)
        for name, st in stats.items():
            blocks[name].flush()
            self._ready[name][part] = st

    def _sequential(self, name: str, images) -> LayerStats:
        from roundlab.quant import set_quant_state

        layer, fp_layer, bs = self.layers[name], self.fp_layers[name], self.batch_size
        stats = LayerStats(self.keep)
        blocks = self._blocks(name, stats)
        for batch in images.batches(bs):
            X = run_capturing(self.fp_model, batch, {name: fp_layer}, stop_after=name, batch_size=bs)[name]
            set_quant_state(self.qmodel, weight=True, act=True)
            X_in = run_capturing(self.qmodel, batch, {name: layer}, stop_after=name, batch_size=bs)[name]
            set_quant_state(self.qmodel, weight=False, act=False)
            blocks.add(X, X_in)
        blocks.flush()
        return stats

    def take(self, name: str) -> tuple[LayerStats, LayerStats | None]:
        """The layer's statistics (gathered now in the sequential flow); they are released here."""
        parts = self._ready.pop(name)
        if self.sequential:
            return tuple(None if images is None else self._sequential(name, images)
                         for images in self.images.values())
        return parts["calib"], parts.get("heldout")
