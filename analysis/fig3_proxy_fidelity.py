"""Fig. 3: how faithful is ERQ's proxy δ(μμᵀ + Σ)δᵀ to the loss E‖δ x̄ˢ‖² it stands for?

    python -m analysis.fig3_proxy_fidelity            # full: fmnist-vit W4A4, every layer, 32 calib / 32 held-out
    python -m analysis.fig3_proxy_fidelity --smoke    # seconds (tests)
    python -m analysis.fig3_proxy_fidelity --few-images 2 --downstream-images 512
    python -m analysis.fig3_proxy_fidelity --layers blocks.0.attn.qkv,blocks.5.mlp.fc2   # a subset of layers

Cost (full mode, measured): ~6 min on one core (346 s wall, 335 s compute: 96% downstream forwards, 2% the 10
candidates of all 137 segments with d ≥ 2, the rest ERQ + layer inputs); the downstream forwards start at the layer's
block (:class:`Suffix`, checked equal to a full forward), which halved it from 748 s.

Full ERQ (rr release, k = 1, λ = 1e4) is run with an ``on_problem`` hook that keeps every Wqer segment's
RoundingProblem (its weights, grid and M) and the chosen δ. Each segment's samples X̄ˢ (= [X̄ | 1][:, S]) are rebuilt
by :func:`analysis.common.layer_inputs` and checked against M (max relative difference reported in the CSV).
Candidate roundings per segment: nearest, the pipeline's rr answer, rr (paper variant), greedy, GPTQ, AdaRound, and
nearest with random flips (5/15/30/50% of the free elements). For every output row and candidate:

* in-sample: proxy with the biased (1/N) covariance against E on the same calibration samples — an identity (ERQ_SPEC
  §11), slope 1 — and with the unbiased (1/(N−1)) covariance (the release's torch.cov): slope ≤ N/(N−1);
* held-out: proxy (calibration M) against E on the held-out images' inputs;
* fewer samples: proxy from the first ``--few-images`` calibration images against E on all calibration images;
* downstream: per segment (steps 0–1 of every linear layer, ``--downstream-steps``) each candidate is written into
  the quantized model and the block output MSE against the FP model and KL(FP ‖ Q) of the logits are measured on
  ``--downstream-images`` test images (512); x = proxy summed over the segment's rows.

Every linear layer (the 24 block layers and the head; the patch-embed conv has no rounding step) and every Wqer
segment of it are used; 10 candidates per segment; the title and CSV say so (``layers``, ``candidates``,
``downstream_segments``, ``compute_s``).

Pearson and Spearman are reported per regime, pooled over all points (scale spans orders of magnitude, so pooled
numbers mostly measure that) and "within row" (mean over rows of the Spearman across the candidates: does the proxy
rank a row's candidates like the true loss does?). Output: figures/fig3_proxy_fidelity.{png,csv} and
figures/fig3_proxy_fidelity_points.csv (a 5,000-point sample of the scatter).
"""

from __future__ import annotations

import math
import time

import torch

from analysis import common

FLIPS = (0.05, 0.15, 0.30, 0.50)


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


def block_of(model, name: str):
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
    """(logits, block output or None) on ``images``."""
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


class Suffix:
    """Downstream forwards that start at the layer's block: (logits, block output) from the block's cached input.

    On a timm ViT/DeiT (``blocks`` a Sequential, ``norm``, ``forward_head``) the input of ``blocks[b]`` does not
    depend on any layer inside blocks ≥ b, so it is captured once per block (quantized model in its final state) and
    each candidate runs ``blocks[b:]`` → ``norm`` → ``forward_head`` only: the same numbers as a full forward
    (checked on first use per block, else every forward is a full one), at ~60% of the cost on average.
    ``b = len(blocks)`` (the head): the input of ``norm``."""

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
                common.log(f"suffix forward differs from the full one at {block}: full forwards from now on")
                self.ok = False
                return ref_logits, ref_y
            self.checked.add(b)
        return logits, y


def kl(ref: torch.Tensor, logits: torch.Tensor) -> float:
    lp, lq = ref.log_softmax(-1), logits.log_softmax(-1)
    return float((lp.exp() * (lp - lq)).sum(-1).mean())


