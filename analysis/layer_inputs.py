"""The data of a run and each quantized layer's regressors, taken from the pipeline itself (Fig. 3)."""

from __future__ import annotations


def load_data(cfg):
    """(FP model, calibration images, held-out images, test set) exactly as ``run_erq`` loads them."""
    from roundlab.pipeline.run import load_run_data

    return load_run_data(cfg)


class LayerInputs(dict):
    """An ``on_layer`` hook of :func:`~roundlab.pipeline.run.erq_quantize` that keeps, per quantized layer (in
    pipeline order), ``Xt``/``Xt_h`` = ``[X̄ | 1]`` (float64) on calibration/held-out images — the regressors Wqer
    builds its ``M`` from (callers check ``Xt[:, S]ᵀ Xt[:, S] / N`` against each problem's ``M``) — and ``kind``."""

    def __call__(self, name, layer, X_in, X_in_heldout) -> None:
        from roundlab.pipeline.aqer import design
        from roundlab.pipeline.stages import quantize_input

        has_bias = layer.bias is not None
        self[name] = {"Xt": design(quantize_input(layer, X_in), has_bias),
                      "Xt_h": None if X_in_heldout is None else design(quantize_input(layer, X_in_heldout), has_bias),
                      "kind": getattr(layer, "kind", "linear")}
