"""Rounding solvers on synthetic ViT-like problems: time, objective vs nearest and vs the best known, MIQP status mix.

    python benchmarks/bench_solvers.py                      # defaults: a few minutes on 2 CPU cores
    python benchmarks/bench_solvers.py --smoke              # seconds: the same code on tiny sizes
    python benchmarks/bench_solvers.py --d 64,384 --rows 1152 --time-limit 30 --out bench.json

Problems (``roundlab.testing.synthetic.vit_like_problem``): post-LN-like activations (correlated channels, offsets,
two heavy outlier channels ×20), Gaussian weights, a 4-bit asymmetric per-row grid fitted to 0.9× the row's range
(so some elements are clamped), ``M = XᵀX/N``. For each d:

1. the heuristic solvers on all ``--rows`` rows (batched);
2. on the first ``--miqp-rows`` rows only (MIQP is row by row, each with ``--time-limit`` seconds; these rows are few
   so the defaults finish in minutes): every MIQP backend, the heuristics again on the same rows, and a certified
   lower bound (``roundlab.solvers.bound.lower_bound``, method ``--bound``);
3. "best known" per row = the lowest objective any solver reached on it.

Then Rounding Refinement, release variant, incremental (rank-one gradient updates) vs the plain reference that
recomputes 2Mδ and both losses every iteration, at ``--rr-d`` × ``--rr-rows`` (384 × 1152 by default): once with the
authors' block loop (``loop="release"``: runs until every row rejects in the same pass, i.e. usually 100 passes) and
once with the same per-row stopping as the incremental version (the per-iteration cost alone). Results must be
identical. Timings use ``--threads`` torch threads (default 1: on a shared 2-core machine more threads are slower).
Not a timed test; numbers vary with machine load.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from roundlab.solvers import get_solver  # noqa: E402
from roundlab.solvers.bound import lower_bound  # noqa: E402
from roundlab.solvers.miqp import available_backends  # noqa: E402
from roundlab.testing.synthetic import vit_like_problem  # noqa: E402

HEURISTICS = "nearest,rr,rr:variant=paper,greedy,greedy:start=gptq,tabu,gptq,adaround"   # adaround last (--smoke)


def parse_spec(spec: str) -> tuple[str, dict]:
    """``name:key=value;key=value`` → (name, options); values parsed as int/float/bool/None when they look so."""
    name, _, opts = spec.partition(":")
    options = {}
    for item in filter(None, opts.split(";")):
        k, _, v = item.partition("=")
        for conv in (int, float):
            try:
                v = conv(v)
                break
            except ValueError:
                pass
        options[k] = {"True": True, "False": False, "None": None}.get(v, v) if isinstance(v, str) else v
    return name, options


def run(label: str, solver, problem) -> dict:
    res = solver(problem)
    return {"label": label, "objective": res.objective, "time": res.time, "status": res.status_counts(),
            "fallback": int(res.fallback.sum()), "summary": res.summary()}


def table(title: str, rows: list[dict], nearest: torch.Tensor, best: torch.Tensor, n_rows: int) -> list[dict]:
    print(f"\n{title}")
    print(f"  {'solver':28s} {'time s':>9s} {'ms/row':>8s} {'obj/nearest':>12s} {'obj/best':>10s}  status")
    out = []
    for r in rows:
        rel_n = float(r["objective"].sum() / nearest.sum())
        rel_b = float(r["objective"].sum() / best.sum())
        st = ", ".join(f"{k}:{v}" for k, v in sorted(r["status"].items()))
        print(f"  {r['label']:28s} {r['time']:9.3f} {1e3 * r['time'] / n_rows:8.2f} {rel_n:12.4f} {rel_b:10.4f}  {st}")
        out.append({"solver": r["label"], "time_s": r["time"], "obj_over_nearest": rel_n, "obj_over_best": rel_b,
                    "status": r["status"], "fallback": r["fallback"], "summary": r["summary"]})
    return out


def bench_d(d: int, args) -> dict:
    p = vit_like_problem(args.rows, d, N=args.samples, seed=args.seed, device=args.device)
    nearest = p.objective(p.nearest()).cpu()
    heur = []
    for spec in args.solvers.split(","):
        name, opts = parse_spec(spec)
        heur.append(run(spec, get_solver(name, **opts), p))
    # MIQP rows
    m = min(args.miqp_rows, args.rows)
    sub = p.subproblem(slice(0, m)) if m else None
    sub_rows, bound = [], None
    if sub is not None:
        for spec in args.solvers.split(","):
            name, opts = parse_spec(spec)
            sub_rows.append(run(spec, get_solver(name, **opts), sub))
        for backend in args.miqp_backends.split(","):
            if backend not in available_backends():
                print(f"  (miqp backend {backend} not installed: skipped)")
                continue
            opts = {"backend": backend, "time_limit": args.time_limit}
            if args.miqp_warm_start != "default":
                opts["warm_start"] = None if args.miqp_warm_start == "none" else args.miqp_warm_start
            r = run(f"miqp:{backend}", get_solver("miqp", **opts), sub)
            r["backend_status"] = r["summary"].get("backend_status")
            sub_rows.append(r)
        if args.bound != "none":
            b = lower_bound(sub, args.bound)
            bound = {"bound": b.bound, "time": b.time, "info": b.info}
    best = torch.stack([r["objective"] for r in heur]).min(0).values
    if sub is not None:
        best_sub = torch.stack([r["objective"] for r in sub_rows]).min(0).values
        best[:m] = torch.minimum(best[:m], best_sub)
    print(f"\n=== d = {d}: {args.rows} rows, N = {args.samples}, 4-bit per-row grid, "
          f"{int((~p.free).sum())} clamped elements ===")
    out = {"d": d, "rows": args.rows,
           "all_rows": table(f"all {args.rows} rows (batched)", heur, nearest, best, args.rows)}
    if sub is not None:
        out["miqp_rows"] = table(f"first {m} rows (MIQP row by row, {args.time_limit:g} s limit per row)",
                                 sub_rows, nearest[:m], best[:m], m)
        for r, rec in zip(sub_rows, out["miqp_rows"]):
            if "backend_status" in r:
                rec["backend_status"] = r["backend_status"]
                print(f"    {r['label']}: backend said {r['backend_status']}")
        if bound is not None:
            ratio = float(bound["bound"].sum() / best[:m].sum())
            gap = float(((best[:m] - bound["bound"]) / best[:m]).max())
            print(f"  lower bound ({args.bound}: {bound['info']['chosen']}): bound/best = {ratio:.4f}, "
                  f"max gap of best known to bound = {100 * gap:.2f}%, {bound['time']:.2f} s")
            out["bound"] = {"method": args.bound, "bound_over_best": ratio, "max_gap_best_vs_bound": gap,
                            "time_s": bound["time"], "chosen": bound["info"]["chosen"]}
    return out


def bench_rr(args) -> dict:
    p = vit_like_problem(args.rr_rows, args.rr_d, N=args.samples, seed=args.seed, device=args.device)
    runs = {}
    for label, opts in [("incremental", {}), ("reference, authors' loop", {"incremental": False, "loop": "release"}),
                        ("reference, per-row stop", {"incremental": False})]:
        best = None
        for _ in range(args.repeat):
            res = get_solver("rr", variant="release", **opts)(p)
            best = res if best is None or res.time < best.time else best
        runs[label] = best
    inc = runs["incremental"]
    print(f"\n=== rr release: incremental vs reference (recomputes 2Mδ), d = {args.rr_d}, R = {args.rr_rows}, "
          f"best of {args.repeat} ===")
    out = {"d": args.rr_d, "rows": args.rr_rows, "runs": {}}
    for label, res in runs.items():
        same = torch.equal(res.delta, inc.delta)
        speed = res.time / inc.time
        print(f"  {label:28s} {res.time:8.3f} s  passes {res.info['loop_iterations']:3d}  flips "
              f"{int(res.iterations.sum()):6d}  identical δ: {same}  incremental speed-up: {speed:6.1f}×")
        out["runs"][label] = {"time_s": res.time, "passes": res.info["loop_iterations"],
                              "flips": int(res.iterations.sum()), "identical": same, "speedup": speed}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d", default="16,32,64,192,384", help="segment widths, comma-separated")
    ap.add_argument("--rows", type=int, default=384, help="rows per problem (ViT-S proj/fc2 output width)")
    ap.add_argument("--samples", type=int, default=2048, help="calibration samples N behind M")
    ap.add_argument("--solvers", default=HEURISTICS, help="batched solvers, name[:key=value;...], comma-separated")
    ap.add_argument("--miqp-rows", type=int, default=2, help="rows solved by every MIQP backend (0: skip)")
    ap.add_argument("--miqp-backends", default="cbc,highs,scip,cvxpy-scip")
    ap.add_argument("--miqp-warm-start", default="default",
                    help="'default' (the solver's: greedy), 'none' (nearest) or a solver name")
    ap.add_argument("--time-limit", type=float, default=10.0, help="MIQP seconds per row")
    ap.add_argument("--bound", default="auto",
                    help="lower-bound method on the MIQP rows (auto|eig|jacobi|mixing|sdp|none)")
    ap.add_argument("--rr-d", type=int, default=384)
    ap.add_argument("--rr-rows", type=int, default=1152, help="rows of the rr comparison (ViT-S qkv: 1152)")
    ap.add_argument("--repeat", type=int, default=3, help="rr comparison: best of this many runs")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    if args.smoke:
        args.d, args.rows, args.miqp_rows, args.time_limit = "16,32", 32, 1, 2.0
        args.rr_d, args.rr_rows, args.repeat, args.solvers = 64, 128, 1, HEURISTICS + ":iters=200"
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    results = {"config": vars(args), "torch": torch.__version__, "machine": platform.platform(),
               "threads": torch.get_num_threads(), "sizes": []}
    for d in [int(x) for x in args.d.split(",") if x]:
        results["sizes"].append(bench_d(d, args))
    if args.rr_rows > 0:
        results["rr_compare"] = bench_rr(args)
    results["total_s"] = time.perf_counter() - t0
    print(f"\ntotal {results['total_s']:.1f} s")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1, default=str))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
