"""Full ERQ at paper scale: per-stage time and peak memory (host and device) on the paper's model shapes.

    python benchmarks/bench_scale.py                                    # DeiT-S, ViT-S, Swin-S; 32 and 1024 images; rr
    python benchmarks/bench_scale.py --models deit_small_patch16_224 --images 32 --solvers rr,greedy,tabu
    python benchmarks/bench_scale.py --device cuda --imagenet ~/data/imagenet      # real images on a GPU
    python benchmarks/bench_scale.py --smoke                            # timm's test_vit, 4 images (seconds)
    python benchmarks/bench_scale.py --models deit_small_patch16_224 --images 1024 --calib-batch-size 32 --threads 1

Each (model, images, solver) runs in a fresh process, so its peak resident memory (``ru_maxrss``) is its own; on CUDA
the peak allocated device memory is reported too. A zoo name (``fmnist-vit``) runs on its committed weights and
Fashion-MNIST calibration split. Weights of a timm name are random (``timm.create_model(pretrained=False)``) unless
timm finds local weights for the name (or ``--checkpoint`` for a single model); images are random tensors of the
model's input size (seeded per image) unless ``--imagenet DIR`` names a class-folder tree read through each model's
own timm data config. Either way they are generated or decoded batch by batch whenever a pass reads them
(:class:`roundlab.data.Images`), never all held, so the peak memory is the pipeline's own; that generation or
decoding is inside the stage times (random images: about a millisecond per image and pass; JPEGs: more).
Stages: ``calibrate_s`` (quantizer surgery, activation calibration — ``act_calibrate_s``, with the peak resident
memory at its end, ``act_calibrate_peak_mb`` —, reparameterisation, and — ``layer_stats_s`` — every layer's streamed
statistics), ``layers_s`` (per layer: Aqer, weight calibration, Wqer with the solver). Evaluation is not timed
(random weights have nothing to evaluate). ``--calib-batch-size N`` streams the activation calibration in batches
of N images (``ERQConfig.calib_batch_size``; default: one pass over all images, as released). Results: a Markdown
table on stdout and JSON lines in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from roundlab.data import Images  # noqa: E402

PAPER_MODELS = ["deit_small_patch16_224", "vit_small_patch16_224", "swin_small_patch4_window7_224"]


def _model(name: str, checkpoint: str | None):
    """A zoo model (its committed weights), or the timm model with local weights when there are any, else random
    ones; and whether the weights are real."""
    import timm

    from roundlab.zoo import ZOO, load_model
    from roundlab.zoo.timm_names import find_cached_weights, load_timm_model

    if name in ZOO:
        return load_model(name, checkpoint=checkpoint)[0], True
    if checkpoint is not None or find_cached_weights(name)[0] is not None:
        return load_timm_model(name, checkpoint=checkpoint).eval(), True
    return timm.create_model(name, pretrained=False).eval(), False


class RandomImages(Images):
    """``n`` standard-normal images of ``shape`` (C, H, W); image ``i`` is drawn from its own seeded generator, so a
    batch is the same whenever it is generated."""

    def __init__(self, n: int, seed: int, device: str, shape=(3, 224, 224)):
        self.n, self.seed, self.device, self.shape = n, seed, device, tuple(shape)

    def __len__(self) -> int:
        return self.n

    def batch(self, start: int, stop: int) -> torch.Tensor:
        gens = (torch.Generator().manual_seed(self.seed * 1_000_003 + i) for i in range(start, stop))
        return torch.stack([torch.randn(self.shape, generator=g) for g in gens]).to(self.device)


def _images(name: str, model, n: int, imagenet: str | None, seed: int, device: str):
    """The calibration images as :class:`roundlab.data.Images`, loaded (or generated) batch by batch whenever a pass
    reads them, so that the run's peak memory is the pipeline's, not that of the benchmark holding the images."""
    from roundlab.data import calibration_split_images, load_dataset
    from roundlab.zoo import ZOO

    if name in ZOO:                   # the zoo's own calibration split (Fashion-MNIST)
        from roundlab.zoo import load_model

        train = load_dataset("fashion-mnist", split="train", data_config=load_model(name)[1])
        return calibration_split_images(train, n=n, n_heldout=0, seed=seed, device=device)[0]
    from roundlab.zoo.timm_names import timm_data_config

    if imagenet is None:
        return RandomImages(n, seed, device, timm_data_config(model)["input_size"])
    train = load_dataset("imagenet", "train", root=imagenet, data_config=timm_data_config(model))
    return calibration_split_images(train, n=n, n_heldout=0, seed=seed, device=device)[0]


def _time_activation_calibration(times: dict) -> None:
    """Wrap the pipeline's ``calibrate`` stage (surgery, activation calibration, reparameterisation) so that its
    time and the peak resident memory at its end land in ``times`` (this child process only)."""
    import roundlab.pipeline.run as run

    stage = run.calibrate

    def timed(*args, **kwargs):
        t = time.perf_counter()
        out = stage(*args, **kwargs)
        times["act_calibrate_s"] = time.perf_counter() - t
        times["act_calibrate_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return out

    run.calibrate = timed


def run_one(job: dict, queue) -> None:
    """Child process: one full ERQ; puts its measurements on ``queue``."""
    import torch

    from roundlab.pipeline.config import ERQConfig
    from roundlab.pipeline.run import erq_quantize

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    low_memory = False
    if job.get("low_memory"):
        from roundlab.heap import map_large_allocations

        low_memory = map_large_allocations()       # recorded: whether it took effect, not just whether asked
    model, real = _model(job["model"], job["checkpoint"])
    cfg = ERQConfig(model=job["model"], solver=job["solver"], calib_images=job["images"], heldout_images=0,
                    device=job["device"], batch_size=job["batch_size"], calib_batch_size=job.get("calib_batch_size"))
    calib = _images(job["model"], model, job["images"], job["imagenet"], cfg.seed, cfg.device)
    model = model.to(cfg.device)
    if cfg.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times: dict = {}
    _time_activation_calibration(times)
    t0 = time.perf_counter()
    _, records = erq_quantize(model, calib, cfg, times=times)
    out = {**job, "device": cfg.device, "real_weights": real, "layers": len(records),
           "calibrate_s": times["calibrate_s"], "layer_stats_s": times["layer_stats_s"], "layers_s": times["layers_s"],
           "act_calibrate_s": times["act_calibrate_s"], "act_calibrate_peak_mb": times["act_calibrate_peak_mb"],
           "total_s": time.perf_counter() - t0,
           "max_layer_s": max(r["time_s"] for r in records),
           "host_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "device_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if cfg.device.startswith("cuda") else None,
           "threads": torch.get_num_threads(), "low_memory_applied": low_memory}
    queue.put(out)


def measure(job: dict) -> dict:
    """``run_one`` in a fresh (spawned) process: its own peak memory, nothing cached from an earlier job."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=run_one, args=(job, queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0 or queue.empty():
        return {**job, "error": f"exit code {proc.exitcode}"}
    return queue.get()


