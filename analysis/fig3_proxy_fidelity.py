"""Fig. 3: how faithful is ERQ's proxy δ(μμᵀ + Σ)δᵀ to the loss E‖δ x̄ˢ‖² it stands for?

    python -m analysis.fig3_proxy_fidelity            # full: fmnist-vit W4A4, every layer, 32 calib / 32 held-out
    python -m analysis.fig3_proxy_fidelity --smoke    # seconds (tests)
    python -m analysis.fig3_proxy_fidelity --few-images 2 --downstream-images 512
    python -m analysis.fig3_proxy_fidelity --layers blocks.0.attn.qkv,blocks.5.mlp.fc2   # a subset of layers

Full ERQ (rr release, k = 1, λ = 1e4) is run with an ``on_problem`` hook that keeps every Wqer segment's
RoundingProblem (its weights, grid and M) and the chosen δ, and an ``on_layer`` hook
(:class:`analysis.layer_inputs.LayerInputs`) that keeps each layer's regressors; a segment's samples
X̄ˢ (= [X̄ | 1][:, S]) are checked against its M (max relative difference reported in the CSV).
Candidate roundings per segment: nearest, the pipeline's rr answer, rr (paper variant), greedy, GPTQ, AdaRound, and
nearest with random flips (5/15/30/50% of the free elements). For every output row and candidate:

* in-sample: proxy with the biased (1/N) covariance against E on the same calibration samples — an identity (ERQ_SPEC
  §11), slope 1 — and with the unbiased (1/(N−1)) covariance (the release's torch.cov): slope ≤ N/(N−1);
* held-out: proxy (calibration M) against E on the held-out images' inputs;
* fewer samples: proxy from the first ``--few-images`` calibration images against E on all calibration images;
* downstream: per segment (steps 0–1 of every linear layer, ``--downstream-steps``) each candidate is written into
  the quantized model and the block output MSE against the FP model and KL(FP ‖ Q) of the logits are measured on
  ``--downstream-images`` test images (512); x = proxy summed over the segment's rows. The forwards start at the
  layer's block (:class:`analysis.forwards.Suffix`, checked equal to a full forward).

Every linear layer (the 24 block layers and the head; the patch-embed conv has no rounding step) and every Wqer
segment of it are used; 10 candidates per segment; the title and CSV say so (``layers``, ``candidates``,
``downstream_segments``, ``compute_s``).

Pearson and Spearman are reported per regime, pooled over all points (scale spans orders of magnitude, so pooled
numbers mostly measure that) and "within row" (mean over rows of the Spearman across the candidates: does the proxy
rank a row's candidates like the true loss does?). Output: figures/fig3_proxy_fidelity.{png,csv} and
figures/fig3_proxy_fidelity_points.csv (a 5,000-point sample of the scatter).
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import torch

from analysis import stats
from analysis.csvout import write_csv
from analysis.fig3_measure import KEYS, REGIMES, Settings, compute
from analysis.fig3_plot import by_segment, plot
from analysis.log import log
from analysis.options import Options, parse

DOWNSTREAM = (("block_mse", "downstream: block output MSE"), ("kl", "downstream: logits KL(FP‖Q)"))

COLUMNS = ["regime", "x", "y", "points", "pearson", "spearman", "pearson_log", "within_row_spearman_mean",
           "ratio_min", "ratio_median", "ratio_max", "N_min", "note", "max_rel_M_mismatch", "model", "wbits",
           "abits", "solver", "lam", "calib_images", "heldout_images", "few_images", "layers",
           "candidates_per_segment", "candidates", "downstream_segments", "downstream_images", "compute_s"]


def parse_settings(argv) -> tuple[Options, Settings]:
    def flags(p):
        p.add_argument("--few-images", type=int, default=None,
                       help="images behind the 'fewer samples' proxy (4; smoke 1)")
        p.add_argument("--downstream-images", type=int, default=None,
                       help="test images for block MSE/KL (512; smoke 32)")
        p.add_argument("--downstream-steps", type=int, default=2, help="Wqer steps per layer measured downstream")
        p.add_argument("--layers", default=None, help="comma-separated layer names")

    opts, ns = parse(__doc__, argv, extra=flags)
    return opts, Settings(few_images=ns.few_images or (1 if opts.smoke else 4),
                          downstream_images=ns.downstream_images or (32 if opts.smoke else 512),
                          downstream_steps=ns.downstream_steps,
                          layers=tuple(ns.layers.split(",")) if ns.layers else None)


def cache_path(opts: Options, st: Settings, cfg) -> Path:
    path = opts.runs / f"fig3-{cfg.model}-W{cfg.wbits}A{cfg.abits}-{cfg.digest()}-f{st.few_images}" \
                       f"-d{st.downstream_images}x{st.downstream_steps}{'-smoke' if opts.smoke else ''}.pt"
    if st.layers:
        path = path.with_name(path.stem + "-L" + hashlib.sha1(",".join(st.layers).encode()).hexdigest()[:8] +
                              path.suffix)
    return path


def measurements(opts: Options, st: Settings, cfg) -> dict:
    """The figure's measurements from the run cache, else computed and cached."""
    path = cache_path(opts, st, cfg)
    if path.exists():
        try:    # never unpickle code from the run tree: tensors and plain values only
            return torch.load(path, weights_only=True)
        except Exception as e:  # damaged, foreign or crafted: recomputed and replaced
            log(f"ignoring the cache {path.name} ({type(e).__name__}); recomputing")
    t0 = time.perf_counter()
    data = compute(cfg, st, opts.smoke)
    data["timing"]["compute_s"] = time.perf_counter() - t0
    log(f"computed in {data['timing']['compute_s']:.0f}s: {data['timing']}")
    torch.save(data, path)
    return data


