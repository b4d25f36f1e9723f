"""Table 1's second figure: how far each solver is from the proven optimum (per segment width, per layer), and
whether the optimum changes the model's top-1 / agreement / KL (paired differences on the same test images)."""

from __future__ import annotations

import math

from analysis.plots import describe, save_figure, setup_style
from analysis.table1_plot import method_colors, short

#: rows of the effect panels, beside all others in the CSV: the local methods the issue compares optimal rounding to
HIGHLIGHT = ("rr", "greedy", "tabu")


def plot_exact(table: list[dict], exact: str, widths: list[dict], layers: list[dict], opts, st, cfg) -> None:
    """``exact``: the method label of the exact row."""
    plt = setup_style()
    fig, axes = plt.subplots(2, 2, figsize=(14, 9))
    solvers = [t["method"] for t in table if t["solver"] != "-" and t["method"] != exact]
    colors = method_colors(table)
    width_panel(axes[0, 0], widths, solvers, colors, exact)
    layer_panel(axes[0, 1], layers, solvers, colors)
    others = [t for t in table if t["solver"] != "-" and t["method"] != exact]
    effect_panel(axes[1, 0], others, ("top1", "agreement"), "points")
    effect_panel(axes[1, 1], others, ("kl",), "nats")
    proven = next(t for t in table if t["method"] == exact)
    fig.suptitle(f"Table 1 against the proven optimum (bnb, {st.exact_time_limit:g} s/row: "
                 f"{100 * proven.get('share_claimed_optimal', math.nan):.2f} % of rows proven; its summed certified gap "
                 f"over all rows {100 * proven.get('certified_gap', math.nan):.2g} %). {describe(cfg)}"
                 + (" — smoke" if opts.smoke else ""), fontsize=10)
    save_figure(fig, opts.out, "table1_exact")


def _excess_pct(rows: list[dict]) -> list[float]:
    return [100 * r["excess_over_optimum"] for r in rows]


def width_panel(ax, widths: list[dict], solvers: list[str], colors: dict, exact: str) -> None:
    for m in solvers:
        rows = sorted((w for w in widths if w["method"] == m), key=lambda w: w["d"])
        ax.plot([w["d"] for w in rows], _excess_pct(rows), "o-", color=colors[m], label=short(m), ms=4)
    for w in (w for w in widths if w["method"] == exact):
        share = w["rows_proven_by_exact"] / w["rows"]
        ax.annotate(f"{w['rows']} rows\n{100 * share:.0f}% proven", (w["d"], 1), xycoords=("data", "axes fraction"),
                    xytext=(0, 2), textcoords="offset points", ha="center", va="bottom", fontsize=6.5)
    ax.set_xscale("log", base=2)
    ax.set_xlim(0.7, 1.4 * max(w["d"] for w in widths))
    ax.set_yscale("symlog", linthresh=0.1)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("segment width d (elements rounded jointly)")
    ax.set_ylabel("Σ objective / Σ proven optimum − 1 (%, symlog)")
    ax.set_title("excess over the proven optimum per width (rows bnb proved)", pad=26)
    ax.legend(fontsize=6.5, ncol=2)


def layer_panel(ax, layers: list[dict], solvers: list[str], colors: dict) -> None:
    names = list(dict.fromkeys(r["layer"] for r in layers))
    for m in solvers:
        by = {r["layer"]: r for r in layers if r["method"] == m}
        ax.plot(range(len(names)), _excess_pct([by[n] for n in names]), ".-", color=colors[m], label=short(m))
    ax.set_xticks(range(len(names)), [n.replace("blocks.", "b").replace(".mlp", "") for n in names],
                  rotation=90, fontsize=6)
    ax.set_yscale("symlog", linthresh=0.1)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("excess over the proven optimum (%, symlog)")
    ax.set_title("… per layer, in network order")


def effect_panel(ax, rows: list[dict], metrics: tuple[str, ...], unit: str) -> None:
    """exact − solver on the same images, ±1.96 paired s.e.; rr/greedy/tabu first (the issue's comparison)."""
    rows = sorted(rows, key=lambda t: t["solver"] not in HIGHLIGHT)
    step = 0.8 / len(metrics)
    for j, k in enumerate(metrics):
        y = [t[f"exact_minus_{k}"] for t in rows]
        err = [1.96 * t[f"exact_minus_{k}_se"] for t in rows]
        x = [i + (j - (len(metrics) - 1) / 2) * step for i in range(len(rows))]
        ax.bar(x, y, step, yerr=err, capsize=2, label=f"Δ {k}")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(len(rows)), [short(t["method"]) for t in rows], rotation=45, ha="right", fontsize=7.5)
    ax.set_ylabel(f"exact optimum − solver ({unit}); bars: ±1.96 paired s.e.")
    ax.set_title("does optimal rounding change the model? (same test images, paired)")
    ax.legend(fontsize=7)
