"""Plot style, figure saving and the title fragment every figure shares."""

from __future__ import annotations

from pathlib import Path

from analysis.log import log


def setup_style():
    """matplotlib's pyplot on the Agg backend with the figures' style."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 130, "font.size": 9, "axes.grid": True,
                         "grid.alpha": 0.3, "axes.titlesize": 9.5, "legend.fontsize": 8})
    return plt


def save_figure(fig, out: Path, name: str) -> Path:
    import matplotlib.pyplot as plt

    path = Path(out) / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    log(f"wrote {path}")
    return path


def describe(cfg) -> str:
    """Short title fragment: model, bits, calibration, evaluation size."""
    ev = "all 10k" if cfg.eval_images is None else f"{cfg.eval_images}"
    return f"{cfg.model} W{cfg.wbits}A{cfg.abits}, {cfg.calib_images} calib imgs, eval on {ev} test imgs"
