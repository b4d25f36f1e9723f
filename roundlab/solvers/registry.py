"""The solver registry: ``register_solver`` (a class decorator), ``list_solvers``, ``get_solver``.

A third party registers without editing roundlab::

    from dataclasses import dataclass
    from roundlab.solvers import Solver, SolverConfig, Solution, register_solver

    @dataclass(frozen=True)
    class MyConfig(SolverConfig):
        tries: int = 3

    @register_solver("mine")
    class Mine(Solver):
        \"\"\"One line shown by ``roundlab solvers``.\"\"\"
        Config = MyConfig
        def solve(self, problem, init):
            return Solution(problem.nearest(), status="heuristic")
"""

from __future__ import annotations

import dataclasses

from roundlab.errors import RoundlabError
from roundlab.registry import Registry
from roundlab.solvers.base import Solver, SolverConfig


def _check_solver_class(name: str, cls) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Solver)):
        raise RoundlabError(f"register_solver({name!r}) decorates Solver subclasses, got {cls!r}")
    config = cls.Config
    if not (isinstance(config, type) and issubclass(config, SolverConfig) and dataclasses.is_dataclass(config)
            and config.__dataclass_params__.frozen):
        raise RoundlabError(f"solver {name!r}: Config must be a frozen dataclass subclassing SolverConfig")
    try:
        config()  # defaults must pass their own validation
    except RoundlabError as e:
        raise RoundlabError(f"solver {name!r}: its default config is invalid ({e})") from None


#: Every registered solver class by name.
SOLVERS: Registry[type[Solver]] = Registry("solver", check=_check_solver_class)


def register_solver(name: str, *, override: bool = False):
    """Class decorator: register a :class:`Solver` subclass under ``name`` (sets ``cls.name``)."""

    def decorate(cls):
        SOLVERS.register(name, cls, override=override)
        cls.name = name
        return cls

    return decorate


def unregister_solver(name: str) -> None:
    """Remove ``name`` from the registry (for tests and plugins that clean up)."""
    SOLVERS.unregister(name)


def list_solvers(available_only: bool = False) -> list[str]:
    """Registered solver names, sorted; ``available_only`` drops those whose required modules are missing."""
    return sorted(SOLVERS.names(lambda c: not available_only or c.available()))


def solver_class(name: str) -> type[Solver]:
    return SOLVERS.get(name)


def get_solver(name: str, **config) -> Solver:
    """An instance of the solver ``name`` with validated config keyword options."""
    return solver_class(name)(**config)
