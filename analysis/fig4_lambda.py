"""Fig. 4: the ridge constant λ (λ1 = λ2, shared by Aqer and Wqer's ridge, as in the paper's sweep).

    python -m analysis.fig4_lambda                   # full: fmnist-vit W4A4, λ ∈ {1e0 … 1e6}, 5000 test images
    python -m analysis.fig4_lambda --smoke           # seconds (tests)
    python -m analysis.fig4_lambda --lams 1e2,1e3,1e4,1e5 --models fmnist-vit,fmnist-deit

Full ERQ (rr, release variant, k = 1) with ``lam`` in the release convention (``lam_convention="release"``: the
release's ``coe``; roundlab.pipeline.lam maps it onto each stage's absolute constant). The paper finds the best
W4A4 DeiT-S accuracy at λ1 = λ2 = 1e4. Output: figures/fig4_lambda.{png,csv}.
"""

from __future__ import annotations

from analysis.plots import describe, save_figure, setup_style
from analysis.stats import top1_se
from analysis.sweeps import sweep


def main(argv=None):
    s = sweep(__doc__, argv, name="fig4_lambda", option="lams", key="lam", what="λ values",
                     full="1,1e1,1e2,1e3,1e4,1e5,1e6", smoke="1e2,1e4", cast=float,
                     label=lambda lam: f"lam={lam:g}", spec=lambda lam: {"method": "erq", "lam": lam})
    plot(s.rows, s.opts.models, s.cfgs, s.opts.out)
    return s.rows


def plot(rows, models, cfgs, out):
    plt = setup_style()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for model in models:
        rs = [r for r in rows if r["model"] == model]
        axes[0].errorbar([r["lam"] for r in rs], [r["top1"] for r in rs], yerr=[top1_se(r) for r in rs],
                         fmt="o-", capsize=3, label=f"{model}: ERQ (±1 s.e. of {rs[0]['n_eval']} test imgs)")
        axes[1].plot([r["lam"] for r in rs], [r["kl"] for r in rs], "o-", label=model)
        best = max(rs, key=lambda r: r["top1"])
        axes[0].scatter([best["lam"]], [best["top1"]], s=120, facecolors="none", edgecolors="r", zorder=4,
                        label=f"{model}: best top-1 at λ={best['lam']:g}")
        low = min(rs, key=lambda r: r["kl"])
        axes[1].scatter([low["lam"]], [low["kl"]], s=120, facecolors="none", edgecolors="r", zorder=4,
                        label=f"{model}: lowest KL at λ={low['lam']:g}")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("λ1 = λ2 (release convention, log scale)")
        ax.axvline(1e4, color="gray", ls=":", lw=1, label="paper's best (1e4, DeiT-S)")
    axes[0].set_ylabel("top-1 accuracy (%)")
    axes[0].set_title("top-1 vs λ")
    lo, hi = axes[0].get_ylim()                     # headroom for the legend above the error bars
    axes[0].set_ylim(lo, hi + 0.45 * (hi - lo))
    axes[0].legend(fontsize=7, loc="upper center")
    axes[1].set_ylabel("KL(FP ‖ quantized) (nats)")
    axes[1].set_title("divergence from the FP model vs λ")
    axes[1].legend(fontsize=7)
    cfg = next(iter(cfgs.values()))
    fig.suptitle(f"Fig. 4 — λ sweep. Full ERQ, rr release k=1; {describe(cfg)}", fontsize=10)
    save_figure(fig, out, "fig4_lambda")


if __name__ == "__main__":
    main()
