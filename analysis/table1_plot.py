"""Table 1's figure: accuracy against cost, the summed rounding objective, and optimality per solver."""

from __future__ import annotations

import math

import torch

from analysis.plots import describe, save_figure, setup_style


def short(method: str) -> str:
    """A tick label: the method without its settings ("Rounding Refinement (paper)" → "RR (paper)")."""
    head, _, rest = method.partition(" (")
    if head == "Rounding Refinement":
        return f"RR ({rest}"
    return {"exact optimum": "exact (bnb)"}.get(head, head)


def method_colors(rows: list[dict]) -> dict:
    """One colour per table row (its method), the same in every Table 1 figure."""
    import matplotlib.pyplot as plt

    return {r["method"]: plt.cm.tab10.colors[i % 10] for i, r in enumerate(rows)}


def plot(rows: list[dict], opts, st, cfg) -> None:
    plt = setup_style()
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.2))
    colors = method_colors(rows)
    cost_panel(axes[0], rows, colors)
    sub = [r for r in rows if r["solver"] != "-"]
    names = [short(r["method"]) for r in sub]
    objective_panel(axes[1], sub, names, colors)
    optimality_panel(axes[2], sub, names)
    limits = f"MIQP {st.time_limit:g} s/row, bnb {st.exact_time_limit:g} s/row, {st.workers} worker(s)" + \
        (", smoke" if opts.smoke else "")
    fig.suptitle(f"Table 1 — solvers for Wqer's rounding step (no Aqer, no ridge). {describe(cfg)}. {limits}",
                 fontsize=10)
    save_figure(fig, opts.out, "table1_solvers")


def cost_panel(ax, rows: list[dict], colors) -> None:
    for r in rows:
        ax.scatter(r["wall_time_s"], r["top1"], color=colors[r["method"]], s=40, label=r["method"], zorder=3)
    ax.axhline(rows[0]["fp_top1"], color="k", ls=":", lw=1, label="FP model")
    ax.set_xscale("log")
    ax.set_xlabel("quantization wall time (s, log scale; shared 2-core machine)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("accuracy vs cost")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=6.5, ncol=2)


def objective_panel(ax, sub: list[dict], names: list[str], colors) -> None:
    vals = [r["wqer_objective"] for r in sub]
    ax.bar(range(len(sub)), vals, color=[colors[r["method"]] for r in sub])
    bounds = [r.get("lower_bound_sum", math.nan) for r in sub]
    ref = max((b for b in bounds if not math.isnan(b)), default=math.nan)
    if not math.isnan(ref):
        ax.axhline(ref, color="k", ls="--", lw=1, label=f"certified lower bound, summed over rows ({ref:.4g})")
        ax.legend(fontsize=7)
    ax.set_xticks(range(len(sub)), names, rotation=45, ha="right", fontsize=7.5)
    ax.set_ylabel("summed Wqer objective Σ δMδᵀ (output MSE)")
    low = min(vals + ([ref] if not math.isnan(ref) else []))
    ax.set_ylim(low * 0.97, max(vals) * 1.01)
    ax.set_title("rounding objective (lower is better); y-axis truncated")


def optimality_panel(ax, sub: list[dict], names: list[str]) -> None:
    x = torch.arange(len(sub)).float()
    w = 0.27
    ax.bar(x - w, [100 * r.get("share_claimed_optimal", math.nan) for r in sub], w,
           label="rows the solver proved optimal (%)", color="tab:green")
    ax.bar(x, [100 * r.get("share_at_optimum", math.nan) for r in sub], w,
           label="rows at the proven optimum (%, of rows bnb proved)", color="tab:blue")
    ax.bar(x + w, [100 * r.get("certified_gap", math.nan) for r in sub], w,
           label="certified gap, summed over rows (%)", color="tab:red")
    ax.set_xticks(range(len(sub)), names, rotation=45, ha="right", fontsize=7.5)
    ax.set_ylabel("percent")
    ax.set_title(f"optimality ({sub[0].get('subproblems', '?')} row subproblems per run)")
    ax.legend(fontsize=7)
