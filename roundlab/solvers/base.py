"""The solver base class: validate inputs, call the solver, check the answer's invariants, build the result.

A solver is a :class:`Solver` subclass with a frozen, validated config dataclass (``Config``) and one method,
:meth:`Solver.solve`, that returns a :class:`Solution`. :meth:`Solver.__call__` does everything else, the same way
for every solver (the optimum-quanto shape): it snaps ``init`` onto the candidates, times the call, checks that every
returned element is exactly ``lo`` or ``hi``, recomputes the objective in float64 (a backend's own number is never
trusted), computes gaps from the bounds, and marks rows that have no free element as trivially ``OPTIMAL``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from roundlab.errors import RoundlabError
from roundlab.validate import check_bool, check_choice, check_float, check_int  # noqa: F401  (solvers import them from here)
from roundlab.problem import RoundingProblem
from roundlab.result import CODE, ROW_FIELDS, STATUSES, RoundingResult, Status  # noqa: F401  (CODE, STATUSES: for solvers)


# --------------------------------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class SolverConfig:
    """Base of every solver config: frozen, validated in ``__post_init__`` (override :meth:`validate`)."""

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise :class:`RoundlabError` on a bad value; the default accepts everything."""

    def asdict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class NoConfig(SolverConfig):
    """A solver without options."""


# --------------------------------------------------------------------------------------------------- solutions
@dataclass
class Solution:
    """What :meth:`Solver.solve` returns; :meth:`Solver.__call__` turns it into a :class:`RoundingResult`.

    ``status``: one :class:`Status` for every row, a sequence of R, or an int tensor of codes into ``STATUSES``.
    ``bound``: (R,) valid lower bounds (NaN where none). ``iterations``: (R,). ``row_time``: (R,) seconds, if the
    solver measured rows separately. ``fallback``: (R,) bool, rows where the start was returned instead.
    """

    delta: torch.Tensor
    status: Any
    bound: torch.Tensor | None = None
    iterations: torch.Tensor | None = None
    row_time: torch.Tensor | None = None
    fallback: torch.Tensor | None = None
    info: dict = field(default_factory=dict)


assert all(f.name in {x.name for x in dataclasses.fields(Solution)} for f in ROW_FIELDS), \
    "every ROW_FIELDS entry is a Solution attribute"


def start_point(problem: RoundingProblem, init: torch.Tensor | None) -> torch.Tensor:
    """The start of a local method: ``init`` (already snapped by ``__call__``) or round-to-nearest."""
    return problem.nearest() if init is None else init.clone()


def seeded_start(problem: RoundingProblem, init: torch.Tensor | None, start: str | None) -> torch.Tensor:
    """``init`` if given; else the answer of the registered solver ``start`` (default options); else nearest."""
    if init is not None:
        return init.clone()
    if start is None:
        return problem.nearest()
    from roundlab.solvers.registry import get_solver
    return get_solver(start)(problem).delta


#: Config options that name another solver as the start (checked against the registry by :meth:`Solver.check`).
START_OPTIONS = ("start", "warm_start", "polish")


def check_start(name: str, value, own: str) -> None:
    """``value`` is None or the name of a solver other than ``own`` (checked against the registry on use)."""
    if value is not None and (not isinstance(value, str) or value == own):
        raise RoundlabError(f"{name} must be None or the name of another solver, got {value!r}")


