"""Per-layer error records: the paper's Eq. 4 output error, written as JSON lines.

``E‖W x + b − (W̄ x̄ + b̄)‖²`` — the FP layer (original weights ``W``, FP input ``x``) against the layer as it stands after
a stage (weights ``W̄``, possibly quantized, and the quantized input ``x̄``). The expectation is over the N rows
(tokens × images); the norm is over the output channels. Stages share the FP reference, so the error-reduction
ratio of a stage (paper Figs. 5–9) is ``1 − after/before``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

#: Stages recorded per layer, in pipeline order. ``act_only``: FP weights, quantized input (before Aqer).
#: ``calib``: RTN weights from the quantizer calibrated on the original W (the paper's "baseline").
#: ``aqer``: Aqer weights, still FP. ``rtn_after_aqer``: Aqer weights rounded to nearest (Wqer's starting point).
#: ``rounding_only`` / ``ridge_only``: Wqer with only one of its two parts. ``wqer``: after Wqer.
#: ``final``: the weights inference uses (whatever the method), quantized by the layer's weight quantizer.
STAGES = ("act_only", "calib", "aqer", "rtn_after_aqer", "rounding_only", "ridge_only", "wqer", "final")

#: (figure, stage before, stage after) for the paper's error-reduction ratios.
RATIOS = {
    "aqer": ("act_only", "aqer"),                 # Fig. 5
    "rounding": ("rtn_after_aqer", "rounding_only"),  # Fig. 6
    "ridge": ("rtn_after_aqer", "ridge_only"),    # Fig. 7
    "wqer": ("rtn_after_aqer", "wqer"),           # Fig. 8
    "erq": ("calib", "final"),                    # Fig. 9 (with the full method: Aqer + Wqer)
}


def output_error(W0: torch.Tensor, b0: torch.Tensor | None, X: torch.Tensor, W: torch.Tensor,
                 b: torch.Tensor | None, Xbar: torch.Tensor, chunk: int = 8192) -> float:
    """Mean over rows of ``‖(X W0ᵀ + b0) − (X̄ Wᵀ + b)‖²`` (paper Eq. 4), accumulated in float64."""
    W0, W = W0.to(torch.float64), W.to(torch.float64)
    total = 0.0
    for i in range(0, X.shape[0], chunk):
        ref = X[i:i + chunk].to(torch.float64) @ W0.T
        out = Xbar[i:i + chunk].to(torch.float64) @ W.T
        if b0 is not None:
            ref = ref + b0.to(torch.float64)
        if b is not None:
            out = out + b.to(torch.float64)
        total += float(((ref - out) ** 2).sum())
    return total / X.shape[0]


def reduction_ratios(errors: dict[str, float]) -> dict[str, float]:
    """The error-reduction ratio ``1 − after/before`` for every ratio whose two stages were recorded."""
    out = {}
    for name, (before, after) in RATIOS.items():
        if before in errors and after in errors and errors[before] > 0:
            out[name] = 1.0 - errors[after] / errors[before]
    return out


class RecordWriter:
    """Append-only JSON-lines file; each record is flushed and fsynced so an interrupted run loses nothing."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read(self) -> list[dict]:
        """Every complete record (a torn last line from a crash is ignored)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out


def lowered_share(records: list[dict], before: str, after: str, key: str = "errors") -> tuple[int, int]:
    """(layers where ``after`` < ``before``, layers with both stages) over ``records`` (``key``: errors or
    errors_heldout)."""
    pairs = [(r[key][before], r[key][after]) for r in records
             if key in r and before in r[key] and after in r[key]]
    return sum(a < b for b, a in pairs), len(pairs)


def format_report(records: list[dict]) -> str:
    """Per-layer error-reduction ratios (in-sample / held-out) and how often each stage lowered the Eq. 4 error."""
    names = [n for n in RATIOS if any(n in r.get("ratios", {}) for r in records)]
    head = f"{'layer':28s} {'kind':11s} " + " ".join(f"{n:>15s}" for n in names)
    lines = [head, f"{'':40s} " + " ".join(f"{'calib / held':>15s}" for _ in names), "-" * len(head)]
    for r in records:
        cells = []
        for n in names:
            a, h = r.get("ratios", {}).get(n), r.get("ratios_heldout", {}).get(n)
            cells.append(f"{'' if a is None else f'{a:+.3f}':>7s} / {'' if h is None else f'{h:+.3f}':>6s}")
        lines.append(f"{r['layer'][:28]:28s} {r['kind']:11s} " + " ".join(f"{c:>15s}" for c in cells))
    lines.append("")
    for n in names:
        before, after = RATIOS[n]
        k, m = lowered_share(records, before, after)
        kh, mh = lowered_share(records, before, after, "errors_heldout")
        lines.append(f"{n:9s} ({before} -> {after}) lowers the Eq. 4 error on {k}/{m} layers (calibration images)"
                     + (f", {kh}/{mh} (held-out images)" if mh else ""))
    fallbacks = [(r["layer"], f) for r in records for f in r.get("fallbacks", [])]
    if fallbacks:
        rows = sum(f["rows"][1] - f["rows"][0] for _, f in fallbacks)
        reasons = sorted({f["reason"] for _, f in fallbacks})
        lines.append(f"FALLBACKS: {rows} rounding rows in {len({n for n, _ in fallbacks})} layer(s) were rounded to "
                     f"nearest instead of solved: {'; '.join(reasons)}")
    return "\n".join(lines)
