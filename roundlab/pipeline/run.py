"""The ERQ run: calibration → (reparameterisation) → per layer [Aqer → weight calibration → Wqer] → evaluation.

``run_erq(config)`` is the Python entry point behind ``roundlab quantize``. A run writes into its own directory
(``runs/<model>-W<b>A<b>-<method>-<solver>-<hash>`` by default, the hash covering every setting that changes the
weights): ``config.json``, ``records.jsonl`` (one Eq. 4 record per layer, appended as each layer finishes),
``layers/<name>.pt`` (the layer's post-Aqer and final weights), ``result.json`` and ``predictions.pt`` (every test
image's outcome, for paired comparisons of runs). Run the same command again after
an interruption and finished layers are loaded instead of recomputed.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

import torch

from roundlab.errors import RoundlabError
from roundlab.pipeline.config import ERQConfig
from roundlab.pipeline.fp_cache import fp_reference
from roundlab.pipeline.layer_data import LayerData
from roundlab.pipeline.provenance import peak_memory_mb, versions
from roundlab.files import atomic_file
from roundlab.pipeline.rundir import PREDICTIONS, RunState, atomic_write, check_run_dir, file_sha256
from roundlab.pipeline.stages import process_layer
from roundlab.pipeline.summary import print_table, sum_wqer  # noqa: F401  (print_table: the CLI's import)
from roundlab.threads import fixed_threads


def default_run_dir(config: ERQConfig) -> Path:
    return Path("runs") / (f"{config.model}-W{config.wbits}A{config.abits}-{config.method}-{config.solver}-"
                           f"{config.digest()}")


def write_layer(layer, state: dict, final: bool) -> None:
    """Write the post-Aqer (``final=False``) or final weights of ``state`` into ``layer``."""
    W = state["W" if final else "W_aqer"]
    b = state.get("b" if final else "b_aqer")
    with torch.no_grad():
        layer.weight.copy_(W.reshape(layer.weight.shape).to(layer.weight))
        if b is not None:
            layer.bias.copy_(b.to(layer.bias))


def restore_layer(layer, saved: dict) -> None:
    """Put a finished layer back as :func:`~roundlab.pipeline.stages.process_layer` left it: its weight quantizer
    calibrated on the post-Aqer weights (ERQ step 8: the grid Wqer rounded onto), then the final weights."""
    write_layer(layer, saved, final=False)
    layer.weight_quantizer.calibrate(layer.weight.detach())
    write_layer(layer, saved, final=True)


def check_finite_parameters(model: torch.nn.Module) -> None:
    """One clear error naming the first parameter or buffer that holds NaN/Inf (a damaged checkpoint)."""
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        bad = ~torch.isfinite(t.detach()) if t.is_floating_point() else None
        if bad is not None and bool(bad.any()):
            first = [int(i) for i in bad.nonzero()[0]]
            raise RoundlabError(f"model parameter {name} holds {int(bad.sum())} NaN/Inf value(s) (first at {first}); "
                                f"the checkpoint is damaged")


def fanned_solver(config: ERQConfig, state: RunState | None):
    """The configured solver behind the configured executor, answers recorded in the run's results store."""
    from roundlab.fanout import FannedSolver, ResultStore
    from roundlab.solvers import get_solver

    fc = config.fanout_config()
    store = ResultStore(state.dir / "subproblems.sqlite") if state is not None else None
    return FannedSolver(get_solver(config.solver, **config.solver_options), fc.make_executor(), store,
                        chunk_rows=fc.chunk_rows, on_error=fc.on_error, digest=config.digest(),
                        error_log=None if state is None else state.dir / "errors.log")


def calibrate(model: torch.nn.Module, calib, config: ERQConfig):
    """The pipeline's first stages on a copy of ``model``: quantizer surgery, activation calibration (FP weights, as
    released; in one pass over all images, or streamed in batches of ``config.calib_batch_size`` images) and
    reparameterisation. ``calib``: a tensor or :class:`~roundlab.data.image_batches.Images`. Returns ``(qmodel,
    layers)`` (name → quantized layer, in forward order)."""
    from roundlab.data.image_batches import as_images
    from roundlab.quant import calibration_mode, quant_layers, quantize_model, reparameterize, set_quant_state
    from roundlab.quant.streamed import calibrate_streamed

    check_finite_parameters(model)
    qmodel = quantize_model(copy.deepcopy(model), config.quant_config())
    set_quant_state(qmodel, weight=False, act=True)
    if config.calib_batch_size is not None:
        calibrate_streamed(qmodel, calib, config.calib_batch_size)
    else:
        with calibration_mode(qmodel), torch.no_grad():
            qmodel(as_images(calib).all())
    if config.reparam and config.calibration == "percentile":
        reparameterize(qmodel)
    return qmodel, dict(quant_layers(qmodel))


