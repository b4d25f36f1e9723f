"""Table 7: the number of calibration images (4 … 1024).

    python -m analysis.table7_images                 # full: fmnist-vit W4A4, 4,8,…,1024 images, 5000 test imgs
    python -m analysis.table7_images --smoke         # seconds (tests)
    python -m analysis.table7_images --images 16,32,64 --models fmnist-vit,fmnist-swin

Full ERQ (rr release, k = 1, λ = 1e4) calibrated on n training images (activation quantizers, Aqer, Wqer all see
the same n images; 50 tokens each on the embedded ViT/DeiT). The held-out set (32 images) is fixed. The paper
(W4A4 DeiT-S) goes 72.54 → 73.69 from 16 to 1024 images. Output: figures/table7_images.{png,csv}.
"""

from __future__ import annotations

from analysis.plots import save_figure, setup_style
from analysis.stats import top1_se
from analysis.sweeps import sweep

PAPER = {16: 72.54, 32: 72.56, 64: 72.94, 128: 73.19, 256: 73.51, 512: 73.68, 1024: 73.69}


def main(argv=None):
    s = sweep(__doc__, argv, name="table7_images", option="images", key="images", what="image counts",
                     full="4,8,16,32,64,128,256,512,1024", smoke="2,4", cast=int, label=lambda n: f"n={n}",
                     spec=lambda n: {"method": "erq", "calib_images": n}, paper=PAPER)
    plot(s.rows, s.opts.models, s.cfgs, s.opts.out)
    return s.rows


def plot(rows, models, cfgs, out):
    plt = setup_style()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for model in models:
        rs = [r for r in rows if r["model"] == model]
        n = [r["images"] for r in rs]
        axes[0].errorbar(n, [r["top1"] for r in rs], yerr=[top1_se(r) for r in rs], fmt="o-", capsize=3,
                         label=f"{model} (roundlab, ±1 s.e. of {rs[0]['n_eval']} test imgs)")
        axes[1].plot(n, [r["kl"] for r in rs], "o-", label=model)
        axes[2].plot(n, [r["quant_time_s"] for r in rs], "o-", label=model)
    ax2 = axes[0].twinx()
    ax2.plot(list(PAPER), list(PAPER.values()), "s--", color="gray", label="paper, DeiT-S ImageNet (right axis)")
    ax2.set_ylabel("paper top-1 (%)", color="gray")
    ax2.grid(False)
    h1, l1 = axes[0].get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    for ax in (axes[0], ax2):                       # headroom for the legend above both curves
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi + 0.4 * (hi - lo))
    axes[0].legend(h1 + h2, l1 + l2, fontsize=7, loc="upper center")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("calibration images (log2 scale)")
    axes[0].set_ylabel("top-1 accuracy (%)")
    axes[0].set_title("top-1 vs calibration images")
    axes[1].set_ylabel("KL(FP ‖ quantized) (nats)")
    axes[1].set_title("divergence from the FP model")
    axes[1].legend(fontsize=7)
    axes[2].set_ylabel("quantization wall time (s)")
    axes[2].set_title("cost (calibration + all layers)")
    axes[2].legend(fontsize=7)
    cfg = next(iter(cfgs.values()))
    ev = "all 10k" if cfg.eval_images is None else cfg.eval_images
    fig.suptitle(f"Table 7 — calibration set size. Full ERQ (rr release k=1, λ=1e4), {cfg.model} "
                 f"W{cfg.wbits}A{cfg.abits}, eval on {ev} test imgs", fontsize=10)
    save_figure(fig, out, "table7_images")


if __name__ == "__main__":
    main()