def regime_rows(data: dict) -> list[dict]:
    """Per sample regime: pooled correlations, mean within-row Spearman, the range of proxy / E."""
    rows = []
    for name, xk, yk, desc, wkey in REGIMES:
        x, y = data[xk], data[yk]
        ok = (x > 0) & (y > 0)
        ratio = x[ok] / y[ok]
        w = data["within"].get(wkey)
        rows.append({"regime": name, "x": xk, "y": yk, "points": int(ok.sum()),
                     "pearson": stats.pearson(x, y), "spearman": stats.spearman(x, y),
                     "pearson_log": stats.pearson(x[ok].log(), y[ok].log()),
                     "within_row_spearman_mean": float(w[~w.isnan()].mean()) if w is not None else math.nan,
                     "ratio_min": float(ratio.min()), "ratio_median": float(ratio.median()),
                     "ratio_max": float(ratio.max()), "N_min": int(data["N"].min()), "note": desc})
    return rows


def downstream_rows(data: dict, st: Settings) -> list[dict]:
    """Per downstream measure: pooled correlations with the segment proxy, mean per-segment Spearman."""
    rows = []
    for key, label in DOWNSTREAM:
        segs = by_segment(data["down"], key)
        d = [r for rs in segs.values() for r in rs]
        xs = torch.tensor([r["proxy_sum"] for r in d], dtype=torch.float64)
        ys = torch.tensor([r[key] for r in d], dtype=torch.float64)
        per = [stats.spearman([r["proxy_sum"] for r in v], [r[key] for r in v]) for v in segs.values() if len(v) > 2]
        per = [v for v in per if not math.isnan(v)]
        rows.append({"regime": label, "x": "proxy (segment sum)", "y": key, "points": len(d),
                     "pearson": stats.pearson(xs, ys), "spearman": stats.spearman(xs, ys), "pearson_log": math.nan,
                     "within_row_spearman_mean": sum(per) / len(per) if per else math.nan,
                     "note": f"within = mean per-segment Spearman over {len(per)} segments "
                             f"({st.downstream_images} test imgs)"})
    return rows


def describe_run(data: dict, st: Settings, cfg) -> dict:
    """The columns every row shares: the run, the layers, candidates and segments measured, the compute time."""
    return {"max_rel_M_mismatch": data["max_m_err"], "model": cfg.model, "wbits": cfg.wbits, "abits": cfg.abits,
            "calib_images": cfg.calib_images, "heldout_images": cfg.heldout_images, "few_images": st.few_images,
            "solver": "rr release k=1", "lam": cfg.lam, "layers": len(data.get("layers_used", [])),
            "candidates_per_segment": len(data["cand_names"]), "candidates": " | ".join(data["cand_names"]),
            "downstream_segments": len({(r["layer"], r["step"]) for r in data["down"]}),
            "downstream_images": st.downstream_images, "compute_s": data.get("timing", {}).get("compute_s")}


def write_points(path: Path, data: dict, n: int = 5000) -> None:
    """A seeded sample of ``n`` scatter points."""
    idx = torch.randperm(len(data["proxy_b"]), generator=torch.Generator().manual_seed(0))[:n]
    names = data["names"]
    write_csv(path, [{"layer": names[int(data["layer"][i])], "step": int(data["step"][i]),
                      "candidate": data["cand_names"][int(data["cand"][i])],
                      **{k: float(data[k][i]) for k in KEYS}} for i in idx.tolist()])


def main(argv=None):
    opts, st = parse_settings(argv)
    cfg = opts.config("erq", solver="rr")
    data = measurements(opts, st, cfg)
    rows = regime_rows(data) + downstream_rows(data, st)
    shared = describe_run(data, st, cfg)
    for r in rows:
        r.update(shared)
    write_csv(opts.out / "fig3_proxy_fidelity.csv", rows, COLUMNS)
    write_points(opts.out / "fig3_proxy_fidelity_points.csv", data)
    plot(data, rows, st, cfg, opts.out)
    return rows


if __name__ == "__main__":
    main()
