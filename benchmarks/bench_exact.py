"""Exact rounding on every Wqer row of a model: how many rows ``bnb`` proves optimal, how fast, and how far every
heuristic is from the proven optimum.

    python benchmarks/bench_exact.py                          # fmnist-vit W4A4, all 25,350 rows, 2 workers
    python benchmarks/bench_exact.py --smoke                  # seconds: 4 segments of each width
    python benchmarks/bench_exact.py --max-rows-per-d 20 --time-limit 60 --workers 1   # a sample per width

Workload: the Wqer rounding problems as Table 1 poses them (calibration + Wqer's rounding step alone: no Aqer, no
ridge; 32 calibration images), i.e. exactly the rows Table 1 solves. Every row is solved by ``bnb`` (from greedy,
tabu on the wide rows its probe leaves open, ``--time-limit`` seconds per row) through the package's fan-out
(``--executor``/``--workers``, ``--chunk-rows`` rows per task) into a results store (``--store``), so a killed run
resumes where it stopped. The heuristics (nearest, rr, gptq, greedy, tabu) are run on the same rows; their summed objective over the summed proven optimum is reported per width. The samples
objective ("MIQP w/o proxy") has the same optimum on every row — its Gram matrix is M — so one exact row serves both.
Prints per width: rows, proven share, median / p90 / max seconds per row, nodes per second, the certified gap left
on unproven rows, and the heuristics' excess. Not a timed test; numbers vary with machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from roundlab.fanout import FannedSolver, ResultStore, get_executor  # noqa: E402
from roundlab.problem import Status  # noqa: E402
from roundlab.solvers import bnb_kernel, get_solver  # noqa: E402

HEURISTICS = ("nearest", "rr", "gptq", "greedy", "tabu")


def capture(model_name: str, wbits: int, abits: int) -> list:
    """Every Wqer rounding problem of ``model_name`` as Table 1 poses them: calibration, then Wqer's rounding step
    alone (no Aqer, no ridge), so every segment's rows are the same whatever answered the segments before them
    (captured under ``nearest``, the cheapest)."""
    from roundlab.pipeline.config import ERQConfig
    from roundlab.pipeline.run import erq_quantize, load_run_data

    cfg = ERQConfig.for_method("wqer", model=model_name, wbits=wbits, abits=abits, solver="nearest")
    cfg = cfg.replace(ridge=False)
    model, calib, _, _ = load_run_data(cfg.replace(heldout_images=0))
    found: list = []
    erq_quantize(model, calib, cfg, on_problem=lambda layer, step, problem, result, S: found.append(problem))
    return found


def sample(problems: list, per_d: int | None) -> list:
    """At most ``per_d`` rows of each width (the first rows of its segments, in order)."""
    if per_d is None:
        return problems
    left: dict[int, int] = defaultdict(lambda: per_d)
    out = []
    for p in problems:
        take = min(p.rows, left[p.d])
        if take > 0:
            out.append(p.subproblem(slice(0, take)))
            left[p.d] -= take
    return out


def summarise(problems: list, exact: list, heur: dict) -> dict:
    per_d: dict = defaultdict(lambda: defaultdict(list))
    for i, (p, res) in enumerate(zip(problems, exact)):
        b = per_d[p.d]
        b["time"] += res.row_time.tolist()
        b["nodes"] += res.iterations.tolist()
        b["proven"] += [s is Status.OPTIMAL for s in res.status]
        b["objective"] += res.objective.tolist()
        b["bound"] += res.bound.tolist()
        for name in HEURISTICS:
            b[name] += heur[name][i].tolist()
    table = {}
    for d in sorted(per_d):
        b = {k: np.asarray(v, dtype=float) for k, v in per_d[d].items()}
        proven = b["proven"].astype(bool)
        opt = b["objective"]
        rest = ~proven
        row = {"rows": int(opt.size), "proven": int(proven.sum()),
               "median_ms": float(np.median(b["time"]) * 1e3), "p90_ms": float(np.percentile(b["time"], 90) * 1e3),
               "max_s": float(b["time"].max()), "nodes": int(b["nodes"].sum()),
               "nodes_per_s": float(b["nodes"].sum() / max(b["time"].sum(), 1e-12)),
               "unproven_gap": float((opt[rest].sum() - b["bound"][rest].sum()) / opt[rest].sum()) if rest.any()
               else 0.0,
               "sum_objective": float(opt.sum()), "sum_bound": float(b["bound"].sum())}
        for name in HEURISTICS:
            row[f"{name}/opt"] = float(b[name].sum() / max(opt.sum(), 1e-300))
        table[d] = row
    return table


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="fmnist-vit", help="zoo model or timm name (default: fmnist-vit)")
    ap.add_argument("--wbits", type=int, default=4, help="weight bits (default 4)")
    ap.add_argument("--abits", type=int, default=4, help="activation bits (default 4)")
    ap.add_argument("--time-limit", type=float, default=60.0, help="bnb seconds per row (default 60)")
    ap.add_argument("--executor", default="process", help="fan-out executor: serial | process | ray")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--chunk-rows", type=int, default=16, help="rows per task (default 16)")
    ap.add_argument("--max-rows-per-d", type=int, default=None, help="solve only this many rows of each width")
    ap.add_argument("--store", type=Path, default=Path("runs") / "bench_exact.sqlite",
                    help="results store (a rerun reuses its answers; delete it to start over)")
    ap.add_argument("--smoke", action="store_true", help="seconds: 4 rows of each width, 5 s per row")
    ap.add_argument("--out", type=Path, default=Path("runs") / "bench_exact.json", help="JSON output")
    args = ap.parse_args(argv)
    if args.smoke:
        args.max_rows_per_d, args.time_limit = 4, 5.0
        args.store = args.store.with_name("bench_exact_smoke.sqlite")
    torch.set_num_threads(1)

    t = time.perf_counter()
    problems = sample(capture(args.model, args.wbits, args.abits), args.max_rows_per_d)
    rows = sum(p.rows for p in problems)
    print(f"captured {rows} rows in {len(problems)} segments of {args.model} W{args.wbits}A{args.abits} "
          f"in {time.perf_counter() - t:.1f} s; bnb kernel compiled: {bnb_kernel.COMPILED}", flush=True)

    t = time.perf_counter()
    heur = {name: [get_solver(name)(p).objective for p in problems] for name in HEURISTICS}
    heur_s = time.perf_counter() - t

    args.store.parent.mkdir(parents=True, exist_ok=True)
    executor = get_executor(args.executor, workers=args.workers)
    fanned = FannedSolver(get_solver("bnb", time_limit=args.time_limit), executor, ResultStore(args.store),
                          chunk_rows=args.chunk_rows)
    t = time.perf_counter()
    exact = []
    for i, p in enumerate(problems):
        exact.append(fanned(p))
        done = sum(q.rows for q in problems[:i + 1])
        print(f"\r  bnb: {done}/{rows} rows, {time.perf_counter() - t:.0f} s", end="", flush=True)
    wall = time.perf_counter() - t
    report = fanned.report()
    fanned.close()
    print()

    table = summarise(problems, exact, heur)
    proven = sum(r["proven"] for r in table.values())
    print(f"\nbnb: {proven}/{rows} rows proven optimal, wall {wall:.0f} s on {args.workers} {args.executor} "
          f"worker(s) (tasks solved {report['tasks_solved']}, reused {report['tasks_reused']}); "
          f"heuristics {heur_s:.0f} s")
    hdr = (f"{'d':>5s} {'rows':>6s} {'proven':>7s} {'median ms':>10s} {'p90 ms':>8s} {'max s':>7s} "
           f"{'Mnodes/s':>9s} {'gap left':>9s} " + " ".join(f"{h + '/opt':>11s}" for h in HEURISTICS))
    print(hdr)
    for d, r in table.items():
        print(f"{d:5d} {r['rows']:6d} {r['proven']:7d} {r['median_ms']:10.2f} {r['p90_ms']:8.1f} {r['max_s']:7.2f} "
              f"{r['nodes_per_s'] / 1e6:9.2f} {r['unproven_gap']:9.2%} "
              + " ".join(f"{r[h + '/opt']:11.4f}" for h in HEURISTICS))
    meta = {"args": {k: str(v) for k, v in vars(args).items()}, "cpu_count": os.cpu_count(),
            "load_avg": os.getloadavg(), "platform": platform.platform(), "torch": torch.__version__,
            "compiled": bnb_kernel.COMPILED, "wall_s": wall, "heuristics_s": heur_s, "proven": proven, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "per_d": table}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
