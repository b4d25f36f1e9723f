"""Table 1: solvers for Wqer's rounding subproblem min E‖δW x̄ˢ‖² (baseline + Rounding step, as in the paper).

    python -m analysis.table1_solvers                  # full: fmnist-vit W4A4, MIQP 0.25 s/row, 2 workers
    python -m analysis.table1_solvers --smoke          # seconds (tests)
    python -m analysis.table1_solvers --time-limit 1 --workers 2 --miqp-max-d 64

Like the paper's Table 1 (whose accuracies equal its Table 4 "Rounding" row), every row is calibration (RepQ-ViT
style) + Wqer's *rounding step only*: no Aqer, no ridge, so the solver is the only difference and every row
faces the very same subproblems (the segment weights are never ridge-updated). Rows: the
calibration-only baseline; MIQP without the proxy (objective from the N calibration samples); MIQP with the proxy
(M = X̄ᵀX̄/N); Rounding Refinement (release and paper variants); AdaRound; greedy; GPTQ.

MIQP: ``analysis-miqp`` (:mod:`analysis.pooled_miqp`: ``roundlab.solvers.miqp``, default backend HiGHS through
PuLP, exact linearisation, gap 0), one subproblem per output row, warm-started from greedy, a per-row time limit
(``--time-limit``), rows fanned out over ``--workers`` processes. Segments wider than ``--miqp-max-d`` (default 16;
0 = none) keep the greedy warm start (the row label says so). The samples objective ("w/o proxy", N = 1600 samples
per row) builds a far larger model per row than the proxy, so it runs on segments up to ``--samples-max-d``
(default 2: 42% of the rows; d <= 4: 56%, d <= 16: 85%) and is paired with a proxy row under the same policy, so
both objectives are compared on the same subproblems. A time-limited row returns its incumbent (never worse than
the warm start).

Columns: wall time of quantization (calibration + Σ per-layer time, excluding the analysis' own bound computation),
top-1, agreement with the FP model, KL(FP‖Q), summed Wqer objective Σ δMδᵀ, share of row subproblems proven optimal
(by the solver, or by a certified lower bound from ``roundlab.solvers.bound``: eig/jacobi QCR bounds, no SDP), and
the mean relative gap (objective − best lower bound)/objective over rows. ``run``: the run's directory under
``--runs``. Output: figures/table1_solvers.{png,csv}.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from analysis import pooled_miqp  # noqa: F401  registers the analysis-miqp solver
from analysis.bounds import Bounds, segment_summary
from analysis.csvout import write_csv
from analysis.options import Options, parse
from analysis.runs import cached_run, metrics_row, settings
from analysis.table1_plot import plot

#: lower_bound options: 2000 box-QP iterations and the mixing method's default sweeps; smoke: a few (any iteration
#: count gives a valid, looser bound)
BOUND_OPTIONS = {"iters": 2000}
SMOKE_BOUND_OPTIONS = {"iters": 50, "sweeps": 3}

#: Config fields that cannot change these runs: head_lam only acts in Aqer (off).
LEGACY = ("head_lam",)

COLUMNS = ["method", "solver", "settings", "wall_time_s", "time_vs_rr", "solver_time_s", "top1", "agreement", "kl",
           "wqer_objective", "lower_bound_sum", "subproblems", "share_optimal", "share_claimed_optimal", "mean_gap",
           "fp_top1", "n_eval", "model", "wbits", "abits", "calib_images", "run"]


@dataclass(frozen=True)
class Settings:
    """Table 1's own options (see the script's flags); smoke: tiny MIQP limits."""

    backend: str
    time_limit: float
    workers: int
    miqp_max_d: int | None
    samples_max_d: int | None
    only: tuple[int, ...] | None


def parse_settings(argv) -> tuple[Options, Settings]:
    def flags(p):
        p.add_argument("--time-limit", type=float, default=0.25, help="MIQP seconds per row subproblem")
        p.add_argument("--workers", type=int, default=2, help="MIQP worker processes")
        p.add_argument("--backend", default="highs", help="miqp backend: highs | cbc | scip | cvxpy-scip")
        p.add_argument("--miqp-max-d", type=int, default=16,
                       help="MIQP only on segments with d <= this (wider: the greedy warm start); 0 = all")
        p.add_argument("--samples-max-d", type=int, default=2,
                       help="the same for the samples objective and its paired proxy row; 0 = all")
        p.add_argument("--only", default=None, help="comma-separated row numbers to run (0 = baseline)")

    opts, ns = parse(__doc__, argv, extra=flags)
    if opts.smoke:
        ns.time_limit, ns.workers, ns.miqp_max_d, ns.samples_max_d = 0.05, 1, 4, 2
    return opts, Settings(backend=ns.backend, time_limit=ns.time_limit, workers=ns.workers,
                          miqp_max_d=ns.miqp_max_d or None, samples_max_d=ns.samples_max_d or None,
                          only=tuple(int(i) for i in ns.only.split(",")) if ns.only else None)


def rows_spec(st: Settings, smoke: bool) -> list[tuple[str, str | None, dict]]:
    """(label, solver, options) per table row; the baseline has solver None.

    The samples objective is run on segments up to ``samples_max_d`` and paired with a proxy row under the same
    policy, so the two MIQP objectives are compared on exactly the same subproblems."""
    base = {"backend": st.backend, "time_limit": st.time_limit, "workers": st.workers}
    if smoke:
        base["row_limit"] = 1
    miqp = {**base, **({"max_d": st.miqp_max_d} if st.miqp_max_d else {})}
    paired = {**base, **({"max_d": st.samples_max_d} if st.samples_max_d else {})}
    rows = [
        ("baseline (calibration only)", None, {}),
        (f"MIQP w/o proxy (samples), d ≤ {st.samples_max_d or 'all'}", pooled_miqp.NAME,
         {**paired, "objective": "samples"}),
        (f"MIQP w/ proxy, d ≤ {st.samples_max_d or 'all'}", pooled_miqp.NAME, {**paired, "objective": "proxy"}),
    ]
    if st.miqp_max_d != st.samples_max_d:
        rows.append((f"MIQP w/ proxy, d ≤ {st.miqp_max_d or 'all'}", pooled_miqp.NAME, {**miqp, "objective": "proxy"}))
    return rows + [
        ("Rounding Refinement (release)", "rr", {"variant": "release"}),
        ("Rounding Refinement (paper)", "rr", {"variant": "paper"}),
        ("AdaRound", "adaround", {"iters": 10} if smoke else {}),
        ("greedy (one-flip)", "greedy", {}),
        ("GPTQ", "gptq", {}),
    ]


def run_row(opts: Options, bounds: Bounds, solver: str | None, options: dict):
    """(config, cached result) of one table row: calibration only, or calibration + Wqer's rounding step."""
    if solver is None:
        cfg = opts.config("calib")
        return cfg, cached_run(cfg, opts.runs, legacy_ok=LEGACY)
    cfg = opts.config("wqer", ridge=False, solver=solver, solver_options=options)
    return cfg, cached_run(cfg, opts.runs, summarise=functools.partial(segment_summary, bounds), legacy_ok=LEGACY)


