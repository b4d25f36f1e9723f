"""``roundlab`` command line: quantize, evaluate, train the zoo, list solvers and models.

Every user-facing error is a :class:`~roundlab.errors.RoundlabError`; the CLI prints its one line and exits 2.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import dataclasses
import sys
import typing

from roundlab.errors import RoundlabError

#: Help of the flags generated from ERQConfig fields (one entry per field; "(default: X)" is appended).
_FLAG_HELP = {
    "model": "zoo model (roundlab models) or a timm model name with local weights",
    "checkpoint": "weights file (.safetensors/.pth) to load instead of the committed zoo checkpoint or cached timm "
                  "weights",
    "dataset": "calibration/test dataset: fashion-mnist or imagenet (None: the model's own; Fashion-MNIST for the zoo)",
    "data_root": "dataset directory: Fashion-MNIST's four IDX files or ImageNet's DIR/<split>/<class>/ tree (None: "
                 "Debian's dataset-fashion-mnist, then ~/.cache/roundlab; ImageNet: $ROUNDLAB_IMAGENET)",
    "wbits": "weight bit-width, 2-8 (paper W4A4 -> 4)",
    "abits": "activation bit-width, 2-8 (paper W4A4 -> 4)",
    "method": "named preset, a row of the paper's tables: rtn | calib | aqer | wqer | erq (explicit flags override it)",
    "calibration": "quantizer calibration: percentile (RepQ-ViT/ERQ percentile-MSE search, with --reparam) or minmax "
                   "(min/max quantizers, the RTN row)",
    "aqer": "Aqer: absorb the activation-quantization error into the FP weights by ridge regression (paper Eq. 5-8)",
    "wqer": "Wqer: quantize each layer's weights segment by segment, rounding then ridge (paper Alg. 1, Eq. 9-17); "
            "off: round to nearest",
    "solver": "rounding solver in Wqer's Rounding Refinement slot (roundlab solvers; rr: the paper's Eq. 13-15)",
    "rounding": "Wqer's rounding step uses --solver (paper Eq. 12-16); off: each segment is rounded to nearest",
    "ridge": "Wqer's ridge step on the remaining columns (paper Eq. 17)",
    "rounding_layers": "layers whose Wqer rounding uses --solver: all Linears (release) or qkv_fc1 (the release's "
                       "commented-out condition); the others round to nearest",
    "lam": "ridge strength λ of Aqer (λ₁, paper Eq. 8) and of Wqer's ridge (λ₂, Eq. 17), read in --lam-convention "
           "(release: its `coe`)",
    "lam_convention": "how --lam is read: release (0.1·λ added to the unnormalised Gram X̄ᵀX̄) or paper (λ per "
                      "sample: E[x̄x̄ᵀ] + λI)",
    "head_lam": "Aqer λ of the classifier head: shared (every layer's) or release (0.1, which overfits 32 calibration "
                "images)",
    "partition": "Wqer's column split: natural (first half of the remaining columns, shared by all rows; release) or "
                 "error (per row, the columns with the smallest rounding error)",
    "data_flow": "each layer's input: independent (the FP network's, through the layer's own quantizer; release) or "
                 "sequential (the partially quantized network's output, GPTQ-like)",
    "dual_uniform": "dual-uniform weight quantizer for qkv/fc1 (TPAMI); off: one uniform grid per output channel "
                    "(ICML)",
    "reparam": "RepQ-ViT reparameterisation: fold the channel-wise post-LayerNorm quantizers into LayerNorm + the next "
               "Linear (ERQ_SPEC §4)",
    "calib_images": "number of calibration images (paper: 32)",
    "calib_batch_size": "images per forward pass of the activation calibration: the quantizers are calibrated one "
                        "at a time, streamed over the images in batches of this size, so memory does not hold every "
                        "image's activations, and the calibration and held-out images are loaded batch by batch "
                        "whenever a pass reads them, not held (same grids as one pass, bit-identical when one batch "
                        "holds all images; None: one pass over all images, as released)",
    "heldout_images": "number of held-out training images for the per-layer held-out Eq. 4 errors (0: none)",
    "eval_images": "number of test images to evaluate on (None: the whole test split)",
    "seed": "seed of torch and of the calibration / held-out image draw, an integer in [0, 2**63)",
    "records": "basic, or full (also Wqer rounding-only / ridge-only errors for Figs. 6-7)",
    "device": "torch device: auto (cuda when a CUDA device is present, else cpu), cpu, cuda or cuda:N",
    "batch_size": "images per forward pass (memory only: never changes the weights)",
    "executor": "where Wqer's rounding subproblems run: serial, process (local workers) or ray",
    "workers": "worker processes / Ray slots for --executor process|ray",
    "chunk_rows": "rows per subproblem task (None: one task per Wqer segment)",
    "task_timeout": "seconds per task (process/ray); past it the rows are rounded to nearest and recorded (None: no "
                    "limit)",
    "retries": "re-runs of a task whose worker died, before rounding to nearest (recorded)",
    "on_solver_error": "raise (one error; rerunning resumes) or fallback (round to nearest, recorded)",
}


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per ERQConfig field, typed from its annotation; unset flags keep the method preset's value."""
    from roundlab.pipeline.config import ERQConfig

    hints = typing.get_type_hints(ERQConfig)
    for f in dataclasses.fields(ERQConfig):
        if f.name in ("solver_options", "quant_options"):
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = f"{_FLAG_HELP.get(f.name, '')} (default: {default})".strip()
        hint = hints[f.name]
        if hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif hint in (int, float):
            parser.add_argument(flag, type=hint, default=None, help=help_text)
        elif hint == (int | None):
            parser.add_argument(flag, type=int, default=None, help=help_text)
        elif hint == (float | None):
            parser.add_argument(flag, type=float, default=None, help=help_text)
        else:
            parser.add_argument(flag, type=str, default=None, help=help_text)
    parser.add_argument("--solver-opt", action="append", default=[], metavar="KEY=VALUE",
                        help="option of --solver, repeatable; VALUE is a Python literal (e.g. rr: --solver-opt k=2 "
                             "for top-k flips per iteration, paper Table 5; --solver-opt variant=paper for Eq. 13)")
    parser.add_argument("--quant-opt", action="append", default=[], metavar="KEY=VALUE",
                        help="roundlab.quant.QuantConfig option, repeatable (e.g. --quant-opt round_zero=True)")


