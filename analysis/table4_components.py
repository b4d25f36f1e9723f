"""Table 4: ablation of ERQ's components (Aqer; Wqer's Rounding Refinement and ridge), top-1 per combination.

    python -m analysis.table4_components                    # full: fmnist-vit W4A4, 5000 test images
    python -m analysis.table4_components --smoke            # seconds (tests)
    python -m analysis.table4_components --models fmnist-vit,fmnist-deit,fmnist-swin

Rows as the paper's Table 4: the calibration-only baseline (RepQ-ViT-style calibration + reparameterisation, RTN
weights), then every combination of Aqer, Rounding (Rounding Refinement, ``rr`` release variant, k = 1) and Ridge
(Wqer's ridge step). "Rounding" without "Ridge" is Wqer with ``ridge=False``; "Ridge" without "Rounding" is Wqer with
nearest rounding (``rounding=False``). λ = 1e4 (release convention). Output: figures/table4_components.{png,csv}.
"""

from __future__ import annotations

from analysis.csvout import write_csv
from analysis.options import parse
from analysis.plots import describe, save_figure, setup_style
from analysis.sweeps import ABLATION_COLUMNS, run_rows

#: (label, config, paper top-1 on W4A4 DeiT-S ImageNet)
SPECS = [
    ("baseline", {"method": "calib"}, 68.41),
    ("Aqer", {"method": "aqer"}, 71.45),
    ("Rounding", {"method": "wqer", "ridge": False}, 69.24),
    ("Ridge", {"method": "wqer", "rounding": False}, 70.06),
    ("Rounding+Ridge (Wqer)", {"method": "wqer"}, 70.49),
    ("Aqer+Rounding", {"method": "erq", "ridge": False}, 71.83),
    ("Aqer+Ridge", {"method": "erq", "rounding": False}, 72.01),
    ("Aqer+Rounding+Ridge (ERQ)", {"method": "erq"}, 72.56),
]


def main(argv=None):
    opts, _ = parse(__doc__, argv, full_eval=5000, models=True)
    rows, cfgs = run_rows(opts, [(l, s) for l, s, _ in SPECS])
    paper = {l: v for l, _, v in SPECS}
    for r in rows:
        base = next(x["top1"] for x in rows if x["model"] == r["model"] and x["row"] == 0)
        r["delta_top1"] = r["top1"] - base
        r["paper_top1_deit_s"] = paper[r["label"]]
        r["paper_delta"] = paper[r["label"]] - SPECS[0][2]
    write_csv(opts.out / "table4_components.csv", rows,
              ABLATION_COLUMNS + ["delta_top1", "paper_top1_deit_s", "paper_delta"])
    plot(rows, opts.models, cfgs, opts.out)
    return rows


def plot(rows, models, cfgs, out):
    plt = setup_style()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    labels = [l for l, _, _ in SPECS]
    w = 0.8 / (len(models) + 1)
    for j, model in enumerate(models):
        rs = [r for r in rows if r["model"] == model]
        axes[0].bar([i + j * w for i in range(len(rs))], [r["delta_top1"] for r in rs], w, label=f"{model} (roundlab)")
        axes[1].bar([i + j * w for i in range(len(rs))], [r["kl"] for r in rs], w, label=model)
    axes[0].bar([i + len(models) * w for i in range(len(SPECS))], [p - SPECS[0][2] for _, _, p in SPECS], w,
                color="lightgray", edgecolor="k", label="paper (DeiT-S, ImageNet)")
    for ax in axes:
        ax.set_xticks([i + w * len(models) / 2 for i in range(len(labels))], labels, rotation=25, ha="right")
    axes[0].set_ylabel("top-1 gain over baseline (percentage points)")
    axes[0].set_title("accuracy gain over the calibration-only baseline")
    axes[0].axhline(0, color="k", lw=0.8)
    axes[0].legend(fontsize=7)
    axes[1].set_ylabel("KL(FP ‖ quantized) on the test images (nats)")
    axes[1].set_title("divergence from the FP model (lower is better)")
    axes[1].legend(fontsize=7)
    cfg = cfgs[(models[0], labels[-1])]
    base = ", ".join(f"{m} baseline {next(r['top1'] for r in rows if r['model'] == m and r['row'] == 0):.2f}%"
                     for m in models)
    fig.suptitle(f"Table 4 — ERQ components. {describe(cfg)}; rr release k=1, λ=1e4 ({base})", fontsize=10)
    save_figure(fig, out, "table4_components")


if __name__ == "__main__":
    main()