def keep_better(problem: RoundingProblem, delta: torch.Tensor, start: torch.Tensor,
                codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return ``start`` on rows where ``delta`` is strictly worse; those rows get status FALLBACK.

    Returns ``(delta, codes, fallback)`` with ``fallback`` a CPU bool tensor (R,)."""
    worse = problem.objective(delta) > problem.objective(start)
    delta = torch.where(worse[:, None], start, delta)
    codes = torch.where(worse.cpu(), torch.full_like(codes, CODE[Status.FALLBACK]), codes)
    return delta, codes, worse.cpu()


#: Iterations a batched local search (``rr``, ``greedy``) runs between two reads of its stop test, per device type.
#: Reading a flag from a CUDA tensor waits for the device, so there the loops queue several iterations per read;
#: the iterations after a stop change nothing they return (proved beside each loop), so every result is the same
#: on any setting. The CPU reads every iteration (no wasted iterations; there a read costs nothing).
SYNC_EVERY = {"cuda": 8}


def sync_every(device) -> int:
    """Iterations between two host reads of a loop's stop test on ``device`` (:data:`SYNC_EVERY`, else 1)."""
    return SYNC_EVERY.get(torch.device(device).type, 1)


def full_codes(problem: RoundingProblem, status: Status) -> torch.Tensor:
    return torch.full((problem.rows,), CODE[status], dtype=torch.long)


# --------------------------------------------------------------------------------------------------- solver
class Solver(ABC):
    """A rounding solver. Subclass, set ``Config`` (a frozen :class:`SolverConfig`), implement :meth:`solve`,
    and register with ``@register_solver("name")``.

    Class attributes: ``name`` (set by the registry), ``Config``, ``requires`` (importable modules the solver needs,
    imported only on use), and what the solver accepts and promises — declared here, read by Wqer, ``roundlab
    solvers`` and the tests, never sniffed from a config:

    * ``objectives``: the objectives it can minimise, ``"proxy"`` (``δMδᵀ``) and/or ``"samples"`` (the N samples
      of a problem built from ``X``; the paper's "MIQP w/o proxy"). The configured one is :attr:`objective`.
    * ``exact``: it can prove optimality (status ``optimal`` with a bound equal to the objective).
    * ``monotone``: its answer is never worse than its start (``init``, else its own warm start).
    * ``uses_init``: ``init`` is a start / warm start (solvers that ignore it say so in their docstring).
    * ``batched``: all rows in one tensor program (False: row by row).
    * ``devices``: device types it computes on natively; other devices' problems are solved through the CPU.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type[SolverConfig]] = NoConfig
    requires: ClassVar[tuple[str, ...]] = ()
    objectives: ClassVar[tuple[str, ...]] = ("proxy",)
    exact: ClassVar[bool] = False
    monotone: ClassVar[bool] = False
    uses_init: ClassVar[bool] = True
    batched: ClassVar[bool] = True
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")

    def __init__(self, config: SolverConfig | None = None, **options):
        if config is not None and options:
            raise RoundlabError(f"{self._label()}: pass either a config object or keyword options, not both")
        if config is None:
            config = make_config(self.Config, options, self._label())
        elif not isinstance(config, self.Config):
            raise RoundlabError(f"{self._label()}: config must be a {self.Config.__name__}, "
                                f"got {type(config).__name__}")
        self.config = config
        if self.objective not in self.objectives:
            raise RoundlabError(f"{self._label()} minimises {' or '.join(self.objectives)}, not {self.objective!r}")

    @classmethod
    def _label(cls) -> str:
        return f"solver {cls.name or cls.__name__!r}"

    @property
    def objective(self) -> str:
        """The objective this instance minimises: its config's ``objective`` option, else the first declared."""
        return getattr(self.config, "objective", self.objectives[0])

    @classmethod
    def capabilities(cls) -> dict:
        """The declarations above, for ``roundlab solvers`` and result records."""
        return {"objectives": list(cls.objectives), "exact": cls.exact, "monotone": cls.monotone,
                "uses_init": cls.uses_init, "batched": cls.batched, "devices": list(cls.devices)}

    @classmethod
    def missing(cls) -> list[str]:
        """Required modules that are not installed."""
        return [m for m in cls.requires if importlib.util.find_spec(m) is None]

    @classmethod
    def available(cls) -> bool:
        return not cls.missing()

    def check(self, problem: RoundingProblem) -> None:
        """Solver-specific input checks (raise :class:`RoundlabError`); the default checks ``requires``."""
        missing = self.missing()
        if missing:
            raise RoundlabError(f"{self._label()} needs {', '.join(missing)}, which is not installed "
                                f"(pip install {' '.join(missing)})")
        for option in START_OPTIONS:               # a start solver named in the config must exist
            if getattr(self.config, option, None) is not None:
                from roundlab.solvers.registry import solver_class
                solver_class(getattr(self.config, option))
        if self.objective == "samples" and problem.X is None:
            raise RoundlabError(f"{self.name} objective='samples' needs a problem built from samples X "
                                f"(RoundingProblem.from_grid(..., X=...))")

    @abstractmethod
    def solve(self, problem: RoundingProblem, init: torch.Tensor | None) -> Solution:
        """Solve all rows; ``init`` is None or (R, d) float64 exactly on the candidates."""

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in dataclasses.asdict(self.config).items())
        return f"{type(self).__name__}({opts})"

    def __call__(self, problem: RoundingProblem, init: torch.Tensor | None = None) -> RoundingResult:
        if not isinstance(problem, RoundingProblem):
            raise RoundlabError(f"{self._label()} expects a RoundingProblem, got {type(problem).__name__}")
        self.check(problem)
        if init is not None:
            init = problem.snap(init, "init")
        t0 = time.perf_counter()
        work = problem
        if problem.device.type not in self.devices:   # e.g. a CPU-only solver on a CUDA problem: one copy each way
            work = problem.to("cpu")
            init = None if init is None else init.to("cpu")
        sol = self.solve(work, init)
        elapsed = time.perf_counter() - t0
        return self._result(problem, sol, elapsed)

    def _result(self, problem: RoundingProblem, sol: Solution, elapsed: float) -> RoundingResult:
        """The checked result (:meth:`RoundingResult.from_rows`) of ``sol``; records it leaves out get their fill
        (``row_time``: the call's time split evenly)."""
        R = problem.rows
        rows = {"delta": sol.delta, "status": _codes(sol.status, R, self._label())}
        fills = {"row_time": elapsed / R}
        for f in ROW_FIELDS:
            rows[f.name] = _vec(getattr(sol, f.name), R, fills.get(f.name, f.fill), f.dtype)
        return RoundingResult.from_rows(problem, rows, solver=self.name or type(self).__name__,
                                        config=self.config.asdict(), time=elapsed, info=sol.info, label=self._label())


