"""Table 1: solvers for Wqer's rounding subproblem min E‖δW x̄ˢ‖² (baseline + Rounding step, as in the paper).

    python -m analysis.table1_solvers                  # full: fmnist-vit W4A4, MIQP 0.25 s/row, 2 workers
    python -m analysis.table1_solvers --smoke          # seconds (tests)
    python -m analysis.table1_solvers --time-limit 1 --workers 2 --miqp-max-d 64

Like the paper's Table 1 (whose accuracies equal its Table 4 "Rounding" row), every row is calibration (RepQ-ViT
style) + Wqer's *rounding step only*: no Aqer, no ridge, so the solver is the only difference and every row
faces the very same subproblems (the segment weights are never ridge-updated). Rows: the
calibration-only baseline; MIQP without the proxy (objective from the N calibration samples); MIQP with the proxy
(M = X̄ᵀX̄/N); Rounding Refinement (release and paper variants); AdaRound; greedy; GPTQ.

MIQP: ``roundlab.solvers.miqp`` (default backend HiGHS through PuLP, exact linearisation, gap 0), one subproblem per
output row, warm-started from greedy, a per-row time limit (``--time-limit``), rows fanned out over ``--workers``
processes. Segments wider than ``--miqp-max-d`` (default 16; 0 = none) keep the greedy warm start (the row label
says so). The samples objective ("w/o proxy", N = 1600 samples per row) costs 0.3-0.45 s per row of model building
and solving at d = 8-32, so all 25,350 row subproblems would take ~1.5 h on 2 quiet cores: it runs on segments up to
``--samples-max-d`` (default 2: 42% of the rows; d <= 4: 56%, d <= 16: 85%) and is paired with a proxy row under the same
policy, so both objectives are compared on the same subproblems. A time-limited row returns its incumbent (never
worse than the warm start).

Columns: wall time of quantization (calibration + Σ per-layer time, excluding the analysis' own bound computation),
top-1, agreement with the FP model, KL(FP‖Q), summed Wqer objective Σ δMδᵀ, share of row subproblems proven optimal
(by the solver, or by a certified lower bound from ``roundlab.solvers.bound``: eig/jacobi QCR bounds, no SDP), and
the mean relative gap (objective − best lower bound)/objective over rows.
Output: figures/table1_solvers.{png,csv}.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from analysis import common


#: lower_bound options (full mode: 2000 box-QP iterations, the mixing method's default 100 sweeps; smoke: a few)
BOUND_OPTS = {"iters": 2000}
_BOUNDS: dict[str, torch.Tensor] = {}     # without ridge every table row meets the same subproblems: bound once
BOUND_CACHE: dict = {"path": None}        # set by main(): <runs>/table1_bounds.pt, shared by the rows' runs


def _bound(problem) -> torch.Tensor:
    import hashlib

    from roundlab.solvers.bound import lower_bound

    h = hashlib.sha1()
    for t in (problem.lo, problem.hi, problem.M):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    key = "-".join([h.hexdigest()] + [str(v) for v in BOUND_OPTS.values()])   # full mode: <hash>-2000 as before
    path = BOUND_CACHE["path"]
    if not _BOUNDS and path is not None and path.exists():
        _BOUNDS.update(torch.load(path, weights_only=True))
    if key not in _BOUNDS:
        _BOUNDS[key] = lower_bound(problem, "auto", sdp_max_d=0, **BOUND_OPTS).bound
        if path is not None:
            torch.save(_BOUNDS, path.with_suffix(".tmp"))
            path.with_suffix(".tmp").replace(path)
    return _BOUNDS[key]


def bound_fn(step, problem, result, S) -> dict:
    """Per segment: rows, d, objective, claimed/proven optimal rows, summed gap to the best lower bound."""
    from roundlab.problem import Status

    t = time.perf_counter()
    proven = result.with_bound(_bound(problem))
    gaps = proven.gap
    ok = ~torch.isnan(gaps)
    return {"rows": problem.rows, "d": problem.d, "objective": float(result.objective.sum()),
            "bound": float(proven.bound.sum()),
            "claimed_optimal": sum(s == Status.OPTIMAL for s in result.status),
            "proven_optimal": sum(s == Status.OPTIMAL for s in proven.status),
            "gap_sum": float(gaps[ok].sum()), "gap_rows": int(ok.sum()),
            "status": result.status_counts(), "bound_time_s": time.perf_counter() - t}


def rows_spec(args) -> list[tuple[str, str, dict]]:
    """(label, solver, options) per table row; the baseline has solver None.

    The samples objective is run on segments up to ``--samples-max-d`` and paired with a proxy row under the same
    policy, so the two MIQP objectives are compared on exactly the same subproblems."""
    base = {"backend": args.backend, "time_limit": args.time_limit, "workers": args.workers}
    if args.smoke:
        base["row_limit"] = 1
    miqp = {**base, **({"max_d": args.miqp_max_d} if args.miqp_max_d else {})}
    paired = {**base, **({"max_d": args.samples_max_d} if args.samples_max_d else {})}
    ada = {"iters": 10} if args.smoke else {}
    rows = [
        ("baseline (calibration only)", None, {}),
        (f"MIQP w/o proxy (samples), d ≤ {args.samples_max_d or 'all'}", "analysis-miqp",
         {**paired, "objective": "samples"}),
        (f"MIQP w/ proxy, d ≤ {args.samples_max_d or 'all'}", "analysis-miqp", {**paired, "objective": "proxy"}),
    ]
    if args.miqp_max_d != args.samples_max_d:
        rows.append((f"MIQP w/ proxy, d ≤ {args.miqp_max_d or 'all'}", "analysis-miqp",
                     {**miqp, "objective": "proxy"}))
    return rows + [
        ("Rounding Refinement (release)", "rr", {"variant": "release"}),
        ("Rounding Refinement (paper)", "rr", {"variant": "paper"}),
        ("AdaRound", "adaround", ada),
        ("greedy (one-flip)", "greedy", {}),
        ("GPTQ", "gptq", {}),
    ]


#: Config fields added after some Table 1 runs were made that cannot change them: head_lam only acts in Aqer (off).
LEGACY = ("head_lam",)


def main(argv=None):
    p = common.parser(__doc__)
    p.add_argument("--time-limit", type=float, default=0.25, help="MIQP seconds per row subproblem")
    p.add_argument("--workers", type=int, default=2, help="MIQP worker processes")
    p.add_argument("--backend", default="highs", help="miqp backend: highs | cbc | scip | cvxpy-scip")
    p.add_argument("--miqp-max-d", type=int, default=16,
                   help="MIQP only on segments with d <= this (wider: the greedy warm start); 0 = all")
    p.add_argument("--samples-max-d", type=int, default=2,
                   help="the same for the samples objective and its paired proxy row; 0 = all")
    p.add_argument("--only", default=None, help="comma-separated row numbers to run (0 = baseline)")
    args = common.finish_args(p.parse_args(argv))
    if args.smoke:
        args.time_limit, args.workers = 0.05, 1
        args.miqp_max_d, args.samples_max_d = 4, 2
    BOUND_OPTS.clear()
    BOUND_OPTS.update(iters=2000)
    if args.smoke:
        BOUND_OPTS.update(iters=50, sweeps=3)     # any iteration count gives a valid (looser) bound
    BOUND_CACHE["path"] = args.runs / f"table1_bounds-{args.model}-W{args.wbits}A{args.abits}.pt"
    args.miqp_max_d = args.miqp_max_d or None
    args.samples_max_d = args.samples_max_d or None

    specs = rows_spec(args)
    keep = range(len(specs)) if args.only is None else [int(i) for i in args.only.split(",")]
    samples_ready = False
    results = []
    for i in keep:
        label, solver, opts = specs[i]
        if solver is None:
            cfg = common.config(args, "calib")
            r = common.cached_run(cfg, args.runs, legacy_ok=LEGACY)
        else:
            cfg = common.config(args, "wqer", ridge=False, solver=solver, solver_options=opts)
            if opts.get("objective") == "samples" and not samples_ready and \
                    not (common.run_dir(cfg, args.runs) / "problems.done").exists():
                model, calib, heldout, _ = common.load_data(cfg)
                n = common.register_samples(common.layer_inputs(model, calib, heldout, cfg))
                common.log(f"registered samples of {n} segments")
                samples_ready = True
            r = common.cached_run(cfg, args.runs, problem_fn=bound_fn, legacy_ok=LEGACY)
        results.append((label, solver, opts, cfg, r))

    rows = []
    for label, solver, opts, cfg, r in results:
        m = common.metrics_row(r)
        probs = r.get("problems", [])
        n_rows = sum(x["rows"] for x in probs)
        t = r["times"]
        # per layer: process_layer time minus this analysis' bound time (both per layer, so resumed runs add up)
        from roundlab.pipeline.records import RecordWriter

        recs = RecordWriter(Path(r["paths"]["records"])).read() if probs else []
        by_layer = {}
        for x in probs:
            by_layer[x["layer"]] = by_layer.get(x["layer"], 0.0) + x["bound_time_s"]
        layers_t = sum(rec["time_s"] for rec in recs) - sum(by_layer.values()) if recs else t["layers_s"]
        rows.append({
            "method": label, "solver": solver or "-",
            "settings": "; ".join(f"{k}={v}" for k, v in opts.items()) or "-",
            "wall_time_s": t["calibrate_s"] + layers_t,
            "solver_time_s": (r.get("wqer") or {}).get("solver_time_s", 0.0),
            "top1": m["top1"], "agreement": m["agreement"], "kl": m["kl"],
            "wqer_objective": sum(x["objective"] for x in probs) if probs else math.nan,
            "lower_bound_sum": sum(x["bound"] for x in probs) if probs else math.nan,
            "subproblems": n_rows,
            "share_optimal": (sum(x["proven_optimal"] for x in probs) / n_rows) if n_rows else math.nan,
            "share_claimed_optimal": (sum(x["claimed_optimal"] for x in probs) / n_rows) if n_rows else math.nan,
            "mean_gap": (sum(x["gap_sum"] for x in probs) / max(1, sum(x["gap_rows"] for x in probs)))
            if probs else math.nan,
            "fp_top1": m["fp_top1"], "n_eval": m["n_eval"], "run": r.get("legacy_run") or r["paths"]["dir"], "model": cfg.model, "wbits": cfg.wbits,
            "abits": cfg.abits, "calib_images": cfg.calib_images,
        })
    rr = next((r for r in rows if r["solver"] == "rr"), None)
    for r in rows:
        r["time_vs_rr"] = r["wall_time_s"] / rr["wall_time_s"] if rr else math.nan
    cols = ["method", "solver", "settings", "wall_time_s", "time_vs_rr", "solver_time_s", "top1", "agreement", "kl",
            "wqer_objective", "lower_bound_sum", "subproblems", "share_optimal", "share_claimed_optimal", "mean_gap",
            "fp_top1", "n_eval", "model", "wbits", "abits", "calib_images", "run"]
    common.write_csv(args.out / "table1_solvers.csv", rows, cols)
    plot(rows, args, results[0][3])
    return rows


def plot(rows, args, cfg):
    plt = common.setup_style()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    colors = plt.cm.tab10.colors
    ax = axes[0]
    for i, r in enumerate(rows):
        ax.scatter(r["wall_time_s"], r["top1"], color=colors[i % 10], s=40, label=r["method"], zorder=3)
    ax.axhline(rows[0]["fp_top1"], color="k", ls=":", lw=1, label="FP model")
    ax.set_xscale("log")
    ax.set_xlabel("quantization wall time (s, log scale; shared 2-core machine)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("accuracy vs cost")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.97), fontsize=7, ncol=2)

    sub = [r for r in rows if r["solver"] != "-"]
    names = [r["method"].replace(" (", "\n(") for r in sub]
    ref = min(r["lower_bound_sum"] for r in sub)
    ax = axes[1]
    vals = [r["wqer_objective"] for r in sub]
    ax.bar(range(len(sub)), vals, color=[colors[(i + 1) % 10] for i in range(len(sub))])
    ax.axhline(ref, color="k", ls="--", lw=1, label=f"certified lower bound, summed (lowest run: {ref:.4g})")
    ax.set_xticks(range(len(sub)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("summed Wqer objective Σ δMδᵀ (output-MSE units)")
    lo = min(vals + [ref])
    ax.set_ylim(lo * 0.97, max(vals) * 1.01)
    ax.set_title("rounding objective (lower is better); y-axis truncated")
    ax.legend(fontsize=7)

    ax = axes[2]
    x = torch.arange(len(sub)).float()
    ax.bar(x - 0.2, [100 * r["share_optimal"] for r in sub], 0.4, label="rows proven optimal (%)", color="tab:green")
    ax.bar(x + 0.2, [100 * r["mean_gap"] for r in sub], 0.4, label="mean gap to lower bound (%)", color="tab:red")
    ax.set_xticks(range(len(sub)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("percent of row subproblems / relative gap (%)")
    ax.set_title(f"optimality ({sub[0]['subproblems']} row subproblems per run)")
    ax.legend(fontsize=7)
    miqp = f"MIQP: {args.backend}, {args.time_limit:g} s/row limit, {args.workers} worker(s), wider segments keep " \
        f"the greedy warm start" + (", smoke: 1 row/segment" if args.smoke else "")
    fig.suptitle(f"Table 1 — solvers for Wqer's rounding step (no Aqer, no ridge). {common.describe(cfg)}. {miqp}",
                 fontsize=10)
    common.save_figure(fig, args.out, "table1_solvers")


if __name__ == "__main__":
    main()
