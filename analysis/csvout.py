"""The CSV writer of every table and figure: floats with 10 significant digits, NaN and None as empty cells."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from analysis.log import log


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    """``rows`` under ``columns`` (default: every key, in first-seen order); other keys are left out."""
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: cell(r.get(k)) for k in columns})
    log(f"wrote {path}")
    return path


def cell(v):
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.10g}"
    return "" if v is None else v
