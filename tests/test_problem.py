"""RoundingProblem: candidates on the grid, round-to-nearest, objectives, the proxy identities, errors."""

import pytest
import torch

from roundlab.errors import RoundlabError
from roundlab.problem import RoundingProblem, RoundingResult, Status, proxy_matrix
from roundlab.quant.grid import fake_quant


def _grid(R=5, d=9, seed=0, clip=1.0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(R, d, generator=g)
    lo, hi = w.amin(1, keepdim=True) * clip, w.amax(1, keepdim=True) * clip
    scale = (hi - lo) / 15
    zero = torch.round(-lo / scale)
    X = torch.randn(50, d, generator=g, dtype=torch.float64) + 0.5
    return w, scale, zero, X


def test_candidates_are_the_floor_and_ceil_grid_points():
    w, s, z, X = _grid(clip=0.7)
    p = RoundingProblem.from_grid(w, s, z, 4, X=X)
    assert p.lo.dtype == torch.float64 and p.shape == (5, 9)
    torch.testing.assert_close(p.lo, (fake_quant(w, s, z, 4, "floor") - w).double(), rtol=0, atol=1e-7)
    torch.testing.assert_close(p.hi, (fake_quant(w, s, z, 4, "ceil") - w).double(), rtol=0, atol=1e-7)
    clamped = ~p.free
    assert clamped.any(), "clip=0.7 must clamp some weights"
    assert torch.equal(p.lo[clamped], p.hi[clamped])
    free = p.free
    assert (p.lo[free] <= 1e-7).all() and (p.hi[free] >= -1e-7).all()
    torch.testing.assert_close(p.step[free], s.expand_as(w).double()[free], rtol=1e-5, atol=0)
    # quantized() returns the grid values themselves: re-quantizing them changes nothing
    q = p.quantized(p.nearest())
    assert torch.equal(fake_quant(q, s, z, 4, "round"), q)
    torch.testing.assert_close(q, fake_quant(w, s, z, 4, "round"))


def test_nearest_is_round_half_even_and_on_the_candidates():
    w = torch.tensor([[0.5, 1.5, 2.5, -0.5, 0.26]])
    p = RoundingProblem.from_grid(w, torch.ones(1, 1), torch.full((1, 1), 4.0), 4, M=torch.eye(5))
    q = w + p.nearest().float()
    torch.testing.assert_close(q, torch.tensor([[0.0, 2.0, 2.0, -0.0, 0.0]]))
    assert p.on_candidates(p.nearest()).all()


def test_dual_uniform_row_has_per_element_grids():
    w = torch.tensor([[0.11, 0.23, 2.1, -2.7], [0.05, -0.13, 0.07, 0.11]])
    scale = torch.tensor([[0.05, 0.05, 0.4, 0.4], [0.02, 0.02, 0.02, 0.02]])
    zero = torch.tensor([[8.0, 8.0, 8.0, 8.0], [8.0, 8.0, 8.0, 8.0]])
    p = RoundingProblem.from_grid(w, scale, zero, 4, M=torch.eye(4))
    torch.testing.assert_close(p.step[0], scale[0].double(), rtol=1e-5, atol=1e-7)


def test_proxy_equals_samples_objective_and_the_unbiased_bound():
    g = torch.Generator().manual_seed(3)
    X = torch.distributions.StudentT(3.0).sample((40, 7)).double() + 1.0
    w, s, z, _ = _grid(R=6, d=7, seed=3)
    ps = RoundingProblem.from_grid(w, s, z, 4, X=X)
    pm = RoundingProblem.from_grid(w, s, z, 4, M=proxy_matrix(X, "biased"))
    delta = torch.where(torch.rand(6, 7, generator=g) < 0.5, ps.lo, ps.hi)
    L = ps.objective(delta, "samples")
    torch.testing.assert_close(ps.objective(delta), L, rtol=1e-12, atol=0)
    torch.testing.assert_close(pm.objective(delta), L, rtol=1e-12, atol=0)
    # ERQ's μμᵀ + Σ with torch.cov's unbiased Σ: L ≤ proxy ≤ N/(N−1)·L (ERQ_SPEC §11)
    N = X.shape[0]
    mu = X.mean(0)
    C = torch.outer(mu, mu) + torch.cov(X.T)
    torch.testing.assert_close(C, proxy_matrix(X, "unbiased"))
    pu = (delta @ C * delta).sum(1)
    assert (pu >= L * (1 - 1e-12)).all() and (pu <= L * N / (N - 1) * (1 + 1e-12)).all()
    assert (pu > L).any()


def test_per_row_M_and_subproblem():
    w, s, z, X = _grid(R=3, d=5)
    Ms = torch.stack([X[i::3].T @ X[i::3] / X[i::3].shape[0] for i in range(3)])
    p = RoundingProblem.from_grid(w[:, :5], s, z, 4, M=Ms)
    assert not p.shared
    d = p.nearest()
    expect = torch.stack([d[i] @ Ms[i] @ d[i] for i in range(3)])
    torch.testing.assert_close(p.objective(d), expect)
    sub = p.subproblem([2])
    torch.testing.assert_close(sub.objective(d[2:]), expect[2:])


def test_snap_accepts_float32_and_rejects_off_grid():
    w, s, z, X = _grid()
    p = RoundingProblem.from_grid(w, s, z, 4, X=X)
    assert torch.equal(p.snap(p.hi.float()), p.hi)
    with pytest.raises(RoundlabError, match="not on the floor/ceil candidates"):
        p.snap(p.lo + 0.3 * p.step.clamp_min(1e-3))


@pytest.mark.parametrize("kwargs, match", [
    (dict(M=torch.eye(9), X=torch.ones(4, 9)), "exactly one of M"),
    (dict(), "exactly one of M"),
    (dict(M=torch.eye(8)), "M must be"),
    (dict(M=torch.randn(9, 9)), "symmetric"),
    (dict(X=torch.ones(4, 8)), "X must be"),
    (dict(M=torch.full((9, 9), float("nan"))), "NaN"),
])
def test_bad_objective_data_is_one_clear_error(kwargs, match):
    w, s, z, _ = _grid()
    with pytest.raises(RoundlabError, match=match):
        RoundingProblem.from_grid(w, s, z, 4, **kwargs)


def test_bad_grid_is_one_clear_error():
    w, s, z, X = _grid()
    with pytest.raises(RoundlabError, match="bits"):
        RoundingProblem.from_grid(w, s, z, 9, X=X)
    with pytest.raises(RoundlabError, match="scale must be > 0"):
        RoundingProblem.from_grid(w, -s, z, 4, X=X)
    with pytest.raises(RoundlabError, match="broadcast"):
        RoundingProblem.from_grid(w, s[:2], z, 4, X=X)
    with pytest.raises(RoundlabError, match="lo <= hi"):
        RoundingProblem.from_candidates(torch.ones(2, 3), torch.zeros(2, 3), M=torch.eye(3))


def test_result_summary_and_with_bound():
    p = RoundingProblem.from_candidates(torch.tensor([[-1.0, -0.5]]), torch.tensor([[0.5, 0.5]]), M=torch.eye(2))
    from roundlab.solvers import get_solver
    res = get_solver("nearest")(p)
    assert isinstance(res, RoundingResult) and res.status == (Status.HEURISTIC,)
    s = res.summary()
    assert s["status"] == {"heuristic": 1} and s["bound"] is None and s["objective"] == pytest.approx(0.5)
    proved = res.with_bound(torch.tensor([0.5]))
    assert proved.status == (Status.OPTIMAL,) and float(proved.gap[0]) == 0.0
    loose = res.with_bound(torch.tensor([0.25]))
    assert loose.status == (Status.HEURISTIC,) and float(loose.gap[0]) == pytest.approx(0.5)
    import json
    json.dumps(loose.summary(), allow_nan=False)
