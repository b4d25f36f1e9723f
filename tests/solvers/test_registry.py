"""The registry: names, validated frozen configs, one-line errors, third-party solvers."""

import dataclasses
import json
from dataclasses import dataclass

import pytest
import torch

from roundlab.errors import RoundlabError
from roundlab.problem import Status
from roundlab.solvers import (Solution, Solver, SolverConfig, get_solver, list_solvers, register_solver,
                              unregister_solver)
from roundlab.solvers.base import check_int

from .cases import case

BUILTIN = {"nearest", "rr", "greedy", "tabu", "gptq", "adaround", "miqp", "brute"}


def test_builtins_registered():
    assert BUILTIN <= set(list_solvers())


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_default_config_is_frozen_and_serialisable(name):
    s = get_solver(name)
    assert dataclasses.is_dataclass(s.config)
    json.dumps(s.config.asdict())
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(s.config, dataclasses.fields(s.config)[0].name if dataclasses.fields(s.config) else "x", 1)
    assert (type(s).__doc__ or "").strip(), "the CLI lists the first docstring line"


def test_unknown_solver_is_one_clear_error():
    with pytest.raises(RoundlabError, match=r"unknown solver 'nope'; choose one of .*rr") as e:
        get_solver("nope")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name, options, match", [
    ("rr", {"variant": "fast"}, "variant must be one of"),
    ("rr", {"k": 0}, "k must be an integer"),
    ("rr", {"max_iter": 1.5}, "max_iter must be an integer"),
    ("rr", {"mask": "loose"}, "mask must be one of"),
    ("rr", {"kk": 1}, r"unknown option\(s\) \['kk'\]"),
    ("greedy", {"tol": -1.0}, "tol must be a number"),
    ("adaround", {"lr": 0.0}, "lr must be a number"),
    ("adaround", {"warmup": 1.5}, "warmup must be a number"),
    ("adaround", {"iters": True}, "iters must be an integer"),
    ("gptq", {"order": "random"}, "order must be one of"),
    ("miqp", {"backend": "mosek"}, "backend must be one of"),
    ("miqp", {"time_limit": 0}, "time_limit must be a number"),
    ("miqp", {"objective": "exact"}, "objective must be one of"),
    ("miqp", {"warm_start": "miqp"}, "warm_start must be"),
    ("brute", {"max_free": 40}, "max_free must be an integer"),
    ("tabu", {"tenure": -1}, "tenure must be an integer"),
    ("tabu", {"start": "tabu"}, "start must be None or the name of another solver"),
    ("nearest", {"k": 1}, "unknown option"),
])
def test_bad_config_is_one_clear_error(name, options, match):
    with pytest.raises(RoundlabError, match=match) as e:
        get_solver(name, **options)
    assert "\n" not in str(e.value)


def test_non_problem_input_is_rejected():
    with pytest.raises(RoundlabError, match="expects a RoundingProblem"):
        get_solver("nearest")(torch.zeros(2, 3))


def test_third_party_solver_registers_without_editing_roundlab():
    @dataclass(frozen=True)
    class UpConfig(SolverConfig):
        every: int = 2

        def validate(self):
            check_int("every", self.every, 1)

    @register_solver("test-every-other-up")
    class EveryOtherUp(Solver):
        """Round every other element up (a test plugin)."""

        Config = UpConfig

        def solve(self, problem, init):
            up = torch.zeros(problem.shape, dtype=torch.bool)
            up[:, :: self.config.every] = True
            return Solution(problem.delta_from_up(up), Status.HEURISTIC)

    try:
        assert "test-every-other-up" in list_solvers()
        p = case("outlier", 0)
        res = get_solver("test-every-other-up", every=3)(p)
        assert res.solver == "test-every-other-up" and res.config == {"every": 3}
        assert torch.equal(res.delta[:, 0], torch.where(p.free[:, 0], p.hi[:, 0], p.lo[:, 0]))
        with pytest.raises(RoundlabError, match="every must be an integer"):
            get_solver("test-every-other-up", every=0)
        with pytest.raises(RoundlabError, match="already registered"):
            register_solver("test-every-other-up")(type("Other", (EveryOtherUp,), {}))
    finally:
        unregister_solver("test-every-other-up")
    assert "test-every-other-up" not in list_solvers()


def test_registration_rejects_non_solvers_and_mutable_configs():
    with pytest.raises(RoundlabError, match="decorates Solver subclasses"):
        register_solver("test-bad")(object)

    @dataclass
    class Mutable:                      # not a frozen SolverConfig
        a: int = 1

    class S(Solver):
        Config = Mutable

        def solve(self, problem, init):
            return Solution(problem.nearest(), Status.HEURISTIC)

    with pytest.raises(RoundlabError, match="frozen dataclass"):
        register_solver("test-mutable")(S)


def test_a_solver_returning_off_grid_values_is_caught():
    class Broken(Solver):
        def solve(self, problem, init):
            return Solution(problem.lo + 0.25 * problem.step, Status.HEURISTIC)

    p = case("outlier", 0)
    with pytest.raises(RoundlabError, match="off the floor/ceil candidates"):
        Broken()(p)


@pytest.mark.parametrize("codes, words", [(lambda R: torch.full((R,), 2.7), "must be integers"),
                                          (lambda R: torch.full((R,), 99), "outside 0..6"),
                                          (lambda R: torch.zeros(R + 1, dtype=torch.long), "status entries")])
def test_a_solver_returning_bad_status_codes_is_caught(codes, words):
    class Broken(Solver):
        def solve(self, problem, init):
            return Solution(problem.nearest(), codes(problem.rows))

    with pytest.raises(RoundlabError, match=words):
        Broken()(case("outlier", 0))
