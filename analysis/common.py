"""Shared pieces of the analysis scripts: cached runs, problem logs, layer inputs, a pooled MIQP, plotting, CSV.

* :func:`cached_run` maps an :class:`~roundlab.pipeline.config.ERQConfig` to ``<runs>/<name>-<digest>-e<eval>/`` and
  calls :func:`roundlab.pipeline.run.run_erq` there, or returns the ``result.json`` already present (runs are cached
  and, through the pipeline's run directory, resumable). With ``problem_fn`` every Wqer segment is summarised into
  ``problems.jsonl`` next to it (``{"layer": i, "step": t, ...}``; deduplicated on read, so a resumed run is fine).
* :func:`layer_inputs` rebuilds the calibrated quantized model exactly as ``erq_quantize`` does and returns each
  layer's regressors ``X̃ = [X̄ | 1]`` on calibration and held-out images (Fig. 3, MIQP "without the proxy").
* ``analysis-miqp``: a registered solver wrapping ``miqp`` that fans rows out over worker processes, can use the
  samples objective with the layer's real samples (looked up from :data:`SAMPLES` by matching ``M``), and can skip
  segments wider than ``max_d`` (returns its warm start there, status ``heuristic``).
* Plot style, figure saving and a CSV writer.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import multiprocessing as mp
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "figures"
RUNS = ROOT / "runs" / "analysis"
SMOKE_RUNS = Path(tempfile.gettempdir()) / "roundlab-analysis-smoke" / "runs"
SMOKE_FIGURES = Path(tempfile.gettempdir()) / "roundlab-analysis-smoke" / "figures"

#: Shrunk settings of every smoke run (same code path, seconds instead of minutes).
SMOKE = {"calib_images": 2, "heldout_images": 2, "eval_images": 64}


def log(*args) -> None:
    print(time.strftime("%H:%M:%S"), *args, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------- CLI
def parser(doc: str, full_eval: int | None = None) -> argparse.ArgumentParser:
    """The shared options; ``full_eval``: default test images of the full mode (None: the whole split)."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny, seconds: same code path, output in a temp dir")
    p.add_argument("--model", default="fmnist-vit")
    p.add_argument("--wbits", type=int, default=4)
    p.add_argument("--abits", type=int, default=4)
    p.add_argument("--eval-images", type=int, default=full_eval,
                   help=f"test images evaluated (default: {full_eval or 'the whole 10k split'}; smoke: {SMOKE['eval_images']})")
    p.add_argument("--out", type=Path, default=None, help="figures dir (default figures/, smoke: a temp dir)")
    p.add_argument("--runs", type=Path, default=None, help="run cache (default runs/analysis/, smoke: a temp dir)")
    return p


def finish_args(args) -> argparse.Namespace:
    args.out = args.out or (SMOKE_FIGURES if args.smoke else FIGURES)
    args.runs = args.runs or (SMOKE_RUNS if args.smoke else RUNS)
    if args.smoke:
        args.eval_images = min(args.eval_images or SMOKE["eval_images"], SMOKE["eval_images"])
    args.out.mkdir(parents=True, exist_ok=True)
    args.runs.mkdir(parents=True, exist_ok=True)
    return args


def config(args, method: str = "erq", **overrides):
    """An ERQConfig for ``method`` on ``args.model``/bits; smoke runs shrink calibration, held-out and eval sets."""
    from roundlab.pipeline.config import ERQConfig

    base = {"model": args.model, "wbits": args.wbits, "abits": args.abits, "eval_images": args.eval_images}
    if args.smoke:
        base.update(calib_images=SMOKE["calib_images"], heldout_images=SMOKE["heldout_images"])
    return ERQConfig.for_method(method, **{**base, **overrides})


def describe(cfg) -> str:
    """Short title fragment: model, bits, calibration, evaluation size."""
    ev = "all 10k" if cfg.eval_images is None else f"{cfg.eval_images}"
    return f"{cfg.model} W{cfg.wbits}A{cfg.abits}, {cfg.calib_images} calib imgs, eval on {ev} test imgs"


# --------------------------------------------------------------------------------------------------- runs
def run_dir(cfg, root: Path) -> Path:
    ev = "all" if cfg.eval_images is None else str(cfg.eval_images)
    return Path(root) / f"{cfg.model}-W{cfg.wbits}A{cfg.abits}-{cfg.method}-{cfg.solver}-{cfg.digest()}-e{ev}"


