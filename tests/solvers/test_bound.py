"""Certified lower bounds: never above the brute-force optimum; the SDP is tight on these cases."""

import pytest
import torch

from roundlab.errors import RoundlabError
from roundlab.problem import Status
from roundlab.solvers import get_solver
from roundlab.solvers.bound import lower_bound

from .cases import ALL_CASES, case, optimum


@pytest.mark.parametrize("kind, seed", ALL_CASES)
def test_bounds_never_exceed_the_optimum(kind, seed):
    p, opt = case(kind, seed), optimum(kind, seed)
    res = {m: lower_bound(p, m).bound for m in ("zero", "eig", "jacobi", "mixing", "sdp", "auto")}
    for m, b in res.items():
        assert b.shape == opt.shape and (b >= 0).all()
        assert (b <= opt).all(), f"{m} bound above the optimum"
    assert torch.equal(res["auto"], torch.maximum(torch.maximum(res["eig"], res["jacobi"]), res["mixing"]))
    # two solvers of the same SDP (Shor) agree where both converge
    torch.testing.assert_close(res["mixing"], res["sdp"], rtol=2e-3, atol=1e-6 * float(opt.max()))
    # the SDP (Shor) multipliers, certified through the box QP, close most of the gap left by the cheap bound
    near = p.objective(p.nearest()).cpu()
    assert float((opt - res["sdp"]).sum()) <= 0.5 * float((near - res["jacobi"]).sum())


def test_a_bound_that_meets_the_incumbent_proves_optimality():
    p = case("dual", 0)
    brute = get_solver("brute")(p)
    greedy = get_solver("greedy")(p)
    b = lower_bound(p, "sdp").bound
    proved = greedy.with_bound(b, rtol=1e-3)
    for s, g, gb in zip(proved.status, proved.gap.tolist(), (greedy.objective - brute.objective).tolist()):
        assert (s is Status.OPTIMAL) == (g <= 1e-3)
        if s is Status.OPTIMAL:
            assert gb <= 1e-3 * float(brute.objective.max())


def test_unknown_method_is_one_clear_error():
    with pytest.raises(RoundlabError, match="unknown bound method 'dual'"):
        lower_bound(case("outlier", 0), "dual")


@pytest.mark.parametrize("d", [8, 40])
def test_the_compiled_mixing_sweeps_equal_the_torch_loop(d, monkeypatch):
    """Same updates, same per-row stopping: the numba kernel and the batched torch loop agree to round-off, and a
    row's multipliers do not depend on how long the rows after it take to settle (up to the round-off of the
    batched set-up, which can move a row's stop by a sweep)."""
    from roundlab.solvers import bound, mixing_kernel
    from roundlab.testing.synthetic import vit_like_problem

    if not mixing_kernel.COMPILED:
        pytest.skip("numba not installed: only the torch loop exists")
    p = vit_like_problem(3, d, seed=5)
    compiled = bound.shor_multipliers(p, 150)
    alone = bound.shor_multipliers(p.subproblem(slice(0, 1)), 150)
    monkeypatch.setattr(mixing_kernel, "COMPILED", False)
    looped = bound.shor_multipliers(p, 150)
    looped_alone = bound.shor_multipliers(p.subproblem(slice(0, 1)), 150)
    scale = compiled.abs().max()
    assert (compiled - looped).abs().max() <= 1e-6 * scale
    assert (compiled[0] - alone[0]).abs().max() <= 1e-6 * scale
    assert (looped[0] - looped_alone[0]).abs().max() <= 1e-6 * scale
