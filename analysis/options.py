"""The options every analysis script shares: parsed once into a frozen :class:`Options`, passed explicitly.

``--smoke`` runs the same code path on shrunk settings (:data:`SMOKE`) with outputs in a temp dir. Scripts add their
own flags through ``extra`` and read them from the returned namespace.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "figures"
RUNS = ROOT / "runs" / "analysis"
SMOKE_DIR = Path(tempfile.gettempdir()) / "roundlab-analysis-smoke"

#: Shrunk settings of every smoke run (same code path, seconds instead of minutes).
SMOKE = {"calib_images": 2, "heldout_images": 2, "eval_images": 64}


@dataclass(frozen=True)
class Options:
    """The shared options: mode, model and bits, test images, output and run-cache folders, models to run."""

    smoke: bool
    model: str
    wbits: int
    abits: int
    eval_images: int | None
    out: Path
    runs: Path
    models: tuple[str, ...]

    def with_model(self, model: str) -> "Options":
        return replace(self, model=model)

    def config(self, method: str = "erq", **overrides):
        """An ERQConfig for ``method`` on this model and bits; smoke shrinks calibration and held-out sets."""
        from roundlab.pipeline.config import ERQConfig

        base = {"model": self.model, "wbits": self.wbits, "abits": self.abits, "eval_images": self.eval_images}
        if self.smoke:
            base.update(calib_images=SMOKE["calib_images"], heldout_images=SMOKE["heldout_images"])
        return ERQConfig.for_method(method, **{**base, **overrides})


def positive_int(text: str) -> int:
    """argparse ``type`` for counts that must be at least 1 (workers, rows per task)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def parse(doc: str, argv=None, *, full_eval: int | None = None, models: bool | str = False,
          extra: Callable[[argparse.ArgumentParser], None] | None = None) -> tuple[Options, argparse.Namespace]:
    """Parse the shared flags (plus ``--models`` when ``models`` is set, and what ``extra`` adds).

    ``full_eval``: test images of the full mode (None: the whole split). ``models``: True for a ``--models`` flag
    defaulting to ``--model``, a comma-separated string for its full-mode default (smoke: ``--model``)."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny, seconds: same code path, output in a temp dir")
    p.add_argument("--model", default="fmnist-vit", help="zoo model (default fmnist-vit)")
    p.add_argument("--wbits", type=int, default=4, help="weight bits (default 4)")
    p.add_argument("--abits", type=int, default=4, help="activation bits (default 4)")
    p.add_argument("--eval-images", type=int, default=full_eval,
                   help=f"test images evaluated (default: {full_eval or 'the whole 10k split'}; "
                        f"smoke: {SMOKE['eval_images']})")
    p.add_argument("--out", type=Path, default=None, help="figures dir (default figures/, smoke: a temp dir)")
    p.add_argument("--runs", type=Path, default=None, help="run cache (default runs/analysis/, smoke: a temp dir)")
    if models:
        full = models if isinstance(models, str) else None
        p.add_argument("--models", default=None,
                       help=f"comma-separated zoo models (default {full or 'the --model'}; smoke: --model)")
    if extra is not None:
        extra(p)
    ns = p.parse_args(argv)
    return _options(ns, models), ns


def _options(ns: argparse.Namespace, models: bool | str) -> Options:
    eval_images = ns.eval_images
    if ns.smoke:
        eval_images = min(eval_images or SMOKE["eval_images"], SMOKE["eval_images"])
    chosen = getattr(ns, "models", None)
    if not chosen:
        chosen = models if isinstance(models, str) and not ns.smoke else ns.model
    opts = Options(smoke=ns.smoke, model=ns.model, wbits=ns.wbits, abits=ns.abits, eval_images=eval_images,
                   out=ns.out or (SMOKE_DIR / "figures" if ns.smoke else FIGURES),
                   runs=ns.runs or (SMOKE_DIR / "runs" if ns.smoke else RUNS),
                   models=tuple(chosen.split(",")))
    opts.out.mkdir(parents=True, exist_ok=True)
    opts.runs.mkdir(parents=True, exist_ok=True)
    return opts