class ProblemLog:
    """``on_problem`` hook: append ``{"layer": i, "step": t, **problem_fn(step, problem, result, S)}`` per segment."""

    def __init__(self, path: Path, problem_fn, first_layer: int):
        from roundlab.pipeline.records import RecordWriter

        self.writer = RecordWriter(path)
        self.fn = problem_fn
        self.layer = first_layer - 1

    def __call__(self, layer, step, problem, result, S):
        if step == 0:
            self.layer += 1
        self.writer.append({"layer": self.layer, "step": step, **self.fn(step, problem, result, S)})


def read_problems(path: Path) -> list[dict]:
    """The problem log, the last record of each (layer, step) kept (a resumed layer rewrites its steps)."""
    from roundlab.pipeline.records import RecordWriter

    out = {}
    for r in RecordWriter(path).read():
        out[(r["layer"], r["step"])] = r
    return [out[k] for k in sorted(out)]


def legacy_run(cfg, root: Path, ignore: tuple[str, ...]) -> Path | None:
    """A finished run made before the ERQConfig fields ``ignore`` existed, whose config equals ``cfg`` otherwise.

    Only for fields the caller knows have no effect on this config (e.g. ``head_lam`` with Aqer off)."""
    want = {k: v for k, v in cfg.to_dict().items() if k not in ignore}
    prefix = run_dir(cfg, root).name.rsplit("-", 2)[0]
    ev = run_dir(cfg, root).name.rsplit("-", 1)[1]
    for d in sorted(Path(root).glob(f"{prefix}-*-{ev}")):
        try:
            old = json.loads((d / "config.json").read_text())["config"]
        except (OSError, ValueError, KeyError):
            continue
        if (d / "result.json").exists() and not (set(ignore) & set(old)) and old == want:
            return d
    return None


def cached_run(cfg, root: Path, problem_fn=None, force: bool = False, legacy_ok: tuple[str, ...] = ()) -> dict:
    """``run_erq(cfg)`` in its own directory under ``root``, or the cached ``result.json``.

    With ``problem_fn`` the result gets ``"problems"``: the per-segment records of ``problems.jsonl``."""
    from roundlab.pipeline.records import RecordWriter
    from roundlab.pipeline.run import run_erq

    d = run_dir(cfg, root)
    if legacy_ok and not (d / "result.json").exists() and not force:
        old = legacy_run(cfg, root, legacy_ok)
        if old is not None and (problem_fn is None or (old / "problems.done").exists()):
            log(f"using {old.name}: made before field(s) {legacy_ok} existed, which do not affect this config")
            r = json.loads((old / "result.json").read_text())
            r["legacy_run"] = old.name
            if problem_fn is not None:
                r["problems"] = read_problems(old / "problems.jsonl")
            return r
    res_path, prob_path = d / "result.json", d / "problems.jsonl"
    if res_path.exists() and not force:
        r = json.loads(res_path.read_text())
        if r.get("digest") == cfg.digest() and (problem_fn is None or (d / "problems.done").exists()):
            if problem_fn is not None:
                r["problems"] = read_problems(prob_path)
            return r
    hook = None
    if problem_fn is not None:
        finished = {r["layer"] for r in RecordWriter(d / "records.jsonl").read()} if d.exists() else set()
        if not finished:
            prob_path.unlink(missing_ok=True)
        hook = ProblemLog(prob_path, problem_fn, len(finished))
    log(f"run {d.name}")
    t = time.perf_counter()
    r = run_erq(cfg, run_dir=d, fresh=False, progress=False, on_problem=hook)
    if problem_fn is not None:
        (d / "problems.done").write_text("ok\n")
        r["problems"] = read_problems(prob_path)
    log(f"done {d.name}: top1 {r['quantized']['top1']:.4f} in {time.perf_counter() - t:.1f}s")
    return r


# --------------------------------------------------------------------------------------------------- layer inputs
def load_data(cfg):
    """(FP model, calibration images, held-out images, test set) exactly as ``run_erq`` loads them."""
    from roundlab.data import calibration_split, load_dataset
    from roundlab.zoo import load_model

    torch.manual_seed(cfg.seed)
    model, data_cfg = load_model(cfg.model, device=cfg.device, checkpoint=cfg.checkpoint)
    dataset = cfg.dataset or data_cfg.get("dataset", "fashion-mnist")
    train = load_dataset(dataset, split="train", root=cfg.data_root, data_config=data_cfg)
    test = load_dataset(dataset, split="test", root=cfg.data_root, data_config=data_cfg)
    calib, heldout = calibration_split(train, n=cfg.calib_images, n_heldout=cfg.heldout_images, seed=cfg.seed)
    if cfg.eval_images is not None:
        test = test.subset(cfg.eval_images)
    return model, calib, heldout, test


