"""Fig. 3's figure: proxy against true loss in the four sample regimes, and the downstream effect of candidates."""

from __future__ import annotations

import math

import torch

from analysis.fig3_measure import REGIMES
from analysis.plots import save_figure, setup_style

#: (key, panel label) of the downstream panels.
PANELS = (("block_mse", "block output MSE vs FP"), ("kl", "logits KL(FP ‖ Q)"))
TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)


def by_segment(down: list[dict], key: str) -> dict[tuple, list[dict]]:
    """Downstream records with a value for ``key``, grouped by segment (layer, step)."""
    segs: dict[tuple, list[dict]] = {}
    for r in down:
        if not math.isnan(r[key]):
            segs.setdefault((r["layer"], r["step"]), []).append(r)
    return segs


def plot(data: dict, rows: list[dict], st, cfg, out) -> None:
    plt = setup_style()
    fig, axes = plt.subplots(2, 3, figsize=(15, 9))
    idx = torch.randperm(len(data["proxy_b"]), generator=torch.Generator().manual_seed(1))[:20000]
    for ax, regime, row in zip(axes.flat[:4], REGIMES, rows[:4]):
        regime_panel(ax, data, idx, regime, row, plt.cm.tab10)
    for ax, (key, label), row in zip(axes.flat[4:], PANELS, rows[4:6]):
        downstream_panel(ax, data, key, label, row, st.downstream_images, plt.cm.tab10)
    fig.suptitle(title(data, st, cfg), fontsize=10)
    save_figure(fig, out, "fig3_proxy_fidelity")


def regime_panel(ax, data: dict, idx: torch.Tensor, regime: tuple, row: dict, cmap) -> None:
    """Proxy against true loss of the sampled points ``idx``, coloured by candidate, with the identity line."""
    name, xk, yk, desc, _ = regime
    x, y, cand = data[xk][idx], data[yk][idx], data["cand"][idx]
    ok = (x > 0) & (y > 0)
    for ci, cname in enumerate(data["cand_names"]):
        m = ok & (cand == ci)
        ax.scatter(y[m], x[m], s=3, alpha=0.4, color=cmap(ci % 10), label=cname, rasterized=True)
    lo, hi = float(torch.minimum(x[ok], y[ok]).min()), float(torch.maximum(x[ok], y[ok]).max())
    ax.plot([lo, hi], [lo, hi], "k-", lw=1, label="y = x")
    if xk == "proxy_u":
        N = int(data["N"].min())
        ax.plot([lo, hi], [lo * N / (N - 1), hi * N / (N - 1)], "r--", lw=1, label=f"y = N/(N−1)·x, N={N}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"true E‖δx̄ˢ‖² ({'held-out images' if yk == 'E_heldout' else 'calibration samples'})"
                  " [output MSE units]")
    ax.set_ylabel("proxy δ(μμᵀ+Σ)δᵀ" + (" from few images" if xk == "proxy_few" else "") + " [output MSE units]")
    ax.set_title(f"{name}: {desc}\nPearson {row['pearson']:.4f}, Spearman {row['spearman']:.4f}, "
                 f"within-row Spearman {row['within_row_spearman_mean']:.3f}\n"
                 f"proxy/E ∈ [{row['ratio_min']:.4g}, {row['ratio_max']:.4g}]", fontsize=8)
    if xk == "proxy_b" and yk == "E_in":
        ax.legend(fontsize=6, markerscale=3, ncol=2, loc="upper left", title="candidate (colour)", title_fontsize=6)
    else:
        lines = list(ax.get_lines())
        ax.legend(lines, [h.get_label() for h in lines], fontsize=7, loc="upper left")


def relative_to_nearest(segs: dict, key: str, cand_names: list[str]) -> dict[str, tuple[list, list]]:
    """Per candidate: (segment proxy / nearest's, % change of ``key`` against nearest) over the segments."""
    pts = {c: ([], []) for c in cand_names}
    for rs in segs.values():
        near = next(r for r in rs if r["cand"] == "nearest")
        for r in rs:
            pts[r["cand"]][0].append(r["proxy_sum"] / near["proxy_sum"])
            pts[r["cand"]][1].append(100 * (r[key] - near[key]) / near[key])
    return pts


def downstream_panel(ax, data: dict, key: str, label: str, row: dict, images: int, cmap) -> None:
    """Each candidate's change of ``key`` against round-to-nearest, over its segment proxy relative to nearest's."""
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter

    segs = by_segment(data["down"], key)
    pts = relative_to_nearest(segs, key, data["cand_names"])
    ci_of = {c: i for i, c in enumerate(data["cand_names"])}
    for c, (xs, ys) in pts.items():
        if c != "nearest":                                   # nearest is the origin (1, 0) of every segment
            ax.scatter(xs, ys, s=9, alpha=0.65, color=cmap(ci_of[c] % 10), label=c)
    ax.axhline(0, color="k", lw=0.8)
    ax.axvline(1, color="k", lw=0.8, label="round-to-nearest (1, 0)")
    ax.set_xscale("log")
    allx = [v for xs, _ in pts.values() for v in xs] or [1.0]
    ax.xaxis.set_major_locator(FixedLocator([t for t in TICKS if min(allx) / 1.5 <= t <= max(allx) * 1.5]))
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=6, ncol=2, loc="upper left", title="candidate (colour)", title_fontsize=6)
    ax.set_xlabel("segment proxy Σ_rows δMδᵀ, relative to round-to-nearest (ratio, log scale)")
    ax.set_ylabel(f"relative change in {label}\nagainst round-to-nearest (%)")
    ax.set_title(f"downstream: {label}\npooled raw Pearson {row['pearson']:.3f}, Spearman {row['spearman']:.3f}; "
                 f"mean per-segment Spearman {row['within_row_spearman_mean']:.3f}\n"
                 f"({len(segs)} segments × {len(data['cand_names']) - 1} candidates, {images} test imgs)", fontsize=8)


def title(data: dict, st, cfg) -> str:
    used = data.get("layers_used", [])
    n_lin = sum(1 for n in data["names"] if n != data["names"][0])
    which = "every linear layer" if len(used) == n_lin else f"{len(used)} of {n_lin} linear layers"
    segs = len({(r["layer"], r["step"]) for r in data["down"]})
    cands = data["cand_names"]
    return (f"Fig. 3 — proxy fidelity. Full ERQ (rr release k=1, λ={cfg.lam:g}), {cfg.model} W{cfg.wbits}A{cfg.abits}, "
            f"{cfg.calib_images} calib / {cfg.heldout_images} held-out imgs, few = {st.few_images} img(s); "
            f"{which} ({len(data['proxy_b'])} row points)\n{len(cands)} candidate roundings per "
            f"Wqer segment: {', '.join(cands)}; downstream: first {st.downstream_steps} segments "
            f"per layer ({segs} segments) × {len(cands)} candidates on {st.downstream_images} test imgs")
