"""What an MIQP backend is: :class:`Backend` (solves one :class:`RowData`) and :class:`BackendResult`, and the
:data:`BACKENDS` registry they are looked up in."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np

from roundlab.registry import Registry
from roundlab.solvers.miqp.formulations import RowData


@dataclass
class BackendResult:
    x: np.ndarray | None             # 0/1 flips, or None if the backend returned no point
    raw: str                         # the backend's own status words
    finished: bool                   # the backend says it proved optimality (its optimal status)
    time_limited: bool
    bound: float | None = None       # lower bound on L/f⁰ (the scaled objective including its constant)
    nodes: int = 0


class Backend:
    """One way to solve a row: ``solve(data, cfg, objective, linearization)`` → :class:`BackendResult`.

    ``requires``: importable modules it needs. ``native``: it takes the quadratic objective itself (and ignores
    ``linearization``); otherwise ``linearization`` is the one ``"auto"`` picks up to ``fortet_max_d``.
    ``bound_tol``: subtracted from its bound (scaled units) for its tolerances, unless the config sets one."""

    requires: tuple[str, ...] = ()
    native = True
    linearization = "native"
    bound_tol = 1e-7

    def available(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in self.requires)

    def solve(self, data: RowData, cfg, objective: str, linearization: str) -> BackendResult:
        raise NotImplementedError


#: Backend name → a :class:`Backend` instance; third parties may register more.
BACKENDS: Registry[Backend] = Registry("MIQP backend")


def available_backends() -> list[str]:
    """Registered backends whose packages (and solver) are installed, in registration order."""
    return BACKENDS.names(lambda b: b.available())