def erq_quantize(model: torch.nn.Module, calib, config: ERQConfig, heldout=None,
                 state: RunState | None = None, progress: bool = False,
                 on_problem=None, times: dict | None = None, fanout: dict | None = None,
                 on_layer=None) -> tuple[torch.nn.Module, list[dict]]:
    """Quantize a copy of ``model`` with ``config`` on calibration images; return (quantized model, layer records).

    ``calib`` and ``heldout``: tensors ``(n, C, H, W)`` or :class:`~roundlab.data.image_batches.Images` (e.g. a
    dataset's images loaded batch by batch, so that a streamed run holds none of them).

    The model-level API: no data loading, no evaluation, no files unless a :class:`RunState` is given (then finished
    layers are loaded from it and new ones saved to it, and every rounding subproblem's answer is recorded in its
    results store). The returned model has every quantizer on. ``fanout`` (a dict) receives the executor's report:
    tasks solved and reused, throughput, fallbacks. ``on_problem(layer, step, problem, result, columns)`` is called
    for every Wqer segment solved in this call; ``on_layer(name, layer, stats, stats_heldout)`` with each layer's data
    (:class:`~roundlab.pipeline.stats.LayerStats`; with ``on_layer`` given they keep their samples ``[X̄ | 1]``) for
    every layer quantized in this call.
    """
    from tqdm.auto import tqdm

    from roundlab.quant import set_quant_state

    times = {} if times is None else times

    t = time.perf_counter()
    qmodel, layers = calibrate(model, calib, config)
    finished = state.finished_records() if state is not None else {}
    restored = {n for n in layers if state is not None and state.done(n) and n in finished}
    records = []
    solver = fanned_solver(config, state)
    try:
        t_data = time.perf_counter()
        todo = {n: layer for n, layer in layers.items() if n not in restored}
        data = LayerData(qmodel, todo, calib, heldout, config.data_flow, config.batch_size,
                         keep_samples=solver.objective == "samples" or on_layer is not None)
        times["layer_stats_s"] = time.perf_counter() - t_data     # part of calibrate_s (independent data flow)
        times["calibrate_s"] = time.perf_counter() - t
        t = time.perf_counter()
        bar = tqdm(layers.items(), desc=f"{config.method}/{config.solver}", disable=not progress, unit="layer")
        for name, layer in bar:                          # in forward order: ERQ's layer-by-layer sweep
            bar.set_postfix_str(name)
            if name in restored:
                restore_layer(layer, state.load(name))
                records.append(finished[name])
                continue
            stats, stats_h = data.take(name)
            if on_layer is not None:
                on_layer(name, layer, stats, stats_h)
            records.append(_quantize_layer(name, layer, stats, stats_h, config, solver, on_problem, state))
    finally:
        solver.close()
    if fanout is not None:
        fanout.update(solver.report())
    times["layers_s"] = time.perf_counter() - t
    set_quant_state(qmodel, weight=True, act=True)
    return qmodel, records


def _quantize_layer(name, layer, stats, stats_h, config: ERQConfig, solver, on_problem,
                    state: RunState | None) -> dict:
    """Aqer + Wqer on one layer (:func:`process_layer`), its final weights written into it and, with a run
    directory, saved there; returns its record."""
    solver.set_context(layer=name)
    n_fallbacks = len(solver.stats.fallbacks)
    try:
        with fixed_threads(1):      # persisted numbers independent of the thread count (threads.py)
            record, new_state = process_layer(name, layer, stats, config, solver, stats_h, on_problem=on_problem)
    except RoundlabError as e:
        raise RoundlabError(f"layer {name}: {e}" if name not in str(e) else str(e)) from None
    record["digest"] = config.digest()
    record["fallbacks"] = solver.stats.fallbacks[n_fallbacks:]
    write_layer(layer, new_state, final=True)
    if state is not None:
        state.save(name, new_state, record)
    return record


def save_predictions(run_dir: Path, logits, labels, reference) -> Path:
    """``predictions.pt``: every test image's outcome (:func:`roundlab.evaluate.per_image`), so two runs can be
    compared image by image (paired differences); its SHA-256 goes into ``result.json``."""
    from roundlab.evaluate import per_image

    path = Path(run_dir) / PREDICTIONS
    with atomic_file(path) as tmp:
        torch.save(per_image(logits, labels, reference), tmp)
    return path