def layer_inputs(model, calib, heldout, cfg) -> dict[str, dict]:
    """Per quantized layer: ``Xt``/``Xt_h`` = ``[X̄ | 1]`` (float64) on calibration/held-out images, as Wqer sees them.

    Rebuilds the activation calibration of ``erq_quantize`` (same functions, same order; independent data flow), so
    ``Xt[:, S]ᵀ Xt[:, S] / N`` is the ``M`` of the pipeline's problems (callers check this)."""
    from roundlab.pipeline.aqer import design
    from roundlab.pipeline.run import calibrate_and_capture
    from roundlab.pipeline.stages import quantize_input

    if cfg.data_flow != "independent":
        raise ValueError("layer_inputs supports the independent data flow only")
    _, layers, fp_in, fp_in_h = calibrate_and_capture(model, calib, cfg, heldout)
    out = {}
    for name, layer in layers.items():
        has_bias = layer.bias is not None
        out[name] = {"Xt": design(quantize_input(layer, fp_in[name]), has_bias),
                     "Xt_h": design(quantize_input(layer, fp_in_h[name]), has_bias) if name in fp_in_h else None,
                     "kind": getattr(layer, "kind", "linear")}
    return out


def natural_segments(n_cols: int) -> list[torch.Tensor]:
    """The column sets S of Wqer's natural partition, step by step (the first half of the active columns)."""
    active = torch.arange(n_cols)
    out = []
    while active.numel() > 1:
        nq = active.numel() // 2
        out.append(active[:nq])
        active = active[nq:]
    return out


#: Samples for the "samples" objective: d → list of (M, X̃_S), filled by :func:`register_samples`.
SAMPLES: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}


def register_samples(inputs: dict[str, dict]) -> int:
    """Index every natural-partition segment of every layer so a problem's samples can be found from its ``M``."""
    SAMPLES.clear()
    n = 0
    for v in inputs.values():
        Xt = v["Xt"]
        for S in natural_segments(Xt.shape[1]):
            Xs = Xt[:, S].contiguous()
            SAMPLES.setdefault(len(S), []).append((Xs.T @ Xs / Xs.shape[0], Xs))
            n += 1
    return n


def samples_for(problem) -> torch.Tensor:
    """The segment's samples ``X̃_S`` whose ``X̃_Sᵀ X̃_S / N`` equals ``problem.M`` (to 1e-9 relative)."""
    from roundlab.errors import RoundlabError

    for M, Xs in SAMPLES.get(problem.d, []):
        if torch.allclose(M, problem.M.cpu(), rtol=1e-9, atol=1e-12 * float(M.abs().max())):
            return Xs
    raise RoundlabError(f"no registered samples match this {problem.shape} problem's M (call register_samples)")


# --------------------------------------------------------------------------------------------------- pooled MIQP
_POOL = None
_POOL_N = 0


def _pool(workers: int):
    global _POOL, _POOL_N
    if _POOL is None or _POOL_N != workers:
        if _POOL is not None:
            _POOL.terminate()
        _POOL = mp.get_context("fork").Pool(workers, initializer=torch.set_num_threads, initargs=(1,))
        _POOL_N = workers
    return _POOL


def _solve_chunk(args):
    sub, init, options = args
    from roundlab.solvers import get_solver
    from roundlab.solvers.base import CODE

    res = get_solver("miqp", **options)(sub, init=init)
    codes = torch.tensor([CODE[s] for s in res.status], dtype=torch.long)
    return (res.delta.cpu(), codes, res.bound.cpu(), res.iterations.cpu(), res.row_time.cpu(), res.fallback.cpu(),
            res.info.get("backend_status", {}))


