"""MIQP: every backend, linearisation and objective reaches the brute-force optimum with a proven status; time
limits are reported as such (PuLP's "Optimal" label is not trusted); never worse than the warm start."""

import pytest
import torch

from roundlab.errors import RoundlabError
from roundlab.problem import Status
from roundlab.solvers import get_solver
from roundlab.solvers.miqp import BACKENDS, available_backends
from roundlab.testing.synthetic import vit_like_problem

from .cases import SEEDS, case, optimum

AVAILABLE = set(available_backends())


def _backend(name):
    return pytest.param(name, marks=pytest.mark.skipif(name not in AVAILABLE, reason=f"{name} not installed"))


PULP = [_backend(b) for b in ("cbc", "highs", "scip")]
ALL = PULP + [_backend("cvxpy-scip"), _backend("gurobi")]


def _check_optimal(res, opt):
    torch.testing.assert_close(res.objective, opt, rtol=1e-9, atol=1e-30)
    assert all(s is Status.OPTIMAL for s in res.status), res.status
    assert (res.gap <= 1e-6).all() and (res.bound <= opt * (1 + 1e-12)).all()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", ["outlier", "clamped", "dual", "perrow"])
@pytest.mark.parametrize("linearization", ["fortet", "glover"])
@pytest.mark.parametrize("backend", PULP)
def test_pulp_backends_reach_the_optimum_on_the_proxy(backend, linearization, kind, seed):
    res = get_solver("miqp", backend=backend, linearization=linearization, warm_start=None)(case(kind, seed))
    _check_optimal(res, optimum(kind, seed))
    assert res.info["linearization_used"].keys() <= {linearization}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", ["outlier", "clamped", "dual", "perrow"])
def test_cvxpy_scip_reaches_the_optimum_on_the_proxy(kind, seed):
    if "cvxpy-scip" not in AVAILABLE:
        pytest.skip("cvxpy-scip not installed")
    _check_optimal(get_solver("miqp", backend="cvxpy-scip", warm_start=None)(case(kind, seed)), optimum(kind, seed))


@pytest.mark.parametrize("seed", SEEDS[:2])
@pytest.mark.parametrize("backend", ALL)
def test_samples_objective_reaches_the_same_optimum(backend, seed):
    p = case("samples", seed)
    res = get_solver("miqp", backend=backend, objective="samples", warm_start=None)(p)
    _check_optimal(res, optimum("samples", seed))
    # the proxy and the samples formulations minimise the same function
    torch.testing.assert_close(p.objective(res.delta, "samples").cpu(), res.objective, rtol=1e-12, atol=0)


@pytest.mark.parametrize("backend", ALL)
def test_time_limited_runs_are_not_called_optimal(backend):
    p = vit_like_problem(2, 40, seed=11)
    greedy = get_solver("greedy")(p)
    res = get_solver("miqp", backend=backend, time_limit=0.05)(p)     # warm start: tabu (never worse than greedy)
    assert (res.objective <= greedy.objective * (1 + 1e-12)).all(), "worse than the warm start"
    for s, gap in zip(res.status, res.gap.tolist()):
        if s is Status.OPTIMAL:
            assert gap <= 1e-6
    assert any(s is not Status.OPTIMAL for s in res.status), "0.05 s cannot prove a d=40 row"
    assert all(s in (Status.OPTIMAL, Status.TIME_LIMIT, Status.FALLBACK, Status.FEASIBLE) for s in res.status)


def test_cbc_time_limit_label_is_not_trusted():
    if "cbc" not in AVAILABLE:
        pytest.skip("cbc not installed")
    p = vit_like_problem(1, 40, seed=12)
    res = get_solver("miqp", backend="cbc", linearization="fortet", time_limit=0.05, warm_start=None)(p)
    assert res.status[0] in (Status.TIME_LIMIT, Status.FALLBACK)
    assert "time" in next(iter(res.info["backend_status"])).lower()


def test_init_is_the_warm_start_and_never_lost():
    p = case("outlier", 0)
    best = get_solver("brute")(p).delta
    res = get_solver("miqp", backend=sorted(AVAILABLE)[0], time_limit=5)(p, init=best)
    assert torch.equal(res.delta, best) and res.info["warm_start"] == "init"


def test_samples_objective_needs_samples():
    with pytest.raises(RoundlabError, match="needs a problem built from samples X"):
        get_solver("miqp", objective="samples")(case("outlier", 0))


def test_missing_backend_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(type(BACKENDS["highs"]), "available", lambda self: False)
    with pytest.raises(RoundlabError, match="backend 'highs' is not available"):
        get_solver("miqp", backend="highs")(case("outlier", 0))
