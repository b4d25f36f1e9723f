"""Fig. 3's measurements: every Wqer segment of a full ERQ run, its candidate roundings, the proxy against the loss
it stands for in four sample regimes, and the candidates' downstream effect (see analysis.fig3_proxy_fidelity)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from analysis.forwards import Suffix, block_of, forward_block, kl
from analysis.layer_inputs import LayerInputs, load_data
from analysis.log import log
from analysis.stats import row_spearman

FLIPS = (0.05, 0.15, 0.30, 0.50)

#: Proxy values (x) and true losses (y) of every (row, candidate) point.
KEYS = ("proxy_b", "proxy_u", "E_in", "E_heldout", "proxy_few")

REGIMES = [  # (name, x key, y key, description, within-row key)
    ("in-sample, biased cov (1/N)", "proxy_b", "E_in", "identity: slope 1", "in-sample"),
    ("in-sample, unbiased cov (1/(N−1))", "proxy_u", "E_in", "slope ≤ N/(N−1)", "in-sample unbiased"),
    ("held-out images", "proxy_b", "E_heldout", "proxy on calib, E on held-out", "held-out"),
    ("fewer samples", "proxy_few", "E_in", "proxy from few images, E on all calib", "few samples"),
]


@dataclass(frozen=True)
class Settings:
    """Fig. 3's own options (see the script's flags)."""

    few_images: int
    downstream_images: int
    downstream_steps: int
    layers: tuple[str, ...] | None


@dataclass
class Segment:
    """One Wqer segment of the run: layer (name, network position), step, problem, chosen δ, columns S."""

    layer: str
    index: int
    step: int
    problem: object
    chosen: torch.Tensor
    S: torch.Tensor


def candidates(problem, chosen: torch.Tensor, smoke: bool, seed: int) -> dict[str, torch.Tensor]:
    from roundlab.solvers import get_solver

    near = problem.nearest()
    out = {"nearest": near, "rr (pipeline)": chosen.to(near)}
    out["rr paper"] = get_solver("rr", variant="paper")(problem).delta
    out["greedy"] = get_solver("greedy")(problem).delta
    out["gptq"] = get_solver("gptq")(problem).delta
    out["adaround"] = get_solver("adaround", iters=20 if smoke else 300)(problem).delta
    g = torch.Generator().manual_seed(seed)
    for p in FLIPS:
        flip = (torch.rand(problem.shape, generator=g, dtype=torch.float64) < p) & problem.free.cpu()
        out[f"flip {int(100 * p)}%"] = torch.where(flip.to(near.device), problem.flipped(near), near)
    return out


def row_loss(delta: torch.Tensor, Xs: torch.Tensor) -> torch.Tensor:
    """(R,) mean over samples of (δ·x̄ₙ)²."""
    e = delta @ Xs.T
    return (e * e).mean(1)


def quantize_capturing(model, calib, heldout, cfg):
    """Full ERQ on ``model``; (quantized model, every layer's regressors, every Wqer segment in pipeline order)."""
    from roundlab.pipeline.run import erq_quantize

    inputs = LayerInputs()
    segments: list[Segment] = []

    def hook(layer, step, problem, result, S):
        segments.append(Segment(layer, list(inputs).index(layer), step, problem, result.delta.clone(),
                                S[0].clone()))

    log("ERQ with problem capture")
    qmodel, _ = erq_quantize(model, calib, cfg, heldout, on_problem=hook, on_layer=inputs)
    missing = set(inputs) - {s.layer for s in segments}
    assert not missing, f"no Wqer segment captured for {sorted(missing)}"
    return qmodel, inputs, segments


def layer_kinds(model, cfg) -> dict[str, str]:
    """Every quantized layer's kind, in pipeline order, from the quantizer surgery alone (nothing calibrated)."""
    import copy

    from roundlab.quant import quant_layers, quantize_model

    qmodel = quantize_model(copy.deepcopy(model), cfg.quant_config())
    return {name: getattr(layer, "kind", "linear") for name, layer in quant_layers(qmodel)}


def used_layers(kinds: dict[str, str], smoke: bool, layers: tuple[str, ...] | None) -> list[str]:
    """The linear layers measured (smoke: the first two; ``layers``: those named)."""
    names = list(kinds)
    used = [n for n in names if kinds[n] != "patch_embed"]
    if smoke:
        used = used[:2]
    if layers:
        unknown = sorted(set(layers) - set(names))
        if unknown:
            raise SystemExit(f"unknown layer(s) {unknown}; known: {names}")
        used = [n for n in used if n in layers]
    return used


class Regimes:
    """Proxy and true loss of every (row, candidate) point, per regime; each segment's within-row Spearman."""

    def __init__(self, n_few: int):
        self.n_few = n_few
        self.points = {k: [] for k in ("layer", "step", "cand") + KEYS + ("N",)}
        self.within = {w: [] for *_, w in REGIMES}
        self.max_m_err = 0.0

    def add(self, seg: Segment, cands: dict[str, torch.Tensor], Xt: torch.Tensor, Xt_h: torch.Tensor) -> dict:
        """Measure ``cands`` of ``seg``; returns {candidate: {key: (R,) values}}."""
        from roundlab.problem import proxy_matrix

        problem = seg.problem
        Xs, Xs_h = Xt[:, seg.S], Xt_h[:, seg.S]
        N = Xs.shape[0]
        M = Xs.T @ Xs / N
        self.max_m_err = max(self.max_m_err, float((M - problem.M.cpu()).abs().max() / problem.M.abs().max()))
        P_u = proxy_matrix(Xs, "unbiased")
        Xf = Xs[:self.n_few]
        M_few = Xf.T @ Xf / Xf.shape[0]
        vals = {}
        for ci, (cname, delta) in enumerate(cands.items()):
            delta = delta.cpu()
            vals[cname] = {"proxy_b": problem.objective(delta).cpu(), "proxy_u": ((delta @ P_u) * delta).sum(1),
                           "E_in": row_loss(delta, Xs), "E_heldout": row_loss(delta, Xs_h),
                           "proxy_few": ((delta @ M_few) * delta).sum(1)}
            R = delta.shape[0]
            for k, t in vals[cname].items():
                self.points[k].append(t)
            for k, v in (("layer", seg.index), ("step", seg.step), ("cand", ci), ("N", N)):
                self.points[k].append(torch.full((R,), v))
        stack = {k: torch.stack([v[k] for v in vals.values()], 1) for k in KEYS}   # (R, C)
        for _, xk, yk, _, wkey in REGIMES:
            self.within[wkey].append(row_spearman(stack[xk], stack[yk]))
        return vals


class Downstream:
    """Each candidate written into the quantized model: block output MSE against the FP model, KL(FP ‖ Q) of the
    logits, on ``images``."""

    def __init__(self, model, qmodel, images: torch.Tensor):
        from roundlab.quant import quant_layers

        self.model, self.qmodel, self.images = model, qmodel, images
        self.layers = dict(quant_layers(qmodel))
        self.suffix = Suffix(qmodel, images)
        self.fp: dict = {}
        self.rows: list[dict] = []

    def add(self, seg: Segment, cands: dict[str, torch.Tensor], vals: dict) -> None:
        problem, layer = seg.problem, self.layers[seg.layer]
        block = block_of(self.qmodel, seg.layer)
        if block not in self.fp:
            self.fp[block] = forward_block(self.model, block, self.images)
        ref_logits, ref_y = self.fp[block]
        W_keep = layer.weight.detach().clone()
        for cname, delta in cands.items():
            with torch.no_grad():
                layer.weight[:, seg.S] = problem.quantized(delta.to(problem.device)).to(layer.weight)
            logits, y = self.suffix(block)
            self.rows.append({"layer": seg.layer, "step": seg.step, "cand": cname,
                              "proxy_sum": float(vals[cname]["proxy_b"].sum()),
                              "E_sum": float(vals[cname]["E_in"].sum()),
                              "block_mse": float(((y - ref_y) ** 2).mean()) if y is not None else math.nan,
                              "kl": kl(ref_logits, logits)})
        with torch.no_grad():
            layer.weight.copy_(W_keep)


def compute(cfg, st: Settings, smoke: bool) -> dict:
    """Every measurement of the figure, as tensors and plain values (cached by the script)."""
    model, calib, heldout, test = load_data(cfg)
    used = used_layers(layer_kinds(model, cfg), smoke, st.layers)          # a bad --layers fails before ERQ runs
    qmodel, inputs, segments = quantize_capturing(model, calib, heldout, cfg)
    names = list(inputs)
    tokens = inputs[names[-2]]["Xt"].shape[0] // cfg.calib_images       # tokens per image (a transformer layer)
    regimes = Regimes(st.few_images * tokens)
    down = Downstream(model, qmodel, test.images_at(range(min(st.downstream_images, len(test)))))
    timing = {"candidates_s": 0.0, "downstream_s": 0.0}
    for seg in segments:
        if seg.layer not in used or seg.problem.d < 2 or (smoke and seg.step > 1):
            continue
        t0 = time.perf_counter()
        cands = candidates(seg.problem, seg.chosen, smoke, seed=1000 * seg.index + seg.step)
        timing["candidates_s"] += time.perf_counter() - t0
        log(f"{seg.layer} step {seg.step} d={seg.problem.d} R={seg.problem.rows}: candidates "
            f"{time.perf_counter() - t0:.2f}s")
        vals = regimes.add(seg, cands, inputs[seg.layer]["Xt"], inputs[seg.layer]["Xt_h"])
        if seg.step < st.downstream_steps:
            t0 = time.perf_counter()
            down.add(seg, cands, vals)
            timing["downstream_s"] += time.perf_counter() - t0
            log(f"{seg.layer} step {seg.step}: downstream {time.perf_counter() - t0:.2f}s")
    data = {k: torch.cat(v) for k, v in regimes.points.items()}
    data.update(within={k: torch.cat(v) for k, v in regimes.within.items()}, cand_names=list(cands),
                down=down.rows, max_m_err=regimes.max_m_err, n_few=regimes.n_few, names=names, layers_used=used,
                timing=timing)
    return data
