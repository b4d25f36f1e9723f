"""One validation idiom for every option roundlab accepts: ``check_*(name, value, ...)`` raises a one-line
:class:`~roundlab.errors.RoundlabError` that names the option, says what it must be and shows what it got
(``check_known``: a name looked up among a kind of things, worded like :class:`roundlab.registry.Registry`).

Frozen config dataclasses (solver configs, :class:`~roundlab.pipeline.config.ERQConfig`, executor options) call
these from ``__post_init__``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from roundlab.errors import RoundlabError


def check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None, *, none: bool = False) -> None:
    """``value`` is an int (not bool) in [lo, hi] (or None when ``none``)."""
    if value is None and none:
        return
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f" in [{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise RoundlabError(f"{name} must be an integer{rng}{' or None' if none else ''}, got {value!r}")


def check_float(name: str, value: Any, lo: float | None = None, hi: float | None = None, *,
                lo_open: bool = False, none: bool = False) -> None:
    """``value`` is a real number in [lo, hi] (``(lo, hi]`` when ``lo_open``), finite unless ``hi`` is inf."""
    if value is None and none:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value <= hi
    if ok and hi is None and math.isinf(value):
        ok = False
    if not ok:
        left = "(" if lo_open else "["
        right = f"{hi}]" if hi is not None else "inf)"
        raise RoundlabError(f"{name} must be a number in {left}{lo if lo is not None else '-inf'}, {right}"
                            f"{' or None' if none else ''}, got {value!r}")


def check_choice(name: str, value: Any, choices: Sequence) -> None:
    if value not in choices:
        raise RoundlabError(f"{name} must be one of {list(choices)}, got {value!r}")


def check_known(kind: str, value: Any, names: Sequence) -> None:
    """``value`` is one of the ``names`` of a kind of thing (a method, a solver, a data flow): "unknown <kind> 'x';
    choose one of a, b" (the registries' wording)."""
    if value not in names:
        raise RoundlabError(f"unknown {kind} {value!r}; choose one of {', '.join(map(str, names))}")


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise RoundlabError(f"{name} must be True or False, got {value!r}")
