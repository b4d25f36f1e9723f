"""Figs. 5–9: per-layer error-reduction ratios of Aqer, Rounding Refinement, ridge, Wqer and full ERQ (paper Eq. 4).

    python -m analysis.fig5_9_error_reduction                          # full: fmnist-vit, -deit, -swin, W4A4 (1000 test imgs)
    python -m analysis.fig5_9_error_reduction --smoke                  # seconds (tests)
    python -m analysis.fig5_9_error_reduction --models fmnist-vit --wbits 4 --abits 4

One full-ERQ run per model (solver rr, release variant, k = 1) with ``records="full"``, so every layer records the
Eq. 4 error E‖Wx + b − (W̄x̄ + b̄)‖² after each stage, against the FP layer on its FP input, on the calibration images
(and on held-out images: the ``*_heldout`` CSV columns). Ratio = 1 − after/before (roundlab.pipeline.records.RATIOS):

* Fig. 5 Aqer: act_only → aqer (FP weights, quantized input → Aqer weights)
* Fig. 6 Rounding Refinement: rtn_after_aqer → rounding_only (Wqer without ridge)
* Fig. 7 ridge: rtn_after_aqer → ridge_only (Wqer with nearest rounding)
* Fig. 8 Wqer: rtn_after_aqer → wqer
* Fig. 9 ERQ: calib (calibration + RTN) → final (Aqer + Wqer)

Output: figures/fig5_aqer.png … figures/fig9_erq.png and figures/fig5_9_error_reduction.csv (one row per layer).
"""

from __future__ import annotations

import math

from analysis.csvout import write_csv
from analysis.options import parse
from analysis.plots import save_figure, setup_style
from analysis.runs import cached_run

FIGS = [("fig5_aqer", "aqer", "Aqer", "13–17%"),
        ("fig6_rounding", "rounding", "Rounding Refinement", "7–11%"),
        ("fig7_ridge", "ridge", "ridge regression (Wqer)", "20–27%"),
        ("fig8_wqer", "wqer", "Wqer (rounding + ridge)", "21–28%"),
        ("fig9_erq", "erq", "ERQ (Aqer + Wqer)", "32–47%")]


def main(argv=None):
    from roundlab.pipeline.records import RecordWriter

    opts, _ = parse(__doc__, argv, full_eval=1000, models="fmnist-vit,fmnist-deit,fmnist-swin")
    rows, cfgs = [], {}
    for model in opts.models:
        cfg = opts.with_model(model).config("erq", records="full", solver="rr")
        cfgs[model] = cfg
        r = cached_run(cfg, opts.runs)
        for i, rec in enumerate(RecordWriter(r["paths"]["records"]).read()):
            row = {"model": model, "index": i, "layer": rec["layer"], "kind": rec["kind"],
                   "n_calib": rec["n_calib"], "top1": 100 * r["quantized"]["top1"]}
            for _, key, _, _ in FIGS:
                row[key] = rec["ratios"].get(key, math.nan)
                row[key + "_heldout"] = rec.get("ratios_heldout", {}).get(key, math.nan)
            rows.append(row)
    cols = ["model", "index", "layer", "kind", "n_calib", "top1"] + \
        [k for _, key, _, _ in FIGS for k in (key, key + "_heldout")]
    write_csv(opts.out / "fig5_9_error_reduction.csv", rows, cols)
    plot(rows, opts.models, cfgs, opts.out)
    return rows


def plot(rows, models, cfgs, out):
    plt = setup_style()
    for name, key, label, paper in FIGS:
        fig, axes = plt.subplots(len(models), 1, figsize=(13, 2.9 * len(models)), squeeze=False)
        for ax, model in zip(axes[:, 0], models):
            rs = [r for r in rows if r["model"] == model and not math.isnan(r[key])]
            vals = [100 * r[key] for r in rs]
            held = [100 * r[key + "_heldout"] for r in rs]
            x = list(range(len(rs)))
            ax.bar(x, vals, color=["tab:blue" if v >= 0 else "tab:red" for v in vals], label="calibration images")
            ax.scatter(x, held, marker="_", s=60, color="k", zorder=3, label="held-out images")
            if vals:
                top = max(vals + [h for h in held if h == h])
                ax.set_ylim(top=top + 0.35 * abs(top))          # room for the legend above the bars
                mean = sum(vals) / len(vals)
                ax.axhline(mean, color="tab:orange", lw=1.5, ls="--", label=f"mean {mean:.1f}%")
            ax.set_xticks(x, [r["layer"].replace("blocks.", "b").replace("layers.", "L") for r in rs],
                          rotation=90, fontsize=6)
            ax.set_ylabel("error reduction (%)")
            cfg = cfgs[model]
            ax.set_title(f"{model} W{cfg.wbits}A{cfg.abits}, {cfg.calib_images} calib imgs, rr (release, k=1), "
                         f"λ={cfg.lam:g}")
            ax.legend(loc="upper left", ncol=3, fontsize=7)
        axes[-1, 0].set_xlabel("layer (in network order)")
        fig.suptitle(f"{name.split('_')[0].replace('fig', 'Fig. ')} — per-layer reduction of the Eq. 4 output error "
                     f"by {label} (1 − after/before); paper (ImageNet ViTs/DeiTs): {paper} on average", fontsize=10)
        save_figure(fig, out, name)


if __name__ == "__main__":
    main()
