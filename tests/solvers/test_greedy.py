"""Greedy one-flip descent: certified 1-flip local optima, exact flip deltas, iteration limits."""

import pytest
import torch

from roundlab.problem import Status
from roundlab.solvers import get_solver

from .cases import ALL_CASES, case, optimum


def one_flip_gains(p, delta):
    """Change of the loss for every single flip, by full re-evaluation (R, d)."""
    base = p.objective(delta)
    gains = torch.zeros(p.shape, dtype=torch.float64)
    for j in range(p.d):
        other = delta.clone()
        other[:, j] = p.flipped(delta)[:, j]
        gains[:, j] = (p.objective(other) - base).cpu()
    return gains


@pytest.mark.parametrize("kind, seed", ALL_CASES)
def test_result_is_one_flip_optimal(kind, seed):
    p = case(kind, seed)
    res = get_solver("greedy")(p)
    assert all(s is Status.LOCAL_OPTIMUM for s in res.status)
    gains = one_flip_gains(p, res.delta)
    assert (gains >= -1e-12 * res.objective[:, None]).all()
    assert (res.objective >= optimum(kind, seed) * (1 - 1e-12)).all()


def test_each_flip_uses_the_exact_delta():
    # One flip at a time: the descent's k-th state equals best-improvement by full re-evaluation.
    p = case("outlier", 2)
    delta = p.nearest()
    for k in range(1, 4):
        gains = one_flip_gains(p, delta)
        best, j = gains.min(1)
        step = delta.clone()
        rows = torch.arange(p.rows)
        step[rows, j] = torch.where(best < 0, p.flipped(delta)[rows, j], delta[rows, j])
        delta = step
        assert torch.equal(get_solver("greedy", max_iter=k)(p).delta, delta)


def test_iteration_limit_is_reported():
    p = case("dual", 0)
    full = get_solver("greedy")(p)
    assert int(full.iterations.max()) >= 2
    one = get_solver("greedy", max_iter=1)(p)
    for s, n in zip(one.status, full.iterations.tolist()):
        assert s is (Status.ITERATION_LIMIT if n >= 2 else Status.LOCAL_OPTIMUM)


def test_beats_nearest_and_rr_on_outlier_problems():
    from roundlab.testing.synthetic import vit_like_problem
    p = vit_like_problem(32, 64, seed=4)
    near = float(p.objective(p.nearest()).sum())
    g = float(get_solver("greedy")(p).objective.sum())
    r = float(get_solver("rr")(p).objective.sum())
    assert g < 0.9 * near and g < r


def _bits(t):
    return t.contiguous().view(torch.int64)


@pytest.mark.parametrize("kind, seed", [("outlier", 0), ("dual", 1), ("perrow", 2), ("samples", 0)])
def test_sync_interval_changes_no_returned_value(kind, seed):
    # The iterations a CUDA run queues past a stall change nothing: delta (bit for bit), flips and the
    # still-improving mask are those of one read per iteration, also at an iteration limit and from a bad start.
    from roundlab.solvers.greedy import descend
    p = case(kind, seed)
    for start in (p.nearest(), p.flipped(p.nearest())):
        for max_iter, tol in [(1, 1e-12), (2, 1e-12), (7, 0.0), (100 * p.d, 1e-12), (100 * p.d, 1e-4)]:
            ref = descend(p, start, max_iter, tol, every=1)
            for every in (2, 3, 8, 1000):
                got = descend(p, start, max_iter, tol, every=every)
                assert torch.equal(_bits(got[0]), _bits(ref[0])) and torch.equal(got[1], ref[1])
                assert torch.equal(got[2], ref[2])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_sync_interval_changes_nothing():
    from roundlab.solvers.base import sync_every
    from roundlab.solvers.greedy import descend
    from roundlab.testing.synthetic import vit_like_problem
    assert sync_every("cuda") > 1
    for p in (case("outlier", 1).to("cuda"), vit_like_problem(32, 64, seed=4).to("cuda")):
        for start in (p.nearest(), p.flipped(p.nearest())):
            ref, got = descend(p, start, 100 * p.d, 1e-12, every=1), descend(p, start, 100 * p.d, 1e-12)
            assert torch.equal(_bits(got[0]), _bits(ref[0])) and torch.equal(got[1], ref[1])
            assert torch.equal(got[2], ref[2])