def layers_time(r: dict) -> float:
    """Σ per-layer time of the run less this analysis' bound time (both per layer, so resumed runs add up)."""
    from roundlab.pipeline.records import RecordWriter

    probs = r.get("problems", [])
    recs = RecordWriter(r["paths"]["records"]).read() if probs else []
    if not recs:
        return r["times"]["layers_s"]
    return sum(rec["time_s"] for rec in recs) - sum(x["bound_time_s"] for x in probs)


def table_row(label: str, solver: str | None, options: dict, cfg, r: dict) -> dict:
    m = metrics_row(r)
    probs = r.get("problems", [])
    n_rows = sum(x["rows"] for x in probs)

    def total(k):
        return sum(x[k] for x in probs) if probs else math.nan

    def share(k):
        return total(k) / n_rows if n_rows else math.nan

    return {"method": label, "solver": solver or "-", "settings": settings(options),
            "wall_time_s": r["times"]["calibrate_s"] + layers_time(r),
            "solver_time_s": (r.get("wqer") or {}).get("solver_time_s", 0.0),
            "top1": m["top1"], "agreement": m["agreement"], "kl": m["kl"],
            "wqer_objective": total("objective"), "lower_bound_sum": total("bound"), "subproblems": n_rows,
            "share_optimal": share("proven_optimal"), "share_claimed_optimal": share("claimed_optimal"),
            "mean_gap": total("gap_sum") / max(1, sum(x["gap_rows"] for x in probs)) if probs else math.nan,
            "fp_top1": m["fp_top1"], "n_eval": m["n_eval"], "run": r["run"], "model": cfg.model, "wbits": cfg.wbits,
            "abits": cfg.abits, "calib_images": cfg.calib_images}


def main(argv=None):
    opts, st = parse_settings(argv)
    bounds = Bounds(opts.runs / f"table1_bounds-{opts.model}-W{opts.wbits}A{opts.abits}.pt",
                    SMOKE_BOUND_OPTIONS if opts.smoke else BOUND_OPTIONS)
    specs = rows_spec(st, opts.smoke)
    chosen = [specs[i] for i in (st.only if st.only is not None else range(len(specs)))]
    runs = [(label, solver, options, *run_row(opts, bounds, solver, options)) for label, solver, options in chosen]
    rows = [table_row(*run) for run in runs]
    rr = next((r for r in rows if r["solver"] == "rr"), None)
    for r in rows:
        r["time_vs_rr"] = r["wall_time_s"] / rr["wall_time_s"] if rr else math.nan
    write_csv(opts.out / "table1_solvers.csv", rows, COLUMNS)
    plot(rows, opts, st, runs[0][3])
    return rows


if __name__ == "__main__":
    main()