def _config_from_args(args: argparse.Namespace):
    from roundlab.pipeline.config import ERQConfig

    overrides = {}
    for f in dataclasses.fields(ERQConfig):
        value = getattr(args, f.name, None)
        if value is not None and f.name != "method":
            overrides[f.name] = value
    for flag, field_name in (("solver_opt", "solver_options"), ("quant_opt", "quant_options")):
        options = {}
        for item in getattr(args, flag):
            if "=" not in item:
                raise RoundlabError(f"--{flag.replace('_', '-')} expects KEY=VALUE, got {item!r}")
            key, value = item.split("=", 1)
            options[key.strip()] = _parse_value(value.strip())
        if options:
            overrides[field_name] = options
    return ERQConfig.for_method(args.method or "erq", **overrides)


def _load_plugins(modules: list[str]) -> None:
    """Import each ``--plugin`` module (it registers its solvers, executors, … on import)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise RoundlabError(f"--plugin {module}: cannot import it ({e})") from None


def _add_plugin_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import MODULE first, so the solvers (executors, ...) it registers can be named; "
                             "repeatable (e.g. --plugin roundlab.testing.faulty for the fault-injection solver)")


def cmd_quantize(args: argparse.Namespace) -> int:
    from roundlab.pipeline.run import print_table, run_erq

    _load_plugins(args.plugin)
    config = _config_from_args(args)
    if args.low_memory:
        from roundlab.heap import map_large_allocations

        if not map_large_allocations():
            print("roundlab: --low-memory has no effect here (no glibc mallopt, or it refused the threshold)",
                  file=sys.stderr)
    result = run_erq(config, run_dir=args.run_dir, fresh=args.fresh, progress=not args.quiet)
    print_table([result])
    print(f"results: {result['paths']['result']}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from roundlab.pipeline.records import RecordWriter, format_report

    for run_dir in args.run_dirs:
        path = Path(run_dir) / "records.jsonl"
        if not path.is_file():
            raise RoundlabError(f"no records.jsonl in {run_dir} (a run directory of `roundlab quantize`)")
        try:
            records = RecordWriter(path).read()
        except (OSError, UnicodeDecodeError) as e:
            raise RoundlabError(f"{path} cannot be read ({type(e).__name__}); is it a roundlab run?") from None
        latest = {r["layer"]: r for r in records if isinstance(r, dict) and isinstance(r.get("layer"), str)
                  and isinstance(r.get("kind"), str)}
        if records and not latest:
            raise RoundlabError(f"{path} holds no roundlab layer records")
        print(f"== {run_dir}" + ("" if (Path(run_dir) / "result.json").exists() else
                                 f"  (PARTIAL: {len(latest)} layer(s) finished, no result.json yet)"))
        print(format_report(list(latest.values())))
    return 0


def cmd_solvers(args: argparse.Namespace) -> int:
    from roundlab.solvers import list_solvers, solver_class

    _load_plugins(args.plugin)
    for name in list_solvers():
        cls = solver_class(name)
        doc = (cls.__doc__ or "").strip().splitlines()
        claims = [c for c in ("exact", "monotone") if getattr(cls, c)] + ["+".join(cls.objectives)]
        needs = cls.missing()
        missing = f" (needs {', '.join(needs)})" if needs else ""
        print(f"{name:10s} {', '.join(claims):30s} {doc[0] if doc else ''}{missing}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from roundlab.zoo import list_models

    for name in list_models():
        print(name)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from roundlab.data import load_dataset
    from roundlab.evaluate import evaluate
    from roundlab.pipeline.config import resolve_device
    from roundlab.zoo import load_model

    args.device = resolve_device(args.device)
    model, data_cfg = load_model(args.model, device=args.device, checkpoint=args.checkpoint)
    ds = load_dataset(data_cfg.get("dataset", "fashion-mnist") if isinstance(data_cfg, dict) else "fashion-mnist",
                      split="test", root=args.data_root)
    metrics = evaluate(model, ds, batch_size=args.batch_size, device=args.device)
    print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with the package's one-line errors (subcommand parsers inherit the class)."""

    def error(self, message):
        self.exit(2, f"roundlab: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="roundlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="one of:")

    q = sub.add_parser("quantize", help="run ERQ (or a baseline) on a model and print a results table")
    _add_config_flags(q)
    q.add_argument("--run-dir", default=None,
                   help="where to write results (default: runs/<model>-W<b>A<b>-<method>-<solver>-<hash>)")
    q.add_argument("--fresh", action="store_true", help="ignore a previous, interrupted run in --run-dir")
    q.add_argument("--quiet", action="store_true", help="no progress bars")
    q.add_argument("--low-memory", action="store_true",
                   help="give every allocation of 1 MiB or more its own mapping, returned to the OS when freed "
                        "(glibc; roundlab.heap): a lower peak with many calibration images, at a slower calibration")
    _add_plugin_flag(q)
    q.set_defaults(func=cmd_quantize)

    e = sub.add_parser("eval", help="evaluate a FP model on its test split")
    e.add_argument("--model", default="fmnist-vit", help=_FLAG_HELP["model"] + " (default: fmnist-vit)")
    e.add_argument("--checkpoint", default=None, help=_FLAG_HELP["checkpoint"] + " (default: None)")
    e.add_argument("--data-root", default=None, help=_FLAG_HELP["data_root"] + " (default: None)")
    e.add_argument("--device", default="auto", help=_FLAG_HELP["device"] + " (default: auto)")
    e.add_argument("--batch-size", type=int, default=500, help=_FLAG_HELP["batch_size"] + " (default: 500)")
    e.set_defaults(func=cmd_eval)

    r = sub.add_parser("report", help="per-layer Eq. 4 error-reduction ratios of finished runs")
    r.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="run directory of `roundlab quantize` (its records.jsonl; a partial run is reported too)")
    r.set_defaults(func=cmd_report)

    so = sub.add_parser("solvers", help="list registered rounding solvers: name, declared claims "
                                        "(exact, monotone = never worse than its start, objectives), summary")
    _add_plugin_flag(so)
    so.set_defaults(func=cmd_solvers)
    sub.add_parser("models", help="list zoo models").set_defaults(func=cmd_models)

    t = sub.add_parser("train-zoo", help="train a zoo model on Fashion-MNIST (a one-off; checkpoints are committed)")
    from roundlab.zoo import train as zoo_train

    zoo_train.add_arguments(t)
    t.set_defaults(func=zoo_train.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except RoundlabError as err:
        print(f"roundlab: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:          # disk full, permissions, a vanished file: what, where, no traceback
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        print(f"roundlab: error: {err.strerror or err}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("roundlab: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
