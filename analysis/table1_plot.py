"""Table 1's figure: accuracy against cost, the summed rounding objective, and optimality per solver."""

from __future__ import annotations

import torch

from analysis.plots import describe, save_figure, setup_style


def plot(rows: list[dict], opts, st, cfg) -> None:
    plt = setup_style()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    colors = plt.cm.tab10.colors
    cost_panel(axes[0], rows, colors)
    sub = [r for r in rows if r["solver"] != "-"]
    names = [r["method"].replace(" (", "\n(") for r in sub]
    objective_panel(axes[1], sub, names, colors)
    optimality_panel(axes[2], sub, names)
    miqp = f"MIQP: {st.backend}, {st.time_limit:g} s/row limit, {st.workers} worker(s), wider segments keep " \
        f"the greedy warm start" + (", smoke: 1 row/segment" if opts.smoke else "")
    fig.suptitle(f"Table 1 — solvers for Wqer's rounding step (no Aqer, no ridge). {describe(cfg)}. {miqp}",
                 fontsize=10)
    save_figure(fig, opts.out, "table1_solvers")


def cost_panel(ax, rows: list[dict], colors) -> None:
    for i, r in enumerate(rows):
        ax.scatter(r["wall_time_s"], r["top1"], color=colors[i % 10], s=40, label=r["method"], zorder=3)
    ax.axhline(rows[0]["fp_top1"], color="k", ls=":", lw=1, label="FP model")
    ax.set_xscale("log")
    ax.set_xlabel("quantization wall time (s, log scale; shared 2-core machine)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("accuracy vs cost")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.97), fontsize=7, ncol=2)


def objective_panel(ax, sub: list[dict], names: list[str], colors) -> None:
    ref = min(r["lower_bound_sum"] for r in sub)
    vals = [r["wqer_objective"] for r in sub]
    ax.bar(range(len(sub)), vals, color=[colors[(i + 1) % 10] for i in range(len(sub))])
    ax.axhline(ref, color="k", ls="--", lw=1, label=f"certified lower bound, summed (lowest run: {ref:.4g})")
    ax.set_xticks(range(len(sub)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("summed Wqer objective Σ δMδᵀ (output-MSE units)")
    ax.set_ylim(min(vals + [ref]) * 0.97, max(vals) * 1.01)
    ax.set_title("rounding objective (lower is better); y-axis truncated")
    ax.legend(fontsize=7)


def optimality_panel(ax, sub: list[dict], names: list[str]) -> None:
    x = torch.arange(len(sub)).float()
    ax.bar(x - 0.2, [100 * r["share_optimal"] for r in sub], 0.4, label="rows proven optimal (%)", color="tab:green")
    ax.bar(x + 0.2, [100 * r["mean_gap"] for r in sub], 0.4, label="mean gap to lower bound (%)", color="tab:red")
    ax.set_xticks(range(len(sub)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("percent of row subproblems / relative gap (%)")
    ax.set_title(f"optimality ({sub[0]['subproblems']} row subproblems per run)")
    ax.legend(fontsize=7)