def compute(args, cfg) -> dict:
    from roundlab.pipeline.run import erq_quantize
    from roundlab.problem import proxy_matrix

    model, calib, heldout, test = common.load_data(cfg)
    inputs = common.layer_inputs(model, calib, heldout, cfg)
    names = list(inputs)
    captured = []
    state = {"layer": -1}

    def hook(layer, step, problem, result, S):
        if step == 0:
            state["layer"] += 1
        captured.append((state["layer"], step, problem, result.delta.clone(), S[0].clone()))

    common.log("ERQ with problem capture")
    qmodel, _ = erq_quantize(model, calib, cfg, heldout, on_problem=hook)
    assert state["layer"] == len(names) - 1, (state["layer"], len(names))

    tokens = inputs[names[-2]]["Xt"].shape[0] // cfg.calib_images       # tokens per image (a transformer layer)
    n_few = args.few_images * tokens
    linear = [i for i, n in enumerate(names) if inputs[n]["kind"] != "patch_embed"]
    if args.smoke:
        linear = linear[:2]
    if args.layers:
        unknown = sorted(set(args.layers) - set(names))
        if unknown:
            raise SystemExit(f"unknown layer(s) {unknown}; known: {names}")
        linear = [i for i in linear if names[i] in args.layers]
    timing = {"candidates_s": 0.0, "downstream_s": 0.0}
    pts = {k: [] for k in ("layer", "step", "cand", "proxy_b", "proxy_u", "E_in", "E_heldout", "proxy_few",
                           "N")}
    within = {"in-sample": [], "in-sample unbiased": [], "held-out": [], "few samples": []}
    max_m_err = 0.0
    down = []
    imgs = test.images_at(range(min(args.downstream_images, len(test))))
    fp_cache = {}
    suffix = Suffix(qmodel, imgs)
    for li, step, problem, chosen, S in captured:
        if li not in linear or problem.d < 2 or (args.smoke and step > 1):
            continue
        name = names[li]
        Xt, Xt_h = inputs[name]["Xt"], inputs[name]["Xt_h"]
        Xs, Xs_h = Xt[:, S], Xt_h[:, S]
        N = Xs.shape[0]
        M = Xs.T @ Xs / N
        max_m_err = max(max_m_err, float((M - problem.M.cpu()).abs().max() / problem.M.abs().max()))
        P_u = proxy_matrix(Xs, "unbiased")
        Xf = Xs[:n_few]
        M_few = Xf.T @ Xf / Xf.shape[0]
        t0 = time.perf_counter()
        cands = candidates(problem, chosen, args.smoke, seed=1000 * li + step)
        timing["candidates_s"] += time.perf_counter() - t0
        common.log(f"{name} step {step} d={problem.d} R={problem.rows}: candidates {time.perf_counter() - t0:.2f}s")
        vals = {}
        for ci, (cname, delta) in enumerate(cands.items()):
            delta = delta.cpu()
            v = {"proxy_b": problem.objective(delta).cpu(), "proxy_u": ((delta @ P_u) * delta).sum(1),
                 "E_in": row_loss(delta, Xs), "E_heldout": row_loss(delta, Xs_h),
                 "proxy_few": ((delta @ M_few) * delta).sum(1)}
            vals[cname] = v
            R = delta.shape[0]
            for k, t in v.items():
                pts[k].append(t)
            pts["layer"].append(torch.full((R,), li))
            pts["step"].append(torch.full((R,), step))
            pts["cand"].append(torch.full((R,), ci))
            pts["N"].append(torch.full((R,), N))
        stack = {k: torch.stack([vals[c][k] for c in cands], 1) for k in vals["nearest"]}   # (R, C)
        within["in-sample"].append(_row_spearman(stack["proxy_b"], stack["E_in"]))
        within["in-sample unbiased"].append(_row_spearman(stack["proxy_u"], stack["E_in"]))
        within["held-out"].append(_row_spearman(stack["proxy_b"], stack["E_heldout"]))
        within["few samples"].append(_row_spearman(stack["proxy_few"], stack["E_in"]))

        if step < args.downstream_steps:
            t0 = time.perf_counter()
            layer = dict(__import__("roundlab.quant", fromlist=["quant_layers"]).quant_layers(qmodel))[name]
            block = block_of(qmodel, name)
            if block not in fp_cache:
                fp_cache[block] = forward_block(model, block, imgs)
            ref_logits, ref_y = fp_cache[block]
            W_keep = layer.weight.detach().clone()
            for cname, delta in cands.items():
                with torch.no_grad():
                    layer.weight[:, S] = problem.quantized(delta.to(problem.device)).to(layer.weight)
                logits, y = suffix(block)
                down.append({"layer": name, "step": step, "cand": cname,
                             "proxy_sum": float(vals[cname]["proxy_b"].sum()),
                             "E_sum": float(vals[cname]["E_in"].sum()),
                             "block_mse": float(((y - ref_y) ** 2).mean()) if y is not None else math.nan,
                             "kl": kl(ref_logits, logits)})
            with torch.no_grad():
                layer.weight.copy_(W_keep)
            timing["downstream_s"] += time.perf_counter() - t0
            common.log(f"{name} step {step}: downstream {time.perf_counter() - t0:.2f}s")
    data = {k: torch.cat(v) for k, v in pts.items()}
    data["within"] = {k: torch.cat(v) for k, v in within.items()}
    data["cand_names"] = list(cands)
    data["down"] = down
    data["max_m_err"] = max_m_err
    data["n_few"] = n_few
    data["names"] = names
    data["layers_used"] = [names[i] for i in linear]
    data["timing"] = timing
    return data