def _table(rows: list[dict]) -> str:
    head = ("| model | images | calib batch | solver | device | calibrate s (activations, layer statistics) | "
            "layers s | max layer s | host peak MB (at the end of activation calibration) | device peak MB |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['images']} | {r.get('calib_batch_size') or 'all'} | {r['solver']} | "
                         f"{r['device']} | {r['error']} ||||| ")
            continue
        dev = f"{r['device_peak_mb']:.0f}" if r["device_peak_mb"] is not None else "–"
        lines.append(f"| {r['model']} | {r['images']} | {r.get('calib_batch_size') or 'all'} | {r['solver']} | "
                     f"{r['device']} | {r['calibrate_s']:.1f} ({r['act_calibrate_s']:.1f}, "
                     f"{r['layer_stats_s']:.1f}) | "
                     f"{r['layers_s']:.1f} | {r['max_layer_s']:.1f} | {r['host_peak_mb']:.0f} "
                     f"({r['act_calibrate_peak_mb']:.0f}) | {dev} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(PAPER_MODELS),
                   help="comma-separated timm model names or zoo models (e.g. fmnist-vit)")
    p.add_argument("--images", default="32,1024", help="comma-separated calibration image counts")
    p.add_argument("--solvers", default="rr", help="comma-separated Wqer solvers (e.g. rr,greedy,tabu)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default: auto)")
    p.add_argument("--imagenet", default=None, help="an ImageNet class-folder root (DIR/train/<wnid>/*.JPEG); "
                                                    "default: random images")
    p.add_argument("--checkpoint", default=None, help="a weights file (one model only)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default: 32)")
    p.add_argument("--calib-batch-size", type=int, default=None,
                   help="images per activation-calibration forward, streamed (default: all images in one pass)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads per run (0: torch's default)")
    p.add_argument("--low-memory", action="store_true",
                   help="as `roundlab quantize --low-memory`: every allocation of 1 MiB or more its own mapping")
    p.add_argument("--out", default="runs/bench_scale.jsonl", help="JSON lines, one per run (appended)")
    p.add_argument("--smoke", action="store_true", help="timm's test_vit with 4 images: checks the script runs")
    args = p.parse_args(argv)
    if args.smoke:
        args.models, args.images, args.solvers = "test_vit", "4", "rr"
    models = args.models.split(",")
    if args.checkpoint and len(models) != 1:
        p.error("--checkpoint needs exactly one model")
    rows = []
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    for model in models:
        for n in (int(x) for x in args.images.split(",")):
            for solver in args.solvers.split(","):
                job = {"model": model, "images": n, "solver": solver, "device": args.device,
                       "imagenet": args.imagenet, "checkpoint": args.checkpoint, "batch_size": args.batch_size,
                       "calib_batch_size": args.calib_batch_size, "threads": args.threads,
                       "low_memory": args.low_memory}
                print(f"running {model}, {n} images, {solver} ...", file=sys.stderr, flush=True)
                row = measure(job)
                rows.append(row)
                with open(args.out, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
                print(_table([row]).splitlines()[-1], file=sys.stderr, flush=True)
    print(_table(rows))


if __name__ == "__main__":
    main()