def _register_pooled():
    from roundlab.problem import RoundingProblem, Status
    from roundlab.solvers import Solution, Solver, SolverConfig, get_solver, list_solvers, register_solver
    from roundlab.solvers.base import CODE, check_choice, check_float, check_int

    if "analysis-miqp" in list_solvers():
        return

    @dataclass(frozen=True)
    class PooledMiqpConfig(SolverConfig):
        backend: str = "highs"
        objective: str = "proxy"          # "samples": the layer's real samples (register_samples first)
        time_limit: float = 0.25          # seconds per row subproblem
        warm_start: str = "greedy"
        workers: int = 1
        max_d: int | None = None          # wider segments: the warm start's answer, status heuristic
        row_limit: int | None = None      # smoke only: MIQP on the first row_limit rows of each segment

        def validate(self):
            check_choice("objective", self.objective, ("proxy", "samples"))
            check_float("time_limit", self.time_limit, 0.0, 1e7, lo_open=True)
            check_int("workers", self.workers, 1, 64)
            check_int("max_d", self.max_d, 1, none=True)
            check_int("row_limit", self.row_limit, 1, none=True)

    @register_solver("analysis-miqp")
    class PooledMiqp(Solver):
        """miqp (roundlab.solvers.miqp) fanned out over processes; the samples objective from registered samples."""

        Config = PooledMiqpConfig
        exact = True

        def solve(self, problem, init):
            cfg = self.config
            R = problem.rows
            warm = init if init is not None else get_solver(cfg.warm_start)(problem).delta
            codes = torch.full((R,), CODE[Status.HEURISTIC], dtype=torch.long)
            bound = torch.full((R,), math.nan, dtype=torch.float64)
            iters = torch.zeros(R, dtype=torch.long)
            row_time = torch.zeros(R, dtype=torch.float64)
            fallback = torch.zeros(R, dtype=torch.bool)
            delta = warm.clone()
            if cfg.max_d is not None and problem.d > cfg.max_d:
                return Solution(delta, codes, bound=bound, info={"skipped": 1})
            p = problem
            if cfg.objective == "samples":
                p = RoundingProblem.from_grid(problem.w, problem.scale, problem.zero, problem.bits,
                                              X=samples_for(problem).to(problem.device))
            n = R if cfg.row_limit is None else min(R, cfg.row_limit)
            options = {"backend": cfg.backend, "objective": cfg.objective, "time_limit": cfg.time_limit}
            parts = [c for c in torch.arange(n).chunk(max(1, min(cfg.workers, n)))]
            jobs = [(p.subproblem(c), warm[c], options) for c in parts]
            outs = _pool(cfg.workers).map(_solve_chunk, jobs) if cfg.workers > 1 else list(map(_solve_chunk, jobs))
            raw: dict[str, int] = {}
            for c, (d_, cd, b, it, rt, fb, st) in zip(parts, outs):
                delta[c], codes[c], bound[c], iters[c], row_time[c], fallback[c] = d_.to(delta), cd, b, it, rt, fb
                for k, v in st.items():
                    raw[k] = raw.get(k, 0) + v
            return Solution(delta, codes, bound=bound, iterations=iters, row_time=row_time, fallback=fallback,
                            info={"backend_status": raw})


_register_pooled()


# --------------------------------------------------------------------------------------------------- output
def setup_style():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 130, "font.size": 9, "axes.grid": True,
                         "grid.alpha": 0.3, "axes.titlesize": 9.5, "legend.fontsize": 8})
    return plt


def save_figure(fig, out: Path, name: str) -> Path:
    path = Path(out) / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    log(f"wrote {path}")
    return path


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(r.get(k)) for k in columns})
    log(f"wrote {path}")
    return path


def _fmt(v):
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.10g}"
    return "" if v is None else v


def metrics_row(r: dict) -> dict:
    """Wall time, top-1, FP agreement, KL and the summed Wqer objective of a run result."""
    q, w = r["quantized"], r.get("wqer") or {}
    t = r["times"]
    return {"top1": 100 * q["top1"], "agreement": 100 * q["agreement"], "kl": q["kl"],
            "quant_time_s": t.get("calibrate_s", 0.0) + t.get("layers_s", 0.0),
            "wqer_objective": w.get("objective"), "fp_top1": 100 * r["fp"]["top1"], "n_eval": q.get("n")}


