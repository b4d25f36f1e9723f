"""The ERQ results table on the embedded default: RTN, calibration only, + Aqer, + Wqer, full ERQ with each solver.

    python benchmarks/bench_pipeline.py                       # W4A4 and W3A3 on fmnist-vit, every row
    python benchmarks/bench_pipeline.py --settings 4/4 --solvers rr greedy --eval-images 2000
    python benchmarks/bench_pipeline.py --jobs 8 --threads 2     # rows in 8 processes of 2 threads each

Each row is one ``run_erq`` (its JSON lands in ``--runs-dir``); the table is printed as Markdown and written, with
the per-row configs, to ``--out``. Times are wall-clock on this machine: "pipeline" is activation calibration +
reparameterisation + all layers (Aqer, weight calibration, Wqer), "total" adds loading and evaluation.
"""

from __future__ import annotations

import argparse
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from roundlab.pipeline.config import ERQConfig
from roundlab.pipeline.run import run_erq

#: (row label, method, solver, solver options)
SOLVER_ROWS = {
    "nearest": ("nearest", {}),
    "rr": ("rr", {"variant": "release"}),
    "rr-paper": ("rr", {"variant": "paper"}),
    "greedy": ("greedy", {}),
    "gptq": ("gptq", {}),
    "adaround": ("adaround", {}),
}


def rows(solvers: list[str]) -> list[tuple[str, str, str, dict]]:
    out = [("RTN (min/max)", "rtn", "nearest", {}), ("calibration only", "calib", "nearest", {}),
           ("+ Aqer", "aqer", "nearest", {}), ("+ Wqer (rr)", "wqer", "rr", {"variant": "release"})]
    for name in solvers:
        solver, opts = SOLVER_ROWS[name]
        out.append((f"ERQ, {name}", "erq", solver, opts))
    return out


def _run_one(job) -> dict:
    label, cfg, run_dir, threads = job
    if threads:
        torch.set_num_threads(threads)
    r = run_erq(cfg, run_dir=run_dir, fresh=True, progress=False)
    print(f"done: W{cfg.wbits}A{cfg.abits} {label}: top1 {100 * r['quantized']['top1']:.2f} "
          f"({r['times']['total_s']:.0f} s, {torch.get_num_threads()} threads)", flush=True)
    return {"row": label, "result": r}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="fmnist-vit")
    p.add_argument("--settings", nargs="+", default=["4/4", "3/3"], help="W/A bit pairs")
    p.add_argument("--solvers", nargs="+", default=list(SOLVER_ROWS), choices=list(SOLVER_ROWS))
    p.add_argument("--eval-images", type=int, default=None)
    p.add_argument("--lam", type=float, default=1e4)
    p.add_argument("--head-lam", default="shared", choices=["shared", "release"])
    p.add_argument("--data-flow", default="independent", choices=["independent", "sequential"])
    p.add_argument("--runs-dir", default="runs/bench_pipeline")
    p.add_argument("--out", default="runs/bench_pipeline/table.json")
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-root", default=None)
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    p.add_argument("--threads", type=int, default=None, help="torch threads per run (default: torch's)")
    args = p.parse_args(argv)

    jobs = []
    for setting in args.settings:
        w, a = (int(x) for x in setting.split("/"))
        for label, method, solver, opts in rows(args.solvers):
            cfg = ERQConfig.for_method(method, model=args.model, wbits=w, abits=a, solver=solver,
                                       solver_options=opts, lam=args.lam, head_lam=args.head_lam, data_flow=args.data_flow,
                                       eval_images=args.eval_images,
                                       device=args.device, data_root=args.data_root)
            run_dir = Path(args.runs_dir) / f"W{w}A{a}-{label.replace(' ', '_').replace(',', '')}"
            jobs.append((label, cfg, str(run_dir), args.threads))
    print(f"{len(jobs)} runs, {args.jobs} at a time, {args.threads} torch threads each, cpus: {os.cpu_count()}",
          flush=True)
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(_run_one, jobs))
    else:
        results = [_run_one(j) for j in jobs]
    lines = ["| W/A | row | top-1 % | agree % | KL (nats) | Wqer Σ obj / nearest | pipeline s | total s |",
             "|---|---|---|---|---|---|---|---|"]
    for item in results:
        label, r = item["row"], item["result"]
        c, q, t, wq = r["config"], r["quantized"], r["times"], r["wqer"]
        ratio = wq["objective"] / wq["objective_nearest"] if wq["objective_nearest"] else float("nan")
        lines.append(f"| W{c['wbits']}A{c['abits']} | {label} | {100 * q['top1']:.2f} | {100 * q['agreement']:.2f} | "
                     f"{q['kl']:.4f} | {ratio:.3f} | {t['calibrate_s'] + t['layers_s']:.1f} | {t['total_s']:.1f} |")
    fp = results[-1]["result"]["fp"]
    lines.append(f"| | FP reference | {100 * fp['top1']:.2f} | 100 | 0 | | | |")
    print("\n".join(lines))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"table": lines, "runs": results}, indent=1, default=float))


if __name__ == "__main__":
    main()
