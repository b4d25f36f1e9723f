"""Ablation runs: one cached ERQ run per (model, row spec), one metrics row per run; the one-knob sweeps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from analysis.csvout import write_csv
from analysis.options import Options, parse
from analysis.runs import cached_run, metrics_row, settings

ABLATION_COLUMNS = ["model", "row", "label", "method", "settings", "top1", "agreement", "kl", "quant_time_s",
                    "fp_top1", "n_eval", "calib_images", "wbits", "abits", "solver"]


def run_rows(opts: Options, specs: list[tuple[str, dict]]) -> tuple[list[dict], dict]:
    """Run ``(label, {"method": ..., **ERQConfig overrides})`` per model of ``opts`` (cached); one row per run."""
    rows, cfgs = [], {}
    for model in opts.models:
        for i, (label, spec) in enumerate(specs):
            spec = dict(spec)
            method = spec.pop("method", "erq")
            cfg = opts.with_model(model).config(method, **spec)
            cfgs[(model, label)] = cfg
            r = cached_run(cfg, opts.runs)
            rows.append({"model": model, "row": i, "label": label, "method": method, "settings": settings(spec),
                         **metrics_row(r), "calib_images": cfg.calib_images, "wbits": cfg.wbits,
                         "abits": cfg.abits, "solver": cfg.solver if cfg.wqer and cfg.rounding else "-"})
    return rows, cfgs


@dataclass
class Sweep:
    """What :func:`sweep` returns: the options, the swept values, one row per run, the configs."""

    opts: Options
    values: list
    rows: list[dict]
    cfgs: dict


def sweep(doc: str, argv, *, name: str, option: str, key: str, full: str, smoke: str, cast: Callable,
          label: Callable, spec: Callable, what: str, paper: dict | None = None, full_eval: int = 5000) -> Sweep:
    """The shared scaffolding of the one-knob ablations (Fig. 4, Tables 5 and 7).

    Parses the common options plus ``--models`` and ``--<option>`` (comma-separated ``what``; default ``full``,
    smoke ``smoke``), runs ``(label(v), spec(v))`` per value and model through :func:`run_rows` (cached), adds the
    value as column ``key`` (and ``paper_top1_deit_s`` from ``paper``), and writes ``<out>/<name>.csv`` with
    ``[key] + ABLATION_COLUMNS (+ paper_top1_deit_s)``. The caller plots."""
    def knob(p):
        p.add_argument(f"--{option}", default=None, help=f"comma-separated {what} (default {full}; smoke {smoke})")

    opts, ns = parse(doc, argv, full_eval=full_eval, models=True, extra=knob)
    raw = getattr(ns, option.replace("-", "_")) or (smoke if opts.smoke else full)
    values = [cast(x) for x in raw.split(",")]
    rows, cfgs = run_rows(opts, [(label(v), spec(v)) for v in values])
    for r in rows:
        r[key] = values[r["row"]]
        if paper is not None:
            r["paper_top1_deit_s"] = paper.get(r[key])
    write_csv(opts.out / f"{name}.csv", rows,
              [key] + ABLATION_COLUMNS + (["paper_top1_deit_s"] if paper is not None else []))
    return Sweep(opts, values, rows, cfgs)