def _codes(status, R: int, label: str) -> torch.Tensor:
    if isinstance(status, Status):
        return torch.full((R,), CODE[status], dtype=torch.long)
    if isinstance(status, torch.Tensor):
        if status.dtype.is_floating_point or status.dtype == torch.bool or status.is_complex():
            raise RoundlabError(f"{label} returned status codes of dtype {status.dtype}; they must be integers")
        codes = status.to(device="cpu", dtype=torch.long).reshape(-1)
    else:
        try:
            codes = torch.tensor([CODE[Status(s)] for s in status], dtype=torch.long)
        except (ValueError, TypeError, KeyError):
            raise RoundlabError(f"{label} returned an invalid status {status!r}") from None
    if codes.shape[0] != R:
        raise RoundlabError(f"{label} returned {codes.shape[0]} status entries for {R} rows")
    if bool((codes < 0).any()) or bool((codes >= len(STATUSES)).any()):
        raise RoundlabError(f"{label} returned status codes outside 0..{len(STATUSES) - 1}")
    return codes


def _vec(x, R: int, fill, dtype) -> torch.Tensor:
    if x is None:
        return torch.full((R,), fill, dtype=dtype)
    x = torch.as_tensor(x).to(device="cpu", dtype=dtype).reshape(-1)
    if x.shape[0] != R:
        raise RoundlabError(f"a solver returned a per-row record of length {x.shape[0]} for {R} rows")
    return x


def make_config(config_cls: type[SolverConfig], options: dict, label: str) -> SolverConfig:
    """Build ``config_cls(**options)``; unknown keys are one clear error."""
    known = [f.name for f in dataclasses.fields(config_cls)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise RoundlabError(f"{label}: unknown option(s) {unknown}; known: {known or 'none'}")
    try:
        return config_cls(**options)
    except TypeError as e:  # e.g. a positional/keyword mismatch in a third-party config
        raise RoundlabError(f"{label}: bad options {options!r} ({e})") from None
