"""Table 1: solvers for Wqer's rounding subproblem min E‖δW x̄ˢ‖², measured against the proven optimum of every row.

    python -m analysis.table1_solvers                  # full: fmnist-vit W4A4, every row of every width, 2 workers
    python -m analysis.table1_solvers --smoke          # seconds (tests)
    python -m analysis.table1_solvers --only 1 --exact-time-limit 120   # the exact row alone, shorter limit

Like the paper's Table 1 (whose accuracies equal its Table 4 "Rounding" row), every row is calibration (RepQ-ViT
style) + Wqer's *rounding step only*: no Aqer, no ridge, so the solver is the only difference and every row faces
the very same subproblems (25,350 rows on fmnist-vit, segment widths d = 1 … 128). Rows: the calibration-only
baseline; the **exact optimum** (``bnb``: branch and bound from greedy, tabu on the wide rows its probe leaves
open, ``--exact-time-limit`` seconds per row; a row is optimal only when its search closed, otherwise it keeps its
certified bound; without bnb's Shor re-fits, :data:`EXACT_OPTIONS`); the paper's MIQP baseline through PuLP
(HiGHS by default) with and without the proxy, on every row of every width, warm-started from greedy,
``--time-limit`` seconds per row (model building not included); Rounding Refinement (release and paper variants); AdaRound; greedy; tabu; GPTQ. The samples objective ("w/o proxy", N samples per row) has the same
optimum as the proxy on every row — its Gram matrix is M (ERQ_SPEC §11) — so the one exact row serves both.

The exact and MIQP rows fan their rows out over ``--workers`` processes (``roundlab.fanout``, ``--chunk-rows`` rows
per task; the exact row ``--exact-chunk-rows``, fewer, since its row times are heavy-tailed: a few d = 128 rows take
minutes, so small tasks keep both workers busy to the end of a segment) into the run's results store, so a killed
table resumes where it stopped.

Columns (``table1_solvers.csv``): quantization wall time (calibration + Σ per-layer time), top-1, agreement with the
FP model, KL(FP‖Q); summed Wqer objective Σ δMδᵀ; ``share_claimed_optimal`` (rows the solver itself proved
optimal); ``share_at_optimum`` (rows equal to the proven optimum, over the rows the exact run proved);
``excess_over_optimum`` (Σ objective / Σ optimum − 1 over those rows); ``certified_gap`` ((Σ objective − Σ best
lower bound) / Σ objective over every row with a certified bound — all of them in full mode: how far the run can at
most be from optimal); ``contradictions`` (rows
below a "proven" optimum: must be 0); ``exact_minus_*``: the exact run's top-1 / agreement (points) / KL minus
this run's, on the same test images, with its paired standard error (``*_se``). ``table1_excess_by_width.csv`` and
``table1_excess_by_layer.csv`` break the comparison down (per width also each solver's median / p90 / max seconds
per row and nodes per second, from its results store); figures ``table1_solvers.png`` and ``table1_exact.png``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from analysis import smoke_sample
from analysis.csvout import write_csv
from analysis.log import log
from analysis.optimum import Rows, breakdown, check_aligned, compare, segment_rows
from analysis.row_times import timing_by_width
from analysis.options import Options, parse, positive_int
from analysis.runs import cached_run, load_predictions, metrics_row, settings
from analysis.stats import paired_difference
from analysis.table1_exact_plot import plot_exact
from analysis.table1_plot import plot

#: Config fields that cannot change these runs: head_lam only acts in Aqer (off).
LEGACY = ("head_lam",)
#: the paired differences reported: (column stem, per-image key, scale to the table's unit)
EFFECTS = (("top1", "correct", 100.0), ("agreement", "agree", 100.0), ("kl", "kl", 1.0))

COLUMNS = ["method", "solver", "settings", "wall_time_s", "time_vs_rr", "solver_time_s", "top1", "agreement", "kl",
           "wqer_objective", "lower_bound_sum", "subproblems", "share_claimed_optimal", "share_at_optimum",
           "excess_over_optimum", "certified_gap", "contradictions"] + \
          [f"exact_minus_{k}{s}" for k, _, _ in EFFECTS for s in ("", "_se")] + \
          ["fp_top1", "n_eval", "model", "wbits", "abits", "calib_images", "run"]
BREAKDOWN = ["method", "rows", "rows_proven_by_exact", "rows_bounded", "share_claimed_optimal", "share_at_optimum",
             "excess_over_optimum", "certified_gap", "contradictions"]
TIMING = ["median_row_s", "p90_row_s", "max_row_s", "nodes_per_s"]


@dataclass(frozen=True)
class Settings:
    """Table 1's own options (see the script's flags); smoke: tiny limits, a sample of MIQP rows."""

    backend: str
    time_limit: float
    exact_time_limit: float
    workers: int
    chunk_rows: int
    exact_chunk_rows: int
    only: tuple[int, ...] | None


@dataclass(frozen=True)
class RowSpec:
    """One table row: its label, solver (None: calibration only) and options; ``fanned``: rows fanned out over the
    worker processes; ``exact``: the row every other is measured against."""

    label: str
    solver: str | None
    options: dict = field(default_factory=dict)
    fanned: bool = False
    exact: bool = False


#: The exact row's bnb options besides its time limit. No Shor re-fits (``refit``): with the ellipsoid bound they
#: no longer prune. On six of the hardest d = 128 rows (open after 1 s) bnb took the same nodes with or without them
#: (405 M vs 404 M on the hardest) and 136 s in all without them, 159 s with (one thread, 2026-12-01).
EXACT_OPTIONS = {"refit": ()}


def parse_settings(argv) -> tuple[Options, Settings]:
    def flags(p):
        p.add_argument("--time-limit", type=float, default=0.25, help="MIQP seconds per row subproblem (0.25)")
        p.add_argument("--exact-time-limit", type=float, default=600.0,
                       help="bnb seconds per row (600: all 25,030 rows proven, the slowest in 439 s, 29 min for the "
                            "command with 2 workers on 2 cores); a row not closed within it keeps its certified bound")
        p.add_argument("--workers", type=positive_int, default=2,
                       help="worker processes of the exact and MIQP rows (2)")
        p.add_argument("--chunk-rows", type=positive_int, default=16, help="rows per fanned-out MIQP task (16)")
        p.add_argument("--exact-chunk-rows", type=positive_int, default=4,
                       help="rows per fanned-out task of the exact row (4: its row times are heavy-tailed)")
        p.add_argument("--backend", default="highs", help="miqp backend: highs | cbc | scip | cvxpy-scip | gurobi")
        p.add_argument("--only", default=None, help="comma-separated row numbers to run (0 = baseline, 1 = exact)")

    opts, ns = parse(__doc__, argv, extra=flags)
    if opts.smoke:
        ns.time_limit, ns.exact_time_limit, ns.workers = 0.05, 1.0, 1
    return opts, Settings(backend=ns.backend, time_limit=ns.time_limit, exact_time_limit=ns.exact_time_limit,
                          workers=ns.workers, chunk_rows=ns.chunk_rows,
                          exact_chunk_rows=ns.exact_chunk_rows,
                          only=tuple(int(i) for i in ns.only.split(",")) if ns.only else None)


def rows_spec(st: Settings, smoke: bool) -> list[RowSpec]:
    """The table's rows. Smoke: bnb with a node budget on 2 rows per segment, MIQP on 1 row of each segment with
    d ≤ 2 (``analysis-sample``; the other rows keep greedy's answer and make no claim)."""
    exact_solver, exact = "bnb", {**EXACT_OPTIONS, "time_limit": st.exact_time_limit}
    miqp, mopts = "miqp", {"backend": st.backend, "time_limit": st.time_limit, "warm_start": "greedy"}

    def sampled(solver, options, **how):
        return smoke_sample.NAME, {"solver": solver, "options": options, **how}

    if smoke:
        exact_solver, exact = sampled("bnb", {**exact, "node_limit": 2000, "sweeps": 20}, row_limit=2)
    where = f"{st.backend}, {st.time_limit:g} s/row" + (", smoke: 1 row/segment, d ≤ 2" if smoke else "")

    def mip(objective):
        if smoke:
            return sampled(miqp, {**mopts, "objective": objective}, row_limit=1, max_d=2)
        return miqp, {**mopts, "objective": objective}

    return [
        RowSpec("baseline (calibration only)", None),
        RowSpec("exact optimum (bnb, proven per row)", exact_solver, exact, fanned=True, exact=True),
        RowSpec(f"MIQP w/o proxy (samples; {where})", *mip("samples"), fanned=True),
        RowSpec(f"MIQP w/ proxy ({where})", *mip("proxy"), fanned=True),
        RowSpec("Rounding Refinement (release)", "rr", {"variant": "release"}),
        RowSpec("Rounding Refinement (paper)", "rr", {"variant": "paper"}),
        RowSpec("AdaRound", "adaround", {"iters": 10} if smoke else {}),
        RowSpec("greedy (one-flip)", "greedy"),
        RowSpec("tabu", "tabu"),
        RowSpec("GPTQ", "gptq"),
    ]


def run_row(opts: Options, st: Settings, spec: RowSpec):
    """(config, cached result) of one table row: calibration only, or calibration + Wqer's rounding step."""
    if spec.solver is None:
        cfg = opts.config("calib")
        return cfg, cached_run(cfg, opts.runs, legacy_ok=LEGACY)
    fan = {}
    if spec.fanned and not opts.smoke:     # smoke: one task per segment (its sample is per solver call)
        fan = {"chunk_rows": st.exact_chunk_rows if spec.exact else st.chunk_rows}
        if st.workers > 1:
            fan.update(executor="process", workers=st.workers)
    cfg = opts.config("wqer", ridge=False, solver=spec.solver, solver_options=spec.options, **fan)
    return cfg, cached_run(cfg, opts.runs, summarise=segment_rows, legacy_ok=LEGACY)


def layers_time(r: dict) -> float:
    """Σ per-layer time of the run (per layer, so resumed runs add up)."""
    from roundlab.pipeline.records import RecordWriter

    recs = RecordWriter(r["paths"]["records"]).read() if r.get("problems") else []
    return sum(rec["time_s"] for rec in recs) if recs else r["times"]["layers_s"]


def effects(preds: dict | None, exact_preds: dict | None) -> dict:
    """The exact run's top-1 / agreement / KL minus this run's on the same images, with paired s.e."""
    out = {}
    for name, key, scale in EFFECTS:
        ok = preds is not None and exact_preds is not None and key in preds
        mean, se = paired_difference(exact_preds[key], preds[key]) if ok else (math.nan, math.nan)
        out[f"exact_minus_{name}"], out[f"exact_minus_{name}_se"] = scale * mean, scale * se
    return out


def table_row(spec: RowSpec, cfg, r: dict, rows: Rows | None, exact: Rows | None, preds, exact_preds) -> dict:
    m = metrics_row(r)
    row = {"method": spec.label, "solver": spec.solver or "-", "settings": settings(spec.options),
           "wall_time_s": r["times"]["calibrate_s"] + layers_time(r),
           "solver_time_s": (r.get("wqer") or {}).get("solver_time_s", 0.0),
           "top1": m["top1"], "agreement": m["agreement"], "kl": m["kl"], "fp_top1": m["fp_top1"],
           "n_eval": m["n_eval"], "run": r["run"], "model": cfg.model, "wbits": cfg.wbits, "abits": cfg.abits,
           "calib_images": cfg.calib_images}
    if rows is not None:
        row.update(wqer_objective=float(rows.objective.sum()), subproblems=len(rows.objective))
    if rows is not None and exact is not None:
        check_aligned(rows, exact, spec.label)
        c = compare(rows, exact)
        row.update({k: c[k] for k in BREAKDOWN[4:]})
        row["lower_bound_sum"] = float((rows.bound.fmax(exact.bound)).nan_to_num(0.0).sum())
    return {**row, **effects(preds, exact_preds)}


def breakdowns(specs, all_rows, exact: Rows, by: str, timings=None) -> list[dict]:
    """:func:`~analysis.optimum.breakdown` of every run; per width also its per-row solver times (``timings``)."""
    out = []
    for i, (s, rows) in enumerate(zip(specs, all_rows)):
        for b in breakdown(rows, exact, by) if rows is not None else ():
            extra = timings[i].get(b["d"], {}) if timings is not None else {}
            out.append({"method": s.label, **b, **extra})
    return out


def main(argv=None):
    opts, st = parse_settings(argv)
    specs = rows_spec(st, opts.smoke)
    chosen = [specs[i] for i in (st.only if st.only is not None else range(len(specs)))]
    runs = [(spec, *run_row(opts, st, spec)) for spec in chosen]
    all_rows = [Rows.from_problems(r["problems"], cfg.solver) if r.get("problems") else None for _, cfg, r in runs]
    preds = [load_predictions(opts.runs, r) for _, _, r in runs]
    left_out = {k: v for rows in all_rows if rows is not None for k, v in rows.left_out.items()}
    if left_out:
        log("left out of the comparison, rounded to nearest by the pipeline whatever the solver: "
            + ", ".join(f"{k} ({v} rows)" for k, v in left_out.items()))
    ex = next((i for i, (spec, _, _) in enumerate(runs) if spec.exact), None)
    if ex is None:
        log("the exact row is not among --only: no comparison with the optimum")
    exact, exact_preds = (all_rows[ex], preds[ex]) if ex is not None else (None, None)
    table = [table_row(spec, cfg, r, rows, exact, p, exact_preds)
             for (spec, cfg, r), rows, p in zip(runs, all_rows, preds)]
    rr = next((t for t in table if t["solver"] == "rr"), None)
    for t in table:
        t["time_vs_rr"] = t["wall_time_s"] / rr["wall_time_s"] if rr else math.nan
    write_csv(opts.out / "table1_solvers.csv", table, COLUMNS)
    plot(table, opts, st, runs[0][1])
    if exact is not None:
        specs_run = [spec for spec, _, _ in runs]
        timings = [timing_by_width(opts.runs / r["run"]) for _, _, r in runs]
        widths = breakdowns(specs_run, all_rows, exact, "d", timings)
        layers = breakdowns(specs_run, all_rows, exact, "layer")
        write_csv(opts.out / "table1_excess_by_width.csv", widths, ["method", "d"] + BREAKDOWN[1:] + TIMING)
        write_csv(opts.out / "table1_excess_by_layer.csv", layers, ["method", "layer"] + BREAKDOWN[1:])
        plot_exact(table, runs[ex][0].label, widths, layers, opts, st, runs[0][1])
    return table


if __name__ == "__main__":
    main()
