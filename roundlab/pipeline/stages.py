"""One layer through the ERQ stages: Eq. 4 errors before/after, Aqer, weight-quantizer calibration, Wqer.

The layer's data arrive as streamed statistics (:class:`~roundlab.pipeline.stats.LayerStats`), fed block by block by
:func:`add_rows` with ``X`` the FP network's input to the layer (the Eq. 4 reference) and ``X_in`` the input the
layer actually sees (``X`` in the ``independent`` data flow; the partially quantized network's in ``sequential``),
quantized by the layer's own activation quantizer. Nothing here knows which solver runs.
"""

from __future__ import annotations

import functools
import time

import torch

from roundlab.pipeline.aqer import aqer_update, stack_theta
from roundlab.pipeline.config import ERQConfig
from roundlab.pipeline.lam import aqer_constant, wqer_constant
from roundlab.pipeline.records import reduction_ratios
from roundlab.pipeline.stats import LayerStats
from roundlab.pipeline.wqer import wqer
from roundlab.threads import fixed_threads

ROUNDING_KINDS = {"all": None, "qkv_fc1": {"qkv", "fc1"}}


def quantize_input(layer, X: torch.Tensor) -> torch.Tensor:
    """``X̄ = Q_a(X)`` with the layer's calibrated input quantizer (the patch-embed conv's input stays FP)."""
    aq = getattr(layer, "act_quantizer", None)
    if aq is None:
        return X
    with torch.no_grad():
        return aq(X)


def layer_weights(layer) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The layer's ``(W, b)`` in float64, ``W`` as the (Dout, Din) matrix its input rows multiply."""
    W = layer.weight.detach().reshape(layer.weight.shape[0], -1).to(torch.float64)
    return W, (None if layer.bias is None else layer.bias.detach().to(torch.float64))


def add_rows(stats: LayerStats, layer, X: torch.Tensor, X_in: torch.Tensor) -> None:
    """A block of rows: ``X`` the FP network's input (Eq. 4 reference), ``X_in`` the input the layer sees (quantized
    here by its own input quantizer). Summed with one thread (:func:`roundlab.threads.fixed_threads`): the statistics
    are persisted numbers."""
    with fixed_threads(1):
        W0, b0 = layer_weights(layer)
        stats.add_rows(W0, b0, X, quantize_input(layer, X_in))


def process_layer(name: str, layer, stats: LayerStats, config: ERQConfig, solver,
                  stats_heldout: LayerStats | None = None, on_problem=None) -> tuple[dict, dict]:
    """Run the configured stages on one layer; return (record, state) where state holds the new weights.

    The weight quantizer is left calibrated on the post-Aqer weights; the caller writes ``state`` into the layer.
    ``on_problem(layer, step, problem, result, columns)`` is called for every Wqer segment of the main Wqer pass.
    """
    t0 = time.perf_counter()
    kind = getattr(layer, "kind", "linear")
    wq = layer.weight_quantizer
    W0, b0 = layer_weights(layer)
    theta0 = stack_theta(W0, b0)
    N = stats.N
    weights: dict[str, tuple] = {}

    def rtn(Wx):
        return wq.quantize(Wx.to(layer.weight.dtype)).to(torch.float64)

    weights["act_only"] = (W0, b0)
    wq.calibrate(W0.to(layer.weight.dtype))
    weights["calib"] = (rtn(W0), b0)

    WA, bA = W0, b0
    if config.aqer and kind != "patch_embed":
        lam_a = aqer_constant(config.lam_convention, config.lam, N, kind, config.head_lam)
        WA, bA = aqer_update(stats, theta0, lam_a, b0 is not None)
        weights["aqer"] = (WA, bA)
    wq.calibrate(WA.to(layer.weight.dtype))            # ERQ step 8: weight quantizers see the post-Aqer W
    weights["rtn_after_aqer"] = (rtn(WA), bA)

    wqer_totals = None
    Wf, bf = WA, bA
    if config.wqer:
        res, variants = _run_wqer(name, kind, wq, WA, bA, stats, config, solver, on_problem)
        Wf, bf = res.W, res.b
        wqer_totals = res.totals()
        weights["wqer"] = (Wf, bf)
        weights.update(variants)
    weights["final"] = (rtn(Wf), bf)

    errors = _error_records(weights, theta0, stats, stats_heldout)
    record = {"layer": name, "kind": kind, "shape": list(layer.weight.shape), "n_calib": N,
              "errors": errors.pop("errors"), "ratios": errors.pop("ratios"), "wqer": wqer_totals, **errors}
    record["time_s"] = time.perf_counter() - t0
    state = {"W_aqer": WA, "W": Wf}
    if bA is not None:
        state["b_aqer"], state["b"] = bA, bf
    return record, state


def _run_wqer(name, kind, wq, WA, bA, stats: LayerStats, config: ERQConfig, solver, on_problem):
    """Wqer on the post-Aqer weights with the layer's weight grid; with ``records="full"`` also its two halves on
    their own (rounding only, ridge only: paper Figs. 6-7). Returns the main result and those variants' weights."""
    scale, zero = wq.element_grid()
    scale = torch.as_tensor(scale).reshape(-1, 1) if torch.as_tensor(scale).dim() == 1 else scale
    zero = torch.as_tensor(zero).reshape(-1, 1) if torch.as_tensor(zero).dim() == 1 else zero
    allowed = ROUNDING_KINDS[config.rounding_layers]
    rounding = config.rounding and kind != "patch_embed" and (allowed is None or kind in allowed)
    lam_w = wqer_constant(config.lam_convention, config.lam, stats.N, kind)

    def run(rnd, rdg, hook=None):
        return wqer(WA, bA, stats, scale, zero, wq.bits, solver, lam_w, rounding=rnd, ridge=rdg,
                    partition=config.partition, on_problem=hook)

    res = run(rounding, config.ridge, None if on_problem is None else functools.partial(on_problem, name))
    variants = {}
    if config.records == "full":
        if rounding:
            r = run(True, False)
            variants["rounding_only"] = (r.W, r.b)
        r = run(False, True)
        variants["ridge_only"] = (r.W, r.b)
    return res, variants


def _error_records(weights: dict, theta0: torch.Tensor, stats: LayerStats,
                   stats_heldout: LayerStats | None) -> dict:
    """Eq. 4's output error of every weight variant against the FP layer, with the reduction ratios (Figs. 5-9);
    on the held-out images too when there are any."""
    def errors_on(st: LayerStats) -> dict:
        return {k: st.error(stack_theta(Wk, bk) - theta0) for k, (Wk, bk) in weights.items()}

    errors = errors_on(stats)
    out = {"errors": errors, "ratios": reduction_ratios(errors)}
    if stats_heldout is not None and stats_heldout.N > 0:
        errors_h = errors_on(stats_heldout)
        out["errors_heldout"] = errors_h
        out["ratios_heldout"] = reduction_ratios(errors_h)
    return out
