"""Table 5: the number k of elements Rounding Refinement updates per iteration (k = 0: no refinement).

    python -m analysis.table5_k                      # full: fmnist-vit W4A4, k ∈ {0, 1, 2, 3}, 5000 test images
    python -m analysis.table5_k --smoke              # seconds (tests)
    python -m analysis.table5_k --models fmnist-vit,fmnist-deit --ks 0,1,2,3,8

Full ERQ (Aqer + Wqer, λ = 1e4) with ``rr`` (release variant) at ``k`` = 1, 2, 3 (top-k of |g| per iteration,
paper Eq. 15); k = 0 is Wqer with nearest rounding (the paper: "when k = 0, the Rounding Refinement is invalid").
Output: figures/table5_k.{png,csv}.
"""

from __future__ import annotations

from analysis.plots import describe, save_figure, setup_style
from analysis.sweeps import sweep

PAPER = {0: 72.01, 1: 72.56, 2: 72.38, 3: 71.79}     # W4A4 DeiT-S, ImageNet


def spec(k: int) -> dict:
    """k = 0: Wqer with nearest rounding; else rr (release variant) refining k elements per iteration."""
    if k == 0:
        return {"method": "erq", "rounding": False}
    return {"method": "erq", "solver": "rr", "solver_options": {"variant": "release", "k": k}}


def main(argv=None):
    s = sweep(__doc__, argv, name="table5_k", option="ks", key="k", what="k values", full="0,1,2,3",
                     smoke="0,1,2", cast=int, label=lambda k: f"k={k}", spec=spec, paper=PAPER)
    plot(s.rows, s.opts.models, s.cfgs, s.values, s.opts.out)
    return s.rows


def plot(rows, models, cfgs, ks, out):
    plt = setup_style()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for model in models:
        rs = [r for r in rows if r["model"] == model]
        axes[0].plot([r["k"] for r in rs], [r["top1"] for r in rs], "o-", label=f"{model} (roundlab)")
        axes[1].plot([r["k"] for r in rs], [r["kl"] for r in rs], "o-", label=model)
    ax2 = axes[0].twinx()
    ax2.plot(list(PAPER), list(PAPER.values()), "s--", color="gray", label="paper, DeiT-S ImageNet (right axis)")
    ax2.set_ylabel("paper top-1 (%)", color="gray")
    ax2.grid(False)
    axes[0].set_xlabel("k (elements refined per iteration; 0 = no refinement)")
    axes[0].set_ylabel("top-1 accuracy (%)")
    axes[0].set_xticks(ks)
    h1, l1 = axes[0].get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    axes[0].legend(h1 + h2, l1 + l2, fontsize=7, loc="lower left")
    axes[0].set_title("top-1 vs k")
    axes[1].set_xlabel("k")
    axes[1].set_xticks(ks)
    axes[1].set_ylabel("KL(FP ‖ quantized) (nats)")
    axes[1].set_title("divergence from the FP model vs k")
    axes[1].legend(fontsize=7)
    cfg = cfgs[(models[0], f"k={ks[-1]}")]
    fig.suptitle(f"Table 5 — Rounding Refinement's k. Full ERQ, rr release, λ=1e4; {describe(cfg)}",
                 fontsize=10)
    save_figure(fig, out, "table5_k")


if __name__ == "__main__":
    main()