def load_run_data(config: ERQConfig, streamed: bool = False) -> tuple[torch.nn.Module, object, object, object]:
    """The FP model (parameters checked), calibration and held-out images (on ``config.device``) and the test split
    of a run, exactly as :func:`run_erq` uses them (the analysis scripts load through here too). The images are
    tensors; with ``streamed`` they are :class:`~roundlab.data.image_batches.DatasetImages` (the same images,
    loaded batch by batch whenever a pass reads them)."""
    from roundlab.data import calibration_split, calibration_split_images, load_dataset
    from roundlab.zoo import load_model

    torch.manual_seed(config.seed)
    model, data_cfg = load_model(config.model, device=config.device, checkpoint=config.checkpoint)
    check_finite_parameters(model)                      # name a damaged parameter before the FP evaluation
    dataset = config.dataset or data_cfg.get("dataset", "fashion-mnist")
    train = load_dataset(dataset, split="train", root=config.data_root, data_config=data_cfg)
    test = load_dataset(dataset, split="test", root=config.data_root, data_config=data_cfg)
    device = torch.device(config.device)
    if config.eval_images is not None:
        test = test.subset(config.eval_images)
    if streamed:
        calib, heldout = calibration_split_images(train, n=config.calib_images, n_heldout=config.heldout_images,
                                                  seed=config.seed, device=device)
        return model, calib, heldout, test
    calib, heldout = calibration_split(train, n=config.calib_images, n_heldout=config.heldout_images,
                                       seed=config.seed)
    return model, calib.to(device), heldout.to(device), test


def run_erq(config: ERQConfig, run_dir: str | Path | None = None, fresh: bool = False,
            progress: bool = True, on_problem=None) -> dict:
    """Load the model and data of ``config``, quantize, evaluate; return the result (also in ``result.json``)."""
    times: dict[str, float] = {}
    t_all = time.perf_counter()
    run_dir = check_run_dir(Path(run_dir) if run_dir else default_run_dir(config))    # before anything loads

    t = time.perf_counter()
    model, calib, heldout, test = load_run_data(config, streamed=config.calib_batch_size is not None)
    times["load_s"] = time.perf_counter() - t
    with RunState(run_dir, config, fresh) as state:
        t = time.perf_counter()
        fp_metrics, reference = fp_reference(model, test, config, cache_dir=state.dir.parent / "_fp_cache",
                                             fresh=fresh)
        times["fp_eval_s"] = time.perf_counter() - t

        fanout: dict = {}
        qmodel, records = erq_quantize(model, calib, config, heldout=heldout, state=state, progress=progress,
                                       on_problem=on_problem, times=times, fanout=fanout)
        return _finish(config, state, qmodel, records, test, reference, fp_metrics, times, fanout, t_all)


def _finish(config, state, qmodel, records, test, reference, fp_metrics, times, fanout, t_all) -> dict:
    """Evaluate the quantized model; write and return ``result.json``."""
    from roundlab.evaluate import evaluate

    t = time.perf_counter()
    metrics = evaluate(qmodel, test, reference_logits=reference, batch_size=config.batch_size,
                       device=config.device, return_logits=True)
    predictions = save_predictions(state.dir, metrics.pop("logits"), metrics.pop("labels"), reference)
    times["eval_s"] = time.perf_counter() - t
    times["total_s"] = time.perf_counter() - t_all

    result = {
        "config": config.to_dict(), "digest": config.digest(), "versions": versions(),
        "fp": fp_metrics, "quantized": metrics, "times": times, "memory": peak_memory_mb(config.device),
        "wqer": sum_wqer(records), "n_layers": len(records), "fanout": fanout,
        "fallback_rows": sum(f["rows"][1] - f["rows"][0] for r in records for f in r.get("fallbacks", [])),
        "paths": {"dir": str(state.dir), "records": str(state.records.path),
                  "result": str(state.dir / "result.json"), "predictions": str(predictions)},
        "predictions_sha256": file_sha256(predictions),
    }
    atomic_write(state.dir / "result.json", json.dumps(result, indent=2, default=float))
    if result["fallback_rows"]:
        reasons = sorted({f["reason"] for r in records for f in r.get("fallbacks", [])})
        print(f"warning: {result['fallback_rows']} rounding row(s) fell back to round-to-nearest "
              f"({'; '.join(reasons)[:300]}); see 'fallbacks' in {state.records.path}", file=sys.stderr)
    return result
