"""Subproblems per second of Table 1's MIQP row on 1 and 2 local worker processes and on Ray.

    python benchmarks/bench_fanout.py                       # defaults: ~5 minutes on 2 CPU cores
    python benchmarks/bench_fanout.py --smoke               # seconds: the same code on a few rows
    python benchmarks/bench_fanout.py --rows 2048 --time-limit 0.25 --setups serial,process:1,process:2,ray:2

Workload: the real Wqer segments of ``--model`` (W``--wbits``A``--abits``, 32 calibration images) that Table 1's
MIQP rows solve exactly, i.e. those of width d ≤ ``--max-d``, captured by one ERQ run with the greedy solver (MIQP's
warm start). The first ``--rows`` of their rows are solved with ``miqp`` (``--backend``, proxy objective,
``--time-limit`` seconds per row, greedy warm start) in tasks of ``--chunk-rows`` rows, through each executor
setup in ``--setups`` (``name:workers``). Worker start-up is timed separately (``start_s``) and excluded from the
throughput. Answers are compared with the serial run's: rows that hit the time limit may legitimately differ
(their answer depends on how far the search got), every other row must be identical. Each setup writes into a
fresh results store, as the pipeline does. Not a timed test; numbers vary with machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from roundlab.fanout import FannedSolver, ResultStore, get_executor  # noqa: E402
from roundlab.problem import Status  # noqa: E402
from roundlab.solvers import get_solver  # noqa: E402


def capture_segments(model_name: str, wbits: int, abits: int, max_d: int, rows: int) -> list:
    """The Wqer rounding problems of width ≤ max_d from one ERQ run (greedy), until ``rows`` rows are collected."""
    from roundlab.pipeline.config import ERQConfig
    from roundlab.pipeline.run import erq_quantize, load_run_data

    cfg = ERQConfig.for_method("erq", model=model_name, wbits=wbits, abits=abits, solver="greedy")
    model, calib, _, _ = load_run_data(cfg.replace(heldout_images=0))
    found: list = []

    def keep(layer, step, problem, result, S):
        if problem.d <= max_d and sum(p.rows for p in found) < rows:
            found.append(problem)

    erq_quantize(model, calib, cfg, on_problem=keep)
    out, left = [], rows
    for p in found:
        if left <= 0:
            break
        take = min(p.rows, left)
        out.append(p.subproblem(slice(0, take)))
        left -= take
    return out


def run_setup(name: str, workers: int, problems: list, solver, chunk_rows: int, store_dir: Path) -> dict:
    t0 = time.perf_counter()
    ex = get_executor(name, workers=workers)
    if hasattr(ex, "start"):
        ex.start()
    elif name == "ray":                      # warm every slot once so Ray's worker start-up is not in the timing
        list(ex.run(abs, list(range(workers * 2))))
    start_s = time.perf_counter() - t0
    store = ResultStore(store_dir / f"{name}-{workers}.sqlite")
    fanned = FannedSolver(solver, ex, store, chunk_rows=chunk_rows)
    t0 = time.perf_counter()
    results = [fanned(p) for p in problems]
    wall = time.perf_counter() - t0
    fanned.close()
    n = sum(p.rows for p in problems)
    status: dict[str, int] = {}
    for r in results:
        for k, v in r.status_counts().items():
            status[k] = status.get(k, 0) + v
    return {"executor": name, "workers": workers, "start_s": start_s, "wall_s": wall, "rows": n,
            "tasks": fanned.report()["tasks_solved"], "rows_per_s": n / wall, "status": status,
            "objective": float(sum(float(r.objective.sum()) for r in results)), "_results": results}


def compare(reference: list, results: list) -> dict:
    """Rows whose answer differs from the reference, split by whether either run hit the time limit."""
    same = limited = differ = 0
    for a, b in zip(reference, results):
        eq = (a.delta == b.delta).all(1)
        tl = torch.tensor([s == Status.TIME_LIMIT or t == Status.TIME_LIMIT for s, t in zip(a.status, b.status)])
        same += int(eq.sum())
        limited += int((~eq & tl).sum())
        differ += int((~eq & ~tl).sum())
    return {"identical_rows": same, "differ_time_limited": limited, "differ_otherwise": differ}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="fmnist-vit")
    p.add_argument("--wbits", type=int, default=4)
    p.add_argument("--abits", type=int, default=4)
    p.add_argument("--max-d", type=int, default=16, help="widest segment solved by MIQP (Table 1 default: 16)")
    p.add_argument("--rows", type=int, default=1024, help="row subproblems per setup")
    p.add_argument("--backend", default="highs")
    p.add_argument("--time-limit", type=float, default=0.25, help="seconds per row (Table 1 default: 0.25)")
    p.add_argument("--chunk-rows", type=int, default=16)
    p.add_argument("--setups", default="serial:1,process:1,process:2,ray:2",
                   help="comma-separated executor:workers")
    p.add_argument("--smoke", action="store_true", help="seconds: 32 rows, serial and process:2 only")
    p.add_argument("--out", type=Path, default=None, help="JSON output (default: runs/bench_fanout.json)")
    args = p.parse_args(argv)
    if args.smoke:
        args.rows, args.setups = 32, "serial:1,process:2"
    torch.set_num_threads(1)
    setups = [(s.split(":")[0], int(s.split(":")[1]) if ":" in s else 1) for s in args.setups.split(",")]

    t = time.perf_counter()
    problems = capture_segments(args.model, args.wbits, args.abits, args.max_d, args.rows)
    print(f"captured {sum(q.rows for q in problems)} rows in {len(problems)} segments (d ≤ {args.max_d}) of "
          f"{args.model} W{args.wbits}A{args.abits} in {time.perf_counter() - t:.1f} s", flush=True)
    solver = get_solver("miqp", backend=args.backend, time_limit=args.time_limit, warm_start="greedy")

    rows, reference = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for name, workers in setups:
            r = run_setup(name, workers, problems, solver, args.chunk_rows, Path(tmp))
            results = r.pop("_results")
            if reference is None:
                reference = results
            r["vs_first_setup"] = compare(reference, results)
            rows.append(r)
            print(f"{name:8s} workers {workers}: {r['rows_per_s']:7.2f} rows/s  wall {r['wall_s']:7.1f} s  "
                  f"start {r['start_s']:5.1f} s  status {r['status']}  vs first: {r['vs_first_setup']}", flush=True)

    base = rows[0]["rows_per_s"]
    print(f"\n{'setup':14s} {'rows/s':>8s} {'speed-up':>9s} {'identical':>10s} {'differ (time limit)':>20s} "
          f"{'differ (other)':>15s}")
    for r in rows:
        c = r["vs_first_setup"]
        print(f"{r['executor'] + ':' + str(r['workers']):14s} {r['rows_per_s']:8.2f} {r['rows_per_s'] / base:8.2f}x "
              f"{c['identical_rows']:10d} {c['differ_time_limited']:20d} {c['differ_otherwise']:15d}")
    out = args.out or Path("runs") / "bench_fanout.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"args": {k: str(v) for k, v in vars(args).items()}, "cpu_count": os.cpu_count(),
            "load_avg": os.getloadavg(), "platform": platform.platform(), "torch": torch.__version__}
    out.write_text(json.dumps({"meta": meta, "setups": rows}, indent=2, default=str))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
