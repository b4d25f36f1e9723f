"""A run's totals for ``result.json`` and the plain results table ``roundlab quantize`` prints."""

from __future__ import annotations


def sum_wqer(records: list[dict]) -> dict:
    """Wqer objectives, solver time and status counts summed over the layer records."""
    out = {"objective": 0.0, "objective_nearest": 0.0, "solver_time_s": 0.0, "status": {}}
    for r in records:
        w = r.get("wqer") or {}
        for k in ("objective", "objective_nearest", "solver_time_s"):
            out[k] += w.get(k, 0.0)
        for k, v in w.get("status", {}).items():
            out["status"][k] = out["status"].get(k, 0) + v
    return out


def print_table(results: list[dict], file=None) -> None:
    """A plain results table: one row per run."""
    head = f"{'model':12s} {'W/A':5s} {'method':7s} {'solver':9s} {'top1':>6s} {'top5':>6s} " \
           f"{'agree':>6s} {'KL':>8s} {'time s':>7s}"
    print(head, file=file)
    print("-" * len(head), file=file)
    for r in results:
        c, m = r["config"], r["quantized"]
        solver = c["solver"] if c["wqer"] else "-"
        print(f"{c['model']:12s} W{c['wbits']}A{c['abits']} {c['method']:7s} {solver:9s} "
              f"{100 * m['top1']:6.2f} {100 * m.get('top5', float('nan')):6.2f} {100 * m['agreement']:6.2f} "
              f"{m['kl']:8.4f} {r['times']['total_s']:7.1f}", file=file)
    if results:
        fp = results[0]["fp"]
        print(f"FP reference: top1 {100 * fp['top1']:.2f}", file=file)
