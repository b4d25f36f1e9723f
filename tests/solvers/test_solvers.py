"""Every registered solver against the brute-force oracle on small ViT-like problems (d = 12, several seeds):
outlier columns, clamped elements, a dual-uniform row, per-row M and the samples objective."""

import pytest
import torch

from roundlab.problem import Status
from roundlab.quant.grid import fake_quant
from roundlab.solvers import get_solver, list_solvers, solver_class
from roundlab.solvers.miqp import available_backends

from .cases import ALL_CASES, case, optimum

#: Options that keep the generic sweep fast (the dedicated test files cover the defaults).
FAST = {"adaround": {"iters": 300}, "miqp": {"backend": "highs" if "highs" in available_backends() else "cbc",
                                             "warm_start": None}}
SOLVERS = list_solvers(available_only=True)
#: Solvers that declare (``monotone``) they never end worse than their start (round-to-nearest or init).
FROM_START = {n for n in SOLVERS if solver_class(n).monotone}


def test_local_and_exact_methods_declare_monotone():
    assert {"rr", "greedy", "tabu", "adaround", "gptq", "miqp", "bnb"} <= FROM_START


def _solver(name, **extra):
    return get_solver(name, **{**FAST.get(name, {}), **extra})


@pytest.mark.parametrize("kind, seed", ALL_CASES)
@pytest.mark.parametrize("name", SOLVERS)
def test_solver_on_oracle_cases(name, kind, seed):
    p = case(kind, seed)
    opt = optimum(kind, seed)
    res = _solver(name)(p)
    # on the grid: every element is exactly one of its two candidates, and w + δ re-quantizes to itself
    assert p.on_candidates(res.delta).all()
    q = p.quantized(res.delta)
    assert torch.equal(fake_quant(q, p.scale, p.zero, p.bits, "round"), q)
    torch.testing.assert_close(res.objective, p.objective(res.delta).cpu(), rtol=0, atol=0)
    assert len(res.status) == p.rows and all(isinstance(s, Status) for s in res.status)
    assert (res.objective >= opt * (1 - 1e-12)).all(), "below the brute-force optimum"
    finite = ~torch.isnan(res.bound)
    assert (res.bound[finite] <= opt[finite] * (1 + 1e-9)).all(), "a reported bound exceeds the optimum"
    if name in FROM_START:
        nearest = p.objective(p.nearest()).cpu()
        assert (res.objective <= nearest * (1 + 1e-12)).all(), "worse than round-to-nearest"
    if solver_class(name).exact:
        torch.testing.assert_close(res.objective, opt, rtol=1e-9, atol=1e-30)
        assert all(s is Status.OPTIMAL for s in res.status)
        torch.testing.assert_close(res.gap, torch.zeros_like(res.gap), rtol=0, atol=1e-6)
    fallback_rows = {i for i, s in enumerate(res.status) if s is Status.FALLBACK}
    assert fallback_rows == set(torch.nonzero(res.fallback).flatten().tolist()) or name == "miqp"


@pytest.mark.parametrize("name", [n for n in SOLVERS if solver_class(n).uses_init])
def test_never_worse_than_init(name):
    p = case("outlier", 1)
    g = torch.Generator().manual_seed(7)
    init = torch.where(torch.rand(p.shape, generator=g, dtype=torch.float64) < 0.5, p.lo, p.hi)
    res = _solver(name)(p, init=init.float())               # float32 init is snapped onto the candidates
    assert (res.objective <= p.objective(init).cpu() * (1 + 1e-12)).all()


@pytest.mark.parametrize("name", SOLVERS)
def test_deterministic(name):
    p = case("dual", 2)
    a, b = _solver(name)(p), _solver(name)(p)
    assert torch.equal(a.delta, b.delta)


@pytest.mark.parametrize("name", SOLVERS)
def test_summary_is_json_able(name):
    import json
    res = _solver(name)(case("clamped", 0))
    s = res.summary()
    json.dumps(s, allow_nan=False)
    assert s["rows"] == 4 and sum(s["status"].values()) == 4 and s["time_s"] >= 0


def test_row_without_choice_is_optimal_for_every_solver():
    p = case("clamped", 0)
    from roundlab.problem import RoundingProblem
    fixed = RoundingProblem.from_candidates(p.lo[:1], p.lo[:1], M=p.M)   # nothing to choose
    for name in SOLVERS:
        res = _solver(name)(fixed)
        assert res.status == (Status.OPTIMAL,) and torch.equal(res.delta, p.lo[:1])


def test_a_problem_on_an_undeclared_device_is_solved_through_the_cpu():
    from roundlab.solvers.nearest import Nearest

    seen = []

    class CudaOnly(Nearest):                         # declares no CPU: a CPU problem is solved on a CPU copy
        devices = ("cuda",)

        def solve(self, problem, init):
            seen.append(problem)
            return super().solve(problem, init)

    p = case("outlier", 0)
    res = CudaOnly()(p)
    assert seen[0] is not p and seen[0].device.type == "cpu"
    assert torch.equal(res.delta, get_solver("nearest")(p).delta)
    assert solver_class("bnb").devices == ("cpu",) and solver_class("miqp").devices == ("cpu",)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", ["bnb", "miqp"])
def test_cpu_solvers_take_a_cuda_problem_through_the_cpu(name):
    if name == "miqp" and FAST["miqp"]["backend"] not in available_backends():
        pytest.skip("no MIQP backend installed")
    p = case("outlier", 0)
    cpu = _solver(name)(p)
    gpu = _solver(name)(p.to("cuda"))
    assert gpu.delta.device.type == "cuda" and torch.equal(gpu.delta.cpu(), cpu.delta)
    assert gpu.status == cpu.status


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", ["nearest", "rr", "greedy", "tabu", "gptq", "adaround"])
def test_cuda_matches_cpu(name):
    p = case("outlier", 0)
    cpu = _solver(name)(p)
    gpu = _solver(name)(p.to("cuda"))
    assert gpu.delta.device.type == "cuda"
    torch.testing.assert_close(gpu.objective, cpu.objective, rtol=1e-6, atol=0)
