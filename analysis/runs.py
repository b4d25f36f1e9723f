"""The run cache: one directory per ERQConfig under the ``--runs`` root, resumable, reused once finished.

:func:`cached_run` returns the pipeline's ``result.json`` with ``"run"`` (the directory relative to the root) and,
when a ``summarise`` function is given, ``"problems"``: the run's per-segment problem log
(:mod:`analysis.problem_log`). :func:`metrics_row` reads a result's headline numbers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from analysis.log import log
from analysis.problem_log import DONE, PROBLEMS, Summarise, open_log, read_problems


def run_dir(cfg, root: Path) -> Path:
    ev = "all" if cfg.eval_images is None else str(cfg.eval_images)
    return Path(root) / f"{cfg.model}-W{cfg.wbits}A{cfg.abits}-{cfg.method}-{cfg.solver}-{cfg.digest()}-e{ev}"


def legacy_run(cfg, root: Path, ignore: tuple[str, ...]) -> Path | None:
    """A finished run made before the ERQConfig fields ``ignore`` existed, whose config equals ``cfg`` otherwise.

    Only for fields the caller knows have no effect on this config (e.g. ``head_lam`` with Aqer off)."""
    want = {k: v for k, v in cfg.to_dict().items() if k not in ignore}
    name = run_dir(cfg, root).name
    prefix, ev = name.rsplit("-", 2)[0], name.rsplit("-", 1)[1]
    for d in sorted(Path(root).glob(f"{prefix}-*-{ev}")):
        try:
            old = json.loads((d / "config.json").read_text())["config"]
        except (OSError, ValueError, KeyError):
            continue
        if (d / "result.json").exists() and not (set(ignore) & set(old)) and old == want:
            return d
    return None


def cached_run(cfg, root: Path, summarise: Summarise | None = None, force: bool = False,
               legacy_ok: tuple[str, ...] = ()) -> dict:
    """``run_erq(cfg)`` in its own directory under ``root``, or the finished result already there."""
    d = run_dir(cfg, root)
    r = None if force else _finished(cfg, d, summarise, legacy_ok)
    return r if r is not None else _run(cfg, d, summarise)


def _finished(cfg, d: Path, summarise: Summarise | None, legacy_ok: tuple[str, ...]) -> dict | None:
    """The finished result of ``cfg`` in ``d`` (or in a legacy run beside it); None if there is none."""
    def complete(run: Path) -> bool:
        return summarise is None or (run / DONE).exists()

    if (d / "result.json").exists():
        r = json.loads((d / "result.json").read_text())
        return _annotated(r, d, summarise) if r.get("digest") == cfg.digest() and complete(d) else None
    old = legacy_run(cfg, d.parent, legacy_ok) if legacy_ok else None
    if old is None or not complete(old):
        return None
    log(f"using {old.name}: made before field(s) {legacy_ok} existed, which do not affect this config")
    return _annotated(json.loads((old / "result.json").read_text()), old, summarise)


def _annotated(r: dict, run: Path, summarise: Summarise | None) -> dict:
    r["run"] = run.name
    if summarise is not None:
        r["problems"] = read_problems(run / PROBLEMS)
    return r


def _run(cfg, d: Path, summarise: Summarise | None) -> dict:
    from roundlab.pipeline.run import run_erq

    hook, fresh = open_log(d, summarise, cfg.wqer) if summarise is not None else (None, False)
    log(f"run {d.name}")
    t = time.perf_counter()
    r = run_erq(cfg, run_dir=d, fresh=fresh, progress=False, on_problem=hook)
    if summarise is not None:
        (d / DONE).write_text("ok\n")
    log(f"done {d.name}: top1 {r['quantized']['top1']:.4f} in {time.perf_counter() - t:.1f}s")
    return _annotated(r, d, summarise)


def metrics_row(r: dict) -> dict:
    """Wall time, top-1, FP agreement, KL and the summed Wqer objective of a run result."""
    q, w = r["quantized"], r.get("wqer") or {}
    t = r["times"]
    return {"top1": 100 * q["top1"], "agreement": 100 * q["agreement"], "kl": q["kl"],
            "quant_time_s": t.get("calibrate_s", 0.0) + t.get("layers_s", 0.0),
            "wqer_objective": w.get("objective"), "fp_top1": 100 * r["fp"]["top1"], "n_eval": q.get("n")}


def load_predictions(root: Path, r: dict) -> dict | None:
    """The run's per-image outcomes (``predictions.pt``), checked against the SHA-256 in its ``result.json``; None
    (logged) for a run made before runs kept them or a file that does not match."""
    import torch

    from roundlab.pipeline.rundir import PREDICTIONS, file_sha256

    path = Path(root) / r["run"] / PREDICTIONS
    if not path.exists() or r.get("predictions_sha256") != file_sha256(path):
        log(f"{r['run']}: no per-image predictions matching result.json; paired comparisons skipped for it")
        return None
    return torch.load(path, weights_only=True)


def settings(spec: dict) -> str:
    """A row's ERQConfig overrides as ``k=v; …`` (``-`` when none)."""
    return "; ".join(f"{k}={v}" for k, v in spec.items()) or "-"
