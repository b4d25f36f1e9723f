"""bnb's own figures: kernel speed (compiled vs Python), bnb against Gurobi on sampled real rows, and the certified
gap on synthetic d = 384 rows.

    python benchmarks/bench_bnb.py                    # all three parts (~10 minutes on 2 cores)
    python benchmarks/bench_bnb.py --parts kernel     # one part: kernel | gurobi | synthetic
    python benchmarks/bench_bnb.py --smoke            # seconds: tiny budgets

* ``kernel``: 4 synthetic d = 40 rows, tabu warm start, plain form only (``shor=False``), ``--nodes`` nodes per row;
  nodes per second of the numba kernel and of the same code as Python (``search.py_func``).
* ``gurobi``: ``--rows`` sampled rows of each width in ``--widths`` from fmnist-vit W4A4's Wqer problems (the rows
  of benchmarks/bench_exact.py), both solvers warm-started from tabu, ``--time-limit`` seconds per row, one thread:
  rows proven, median seconds per row, Gurobi's objective over bnb's. Skipped without gurobipy.
* ``synthetic``: ``vit_like_problem(8, 384)``: the certified gap of bnb after ``--time-limit`` seconds per row, of
  the mixing bound alone at 1000 sweeps, and bnb's incumbent against tabu.
Not a timed test; numbers vary with machine load.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from roundlab.problem import RoundingProblem, Status  # noqa: E402
from roundlab.solvers import bnb_kernel, get_solver  # noqa: E402
from roundlab.solvers.bound import lower_bound  # noqa: E402
from roundlab.testing.synthetic import vit_like_problem  # noqa: E402


def kernel_speed(nodes: int) -> None:
    p = vit_like_problem(4, 40, seed=3)
    init = get_solver("tabu")(p).delta
    solver = get_solver("bnb", node_limit=nodes, shor=False)
    compiled = bnb_kernel.search
    for label in ("compiled", "python"):
        if label == "python":
            if not bnb_kernel.COMPILED:
                break
            bnb_kernel.search = compiled.py_func
        try:
            solver(p, init=init)                          # compile / warm up
            res = solver(p, init=init)
        finally:
            bnb_kernel.search = compiled
        n, t = int(res.iterations.sum()), float(res.row_time.sum())
        print(f"kernel {label:9s} {n} nodes in {t:.2f} s: {n / t / 1e6:.3f} M nodes/s"
              + ("" if bnb_kernel.COMPILED else " (numba not installed: Python only)"), flush=True)


def sampled_rows(problems: list, d: int, n: int) -> RoundingProblem | None:
    rows = [(p, r) for p in problems if p.d == d for r in range(p.rows)]
    if not rows:
        return None
    pick = torch.randperm(len(rows), generator=torch.Generator().manual_seed(d))[:n].tolist()
    lo = torch.stack([rows[i][0].lo[rows[i][1]] for i in pick])
    hi = torch.stack([rows[i][0].hi[rows[i][1]] for i in pick])
    M = torch.stack([rows[i][0].M for i in pick])
    return RoundingProblem.from_candidates(lo, hi, M=M)


def versus_gurobi(widths: list[int], n: int, time_limit: float) -> None:
    if importlib.util.find_spec("gurobipy") is None:
        print("gurobi: skipped (gurobipy not installed)")
        return
    from bench_exact import capture

    problems = capture("fmnist-vit", 4, 4)
    for d in widths:
        prob = sampled_rows(problems, d, n)
        if prob is None:
            print(f"gurobi: no rows of width {d}")
            continue
        warm = get_solver("tabu")(prob).delta
        b = get_solver("bnb", time_limit=time_limit)(prob, init=warm)
        g = get_solver("miqp", backend="gurobi", time_limit=time_limit)(prob, init=warm)
        proven = (lambda r: sum(s is Status.OPTIMAL for s in r.status))
        print(f"d={d:4d} rows={prob.rows}: gurobi proven {proven(g)} (median {np.median(g.row_time.numpy()):.2f} s), "
              f"bnb proven {proven(b)} (median {np.median(b.row_time.numpy()):.3f} s); gurobi/bnb objective "
              f"{float((g.objective / b.objective).mean()):.4f}", flush=True)


def synthetic_gap(time_limit: float, sweeps: int) -> None:
    p = vit_like_problem(8, 384, seed=0)
    tabu = get_solver("tabu")(p)
    mix = lower_bound(p, "mixing", sweeps=sweeps).bound
    b = get_solver("bnb", time_limit=time_limit, sweeps=sweeps)(p, init=tabu.delta)
    print(f"synthetic d=384: bnb {b.status_counts()}, certified gap {float(b.gap.mean()):.1%}; mixing bound alone "
          f"({sweeps} sweeps) {float(((tabu.objective - mix) / tabu.objective).mean()):.1%}; bnb incumbent / tabu "
          f"{float((b.objective / tabu.objective).mean()):.4f}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="kernel,gurobi,synthetic", help="comma-separated: kernel, gurobi, synthetic")
    ap.add_argument("--nodes", type=int, default=200000, help="kernel part: nodes per row (default 200000)")
    ap.add_argument("--widths", default="32,64,128", help="gurobi part: segment widths (default 32,64,128)")
    ap.add_argument("--rows", type=int, default=10, help="gurobi part: rows per width (default 10)")
    ap.add_argument("--time-limit", type=float, default=10.0, help="seconds per row (gurobi and synthetic parts)")
    ap.add_argument("--sweeps", type=int, default=1000, help="synthetic part: mixing sweeps (default 1000)")
    ap.add_argument("--smoke", action="store_true", help="seconds: tiny budgets")
    args = ap.parse_args(argv)
    if args.smoke:
        args.nodes, args.widths, args.rows, args.time_limit, args.sweeps = 2000, "16", 2, 0.5, 20
    torch.set_num_threads(1)
    parts = args.parts.split(",")
    if "kernel" in parts:
        kernel_speed(args.nodes)
    if "gurobi" in parts:
        versus_gurobi([int(w) for w in args.widths.split(",")], args.rows, args.time_limit)
    if "synthetic" in parts:
        synthetic_gap(args.time_limit, args.sweeps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