def _row_spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per row Spearman between two (R, C) tensors (ties broken by order); NaN where a row is constant."""
    ra = a.argsort(1).argsort(1).double()
    rb = b.argsort(1).argsort(1).double()
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    den = ra.norm(dim=1) * rb.norm(dim=1)
    const = (a.max(1).values - a.min(1).values <= 1e-15 * a.abs().max(1).values.clamp_min(1e-300)) | \
        (b.max(1).values - b.min(1).values <= 1e-15 * b.abs().max(1).values.clamp_min(1e-300))
    r = (ra * rb).sum(1) / den
    return torch.where(const, torch.full_like(r, math.nan), r)


REGIMES = [  # (name, x key, y key, description, within-row key)
    ("in-sample, biased cov (1/N)", "proxy_b", "E_in", "identity: slope 1", "in-sample"),
    ("in-sample, unbiased cov (1/(N−1))", "proxy_u", "E_in", "slope ≤ N/(N−1)", "in-sample unbiased"),
    ("held-out images", "proxy_b", "E_heldout", "proxy on calib, E on held-out", "held-out"),
    ("fewer samples", "proxy_few", "E_in", "proxy from few images, E on all calib", "few samples"),
]


def main(argv=None):
    p = common.parser(__doc__)
    p.add_argument("--few-images", type=int, default=None, help="images behind the 'fewer samples' proxy (4; smoke 1)")
    p.add_argument("--downstream-images", type=int, default=None, help="test images for block MSE/KL (512; smoke 32)")
    p.add_argument("--downstream-steps", type=int, default=2, help="Wqer steps per layer measured downstream")
    p.add_argument("--layers", default=None, help="comma-separated layer names")
    args = common.finish_args(p.parse_args(argv))
    args.layers = args.layers.split(",") if args.layers else None
    args.few_images = args.few_images or (1 if args.smoke else 4)
    args.downstream_images = args.downstream_images or (32 if args.smoke else 512)
    cfg = common.config(args, "erq", solver="rr")
    cache = args.runs / f"fig3-{cfg.model}-W{cfg.wbits}A{cfg.abits}-{cfg.digest()}-f{args.few_images}" \
                        f"-d{args.downstream_images}x{args.downstream_steps}{'-smoke' if args.smoke else ''}.pt"
    if args.layers:
        import hashlib

        cache = cache.with_name(cache.stem + "-L" + hashlib.sha1(",".join(args.layers).encode()).hexdigest()[:8] +
                                cache.suffix)
    data = None
    if cache.exists():
        try:    # never unpickle code from the run tree: tensors and plain values only
            data = torch.load(cache, weights_only=True)
        except Exception as e:  # damaged, foreign or crafted: recomputed and replaced
            common.log(f"ignoring the cache {cache.name} ({type(e).__name__}); recomputing")
    if data is None:
        t0 = time.perf_counter()
        data = compute(args, cfg)
        data["timing"]["compute_s"] = time.perf_counter() - t0
        common.log(f"computed in {data['timing']['compute_s']:.0f}s: {data['timing']}")
        torch.save(data, cache)

    rows = []
    for name, xk, yk, desc, wkey in REGIMES:
        x, y = data[xk], data[yk]
        ok = (x > 0) & (y > 0)
        ratio = (x[ok] / y[ok])
        w = data["within"].get(wkey)
        rows.append({"regime": name, "x": xk, "y": yk, "points": int(ok.sum()),
                     "pearson": common.pearson(x, y), "spearman": common.spearman(x, y),
                     "pearson_log": common.pearson(x[ok].log(), y[ok].log()),
                     "within_row_spearman_mean": float(w[~w.isnan()].mean()) if w is not None else math.nan,
                     "ratio_min": float(ratio.min()), "ratio_median": float(ratio.median()),
                     "ratio_max": float(ratio.max()), "N_min": int(data["N"].min()),
                     "note": desc})
    down = data["down"]
    for key, label in (("block_mse", "downstream: block output MSE"), ("kl", "downstream: logits KL(FP‖Q)")):
        d = [r for r in down if not math.isnan(r[key])]
        xs = torch.tensor([r["proxy_sum"] for r in d], dtype=torch.float64)
        ys = torch.tensor([r[key] for r in d], dtype=torch.float64)
        seg = {}
        for r in d:
            seg.setdefault((r["layer"], r["step"]), []).append((r["proxy_sum"], r[key]))
        per = [common.spearman([a for a, _ in v], [b for _, b in v]) for v in seg.values() if len(v) > 2]
        per = [v for v in per if not math.isnan(v)]
        rows.append({"regime": label, "x": "proxy (segment sum)", "y": key, "points": len(d),
                     "pearson": common.pearson(xs, ys), "spearman": common.spearman(xs, ys),
                     "pearson_log": math.nan,
                     "within_row_spearman_mean": sum(per) / len(per) if per else math.nan,
                     "note": f"within = mean per-segment Spearman over {len(per)} segments "
                             f"({args.downstream_images} test imgs)"})
    used = data.get("layers_used", [])
    segs = len({(r["layer"], r["step"]) for r in down})
    for r in rows:
        r.update(max_rel_M_mismatch=data["max_m_err"], model=cfg.model, wbits=cfg.wbits, abits=cfg.abits,
                 calib_images=cfg.calib_images, heldout_images=cfg.heldout_images, few_images=args.few_images,
                 solver="rr release k=1", lam=cfg.lam, layers=len(used), candidates_per_segment=len(data["cand_names"]),
                 candidates=" | ".join(data["cand_names"]), downstream_segments=segs,
                 downstream_images=args.downstream_images, compute_s=data.get("timing", {}).get("compute_s"))
    cols = ["regime", "x", "y", "points", "pearson", "spearman", "pearson_log", "within_row_spearman_mean",
            "ratio_min", "ratio_median", "ratio_max", "N_min", "note", "max_rel_M_mismatch", "model", "wbits",
            "abits", "solver", "lam", "calib_images", "heldout_images", "few_images", "layers",
            "candidates_per_segment", "candidates", "downstream_segments", "downstream_images", "compute_s"]
    common.write_csv(args.out / "fig3_proxy_fidelity.csv", rows, cols)
    g = torch.Generator().manual_seed(0)
    n = len(data["proxy_b"])
    idx = torch.randperm(n, generator=g)[:5000]
    names = data["names"]
    common.write_csv(args.out / "fig3_proxy_fidelity_points.csv",
                     [{"layer": names[int(data["layer"][i])], "step": int(data["step"][i]),
                       "candidate": data["cand_names"][int(data["cand"][i])],
                       **{k: float(data[k][i]) for k in ("proxy_b", "proxy_u", "E_in", "E_heldout", "proxy_few")}}
                      for i in idx.tolist()])
    plot(data, rows, args, cfg)
    return rows


def plot(data, rows, args, cfg):
    plt = common.setup_style()
    fig, axes = plt.subplots(2, 3, figsize=(15, 9))
    g = torch.Generator().manual_seed(1)
    n = len(data["proxy_b"])
    idx = torch.randperm(n, generator=g)[:20000]
    cand = data["cand"][idx]
    cmap = plt.cm.tab10
    N = int(data["N"].min())
    for ax, (name, xk, yk, desc, _), st in zip(axes.flat[:4], REGIMES, rows[:4]):
        x, y = data[xk][idx], data[yk][idx]
        ok = (x > 0) & (y > 0)
        for ci, cname in enumerate(data["cand_names"]):
            m = ok & (cand == ci)
            ax.scatter(y[m], x[m], s=3, alpha=0.4, color=cmap(ci % 10), label=cname, rasterized=True)
        lo, hi = float(torch.minimum(x[ok], y[ok]).min()), float(torch.maximum(x[ok], y[ok]).max())
        ax.plot([lo, hi], [lo, hi], "k-", lw=1, label="y = x")
        if xk == "proxy_u":
            ax.plot([lo, hi], [lo * N / (N - 1), hi * N / (N - 1)], "r--", lw=1, label=f"y = N/(N−1)·x, N={N}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"true E‖δx̄ˢ‖² ({'held-out images' if yk == 'E_heldout' else 'calibration samples'})"
                      " [output MSE units]")
        ax.set_ylabel("proxy δ(μμᵀ+Σ)δᵀ" + (" from few images" if xk == "proxy_few" else "") +
                      " [output MSE units]")
        ax.set_title(f"{name}: {desc}\nPearson {st['pearson']:.4f}, Spearman {st['spearman']:.4f}, "
                     f"within-row Spearman {st['within_row_spearman_mean']:.3f}\n"
                     f"proxy/E ∈ [{st['ratio_min']:.4g}, {st['ratio_max']:.4g}]", fontsize=8)
        if xk == "proxy_b" and yk == "E_in":
            ax.legend(fontsize=6, markerscale=3, ncol=2, loc="upper left", title="candidate (colour)",
                      title_fontsize=6)
        else:
            lines = [h for h in ax.get_lines()]
            ax.legend(lines, [h.get_label() for h in lines], fontsize=7, loc="upper left")
    down = data["down"]
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter

    ci_of = {c: i for i, c in enumerate(data["cand_names"])}
    for ax, key, label, st in ((axes.flat[4], "block_mse", "block output MSE vs FP", rows[4]),
                               (axes.flat[5], "kl", "logits KL(FP ‖ Q)", rows[5])):
        segs = {}
        for r in down:
            if not math.isnan(r[key]):
                segs.setdefault((r["layer"], r["step"]), []).append(r)
        pts = {c: ([], []) for c in data["cand_names"]}
        for rs in segs.values():
            near = next(r for r in rs if r["cand"] == "nearest")
            for r in rs:
                pts[r["cand"]][0].append(r["proxy_sum"] / near["proxy_sum"])
                pts[r["cand"]][1].append(100 * (r[key] - near[key]) / near[key])
        for c, (xs, ys) in pts.items():
            if c != "nearest":                                   # nearest is the origin (1, 0) of every segment
                ax.scatter(xs, ys, s=9, alpha=0.65, color=cmap(ci_of[c] % 10), label=c)
        ax.axhline(0, color="k", lw=0.8)
        ax.axvline(1, color="k", lw=0.8, label="round-to-nearest (1, 0)")
        ax.set_xscale("log")
        allx = [v for xs, _ in pts.values() for v in xs] or [1.0]
        ticks = [t for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)
                 if min(allx) / 1.5 <= t <= max(allx) * 1.5]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=6, ncol=2, loc="upper left", title="candidate (colour)", title_fontsize=6)
        ax.set_xlabel("segment proxy Σ_rows δMδᵀ, relative to round-to-nearest (ratio, log scale)")
        ax.set_ylabel(f"relative change in {label}\nagainst round-to-nearest (%)")
        ax.set_title(f"downstream: {label}\npooled raw Pearson {st['pearson']:.3f}, Spearman {st['spearman']:.3f}; "
                     f"mean per-segment Spearman {st['within_row_spearman_mean']:.3f}\n"
                     f"({len(segs)} segments × {len(data['cand_names']) - 1} candidates, "
                     f"{args.downstream_images} test imgs)", fontsize=8)
    used = data.get("layers_used", [])
    n_lin = sum(1 for n in data["names"] if n != data["names"][0])
    which = "every linear layer" if len(used) == n_lin else f"{len(used)} of {n_lin} linear layers"
    segs = len({(r["layer"], r["step"]) for r in down})
    fig.suptitle(f"Fig. 3 — proxy fidelity. Full ERQ (rr release k=1, λ={cfg.lam:g}), {cfg.model} W{cfg.wbits}A{cfg.abits}, "
                 f"{cfg.calib_images} calib / {cfg.heldout_images} held-out imgs, few = {args.few_images} img(s); "
                 f"{which} ({len(data['proxy_b'])} row points)\n{len(data['cand_names'])} candidate roundings per "
                 f"Wqer segment: {', '.join(data['cand_names'])}; downstream: first {args.downstream_steps} segments "
                 f"per layer ({segs} segments) × {len(data['cand_names'])} candidates on {args.downstream_images} "
                 f"test imgs", fontsize=10)
    common.save_figure(fig, args.out, "fig3_proxy_fidelity")


if __name__ == "__main__":
    main()