def run_rows(args, specs: list[tuple[str, dict]], models: list[str]) -> tuple[list[dict], dict]:
    """Run ``(label, {"method": ..., **ERQConfig overrides})`` per model (cached); one metrics row per run."""
    rows, cfgs = [], {}
    for model in models:
        args.model = model
        for i, (label, spec) in enumerate(specs):
            spec = dict(spec)
            method = spec.pop("method", "erq")
            cfg = config(args, method, **spec)
            cfgs[(model, label)] = cfg
            r = cached_run(cfg, args.runs)
            rows.append({"model": model, "row": i, "label": label, "method": method,
                         "settings": "; ".join(f"{k}={v}" for k, v in spec.items()) or "-",
                         **metrics_row(r), "calib_images": cfg.calib_images, "wbits": cfg.wbits,
                         "abits": cfg.abits, "solver": cfg.solver if cfg.wqer and cfg.rounding else "-"})
    return rows, cfgs


ABLATION_COLUMNS = ["model", "row", "label", "method", "settings", "top1", "agreement", "kl", "quant_time_s",
                    "fp_top1", "n_eval", "calib_images", "wbits", "abits", "solver"]


def models_arg(p: argparse.ArgumentParser, default: str | None = None) -> None:
    p.add_argument("--models", default=None,
                   help=f"comma-separated zoo models (default {default or 'the --model'}; smoke: --model)")


def models_of(args, default: str | None = None) -> list[str]:
    """``--models``, else ``default`` in full mode, else ``--model``."""
    if args.models:
        return args.models.split(",")
    return (default if default and not args.smoke else args.model).split(",")


@dataclass
class Sweep:
    """What :func:`sweep` returns: the parsed args, the swept values, the models, one row per run, the configs."""

    args: argparse.Namespace
    values: list
    models: list[str]
    rows: list[dict]
    cfgs: dict


def sweep(doc: str, argv, *, name: str, option: str, key: str, full: str, smoke: str, cast, label, spec,
          what: str, paper: dict | None = None, full_eval: int = 5000) -> Sweep:
    """The shared scaffolding of the one-knob ablations (Fig. 4, Tables 5 and 7).

    Parses the common options plus ``--models`` and ``--<option>`` (comma-separated ``what``; default ``full``,
    smoke ``smoke``), runs ``(label(v), spec(v))`` per value and model through :func:`run_rows` (cached), adds the
    value as column ``key`` (and ``paper_top1_deit_s`` from ``paper``), and writes ``<out>/<name>.csv`` with
    ``[key] + ABLATION_COLUMNS (+ paper_top1_deit_s)``. The caller plots."""
    p = parser(doc, full_eval=full_eval)
    models_arg(p)
    p.add_argument(f"--{option}", default=None, help=f"comma-separated {what} (default {full}; smoke {smoke})")
    args = finish_args(p.parse_args(argv))
    raw = getattr(args, option.replace("-", "_")) or (smoke if args.smoke else full)
    values = [cast(x) for x in raw.split(",")]
    models = models_of(args)
    rows, cfgs = run_rows(args, [(label(v), spec(v)) for v in values], models)
    for r in rows:
        r[key] = values[r["row"]]
        if paper is not None:
            r["paper_top1_deit_s"] = paper.get(r[key])
    write_csv(args.out / f"{name}.csv", rows,
              [key] + ABLATION_COLUMNS + (["paper_top1_deit_s"] if paper is not None else []))
    return Sweep(args, values, models, rows, cfgs)


def top1_se(r: dict) -> float:
    """Binomial standard error of a metrics row's top-1 (percentage points): 100·sqrt(p(1 − p)/n_eval)."""
    p, n = r["top1"] / 100, r.get("n_eval") or 0
    return 100 * math.sqrt(p * (1 - p) / n) if n else math.nan


def rankdata(x: torch.Tensor) -> torch.Tensor:
    """Average ranks (ties averaged), for Spearman."""
    x = torch.as_tensor(x, dtype=torch.float64)
    order = torch.argsort(x)
    ranks = torch.empty_like(x)
    ranks[order] = torch.arange(len(x), dtype=torch.float64)
    xs = x[order]
    i = 0
    n = len(x)
    while i < n:                                   # average tied groups
        j = i
        while j + 1 < n and xs[j + 1] == xs[i]:
            j += 1
        if j > i:
            ranks[order[i:j + 1]] = (i + j) / 2
        i = j + 1
    return ranks


def pearson(x, y) -> float:
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    if len(x) < 3:
        return math.nan
    x, y = x - x.mean(), y - y.mean()
    den = float(x.norm() * y.norm())
    return float((x * y).sum()) / den if den > 0 else math.nan


def spearman(x, y) -> float:
    return pearson(rankdata(x), rankdata(y))
