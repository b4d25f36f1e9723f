"""Rounding Refinement: the batched incremental solver equals a literal per-row transcription of ERQ_SPEC §6.3 and
the recomputing reference, flip for flip."""

import pytest
import torch

from roundlab.problem import RoundingProblem, Status
from roundlab.solvers import get_solver

from roundlab.testing.synthetic import vit_like_problem

from .cases import case


def flipping(seed=0, factor=1.0, perrow=False, dual=False):
    """ViT-like rows without outlier channels, where Rounding Refinement does flip (with outlier channels the
    top-|g| element is almost always the outlier, whose flip is rejected at once). ``factor`` scales M."""
    p = vit_like_problem(16, 16, seed=seed, outliers=0, N=128, dual=dual, dtype=torch.float64)
    M = p.M * factor
    if perrow:
        M = torch.stack([M * (1 + 0.25 * r) for r in range(p.rows)]) + 0.05 * torch.eye(p.d)
    return RoundingProblem.from_grid(p.w, p.scale, p.zero, p.bits, M=M)


def literal(p, variant, max_iter=100, start=None):
    """ERQ_SPEC §6.3, row by row, written as plainly as possible (k = 1)."""
    out = []
    start = p.nearest() if start is None else start
    for r in range(p.rows):
        C = p.M if p.shared else p.M[r]
        lo, hi, delta = p.lo[r], p.hi[r], start[r].clone()
        for _ in range(max_iter):
            g = 2 * delta @ C
            J = [j for j in range(p.d) if float(delta[j] * g[j]) > 0]
            if not J:
                break
            j = max(J, key=lambda i: float(g[i].abs()))
            new = delta.clone()
            if variant == "release":
                u = delta[j] - g[j]
                new[j] = hi[j] if (u - hi[j]).abs() <= (u - lo[j]).abs() else lo[j]
            else:
                new[j] = lo[j] if delta[j] == hi[j] else hi[j]
            if float(new @ C @ new) > float(delta @ C @ delta) or torch.equal(new, delta):
                break
            delta = new
        out.append(delta)
    return torch.stack(out)


@pytest.mark.parametrize("variant", ["release", "paper"])
@pytest.mark.parametrize("seed, perrow, dual", [(0, False, False), (1, False, True), (2, True, False)])
def test_matches_the_literal_release_loop(variant, seed, perrow, dual):
    p = flipping(seed, perrow=perrow, dual=dual)
    res = get_solver("rr", variant=variant)(p)
    assert torch.equal(res.delta, literal(p, variant))
    assert int(res.iterations.sum()) > 0, "the case must exercise flips"
    assert (~p.free).any() or dual, "the case must contain clamped elements"


@pytest.mark.parametrize("variant", ["release", "paper"])
def test_matches_the_literal_loop_on_outlier_cases(variant):
    for kind, seed in [("outlier", 2), ("clamped", 0), ("perrow", 1)]:
        p = case(kind, seed)
        assert torch.equal(get_solver("rr", variant=variant)(p).delta, literal(p, variant))


@pytest.mark.parametrize("variant", ["release", "paper"])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("mask", ["strict", "nonneg"])
@pytest.mark.parametrize("perrow", [False, True])
def test_incremental_equals_recomputing_reference(variant, k, mask, perrow):
    p = flipping(3, perrow=perrow)
    inc = get_solver("rr", variant=variant, k=k, mask=mask)(p)
    ref = get_solver("rr", variant=variant, k=k, mask=mask, incremental=False, loop="release")(p)
    assert int(inc.iterations.sum()) > 0
    assert torch.equal(inc.delta, ref.delta)
    assert torch.equal(inc.iterations, ref.iterations) and inc.status == ref.status


def test_release_step_is_not_scale_invariant():
    # Scale M down (|g| ≪ s): the release's unit step never reaches the other grid point; the paper's flip,
    # scale invariant, does exactly what it did before.
    big, small = flipping(0), flipping(0, factor=1e-3)
    assert int(get_solver("rr")(big).iterations.sum()) > 0
    rel = get_solver("rr", variant="release")(small)
    assert int(rel.iterations.sum()) == 0 and torch.equal(rel.delta, small.nearest())
    assert torch.equal(get_solver("rr", variant="paper")(small).delta, get_solver("rr", variant="paper")(big).delta)


def test_max_iter_is_reported_as_iteration_limit():
    p = flipping(1)
    full = get_solver("rr", variant="paper")(p)
    assert int(full.iterations.max()) >= 2 and int(full.iterations.max()) < 100
    assert all(s is Status.HEURISTIC for s in full.status)
    one = get_solver("rr", variant="paper", max_iter=1)(p)
    assert int(one.iterations.max()) == 1
    for s, n in zip(one.status, full.iterations.tolist()):
        assert s is (Status.ITERATION_LIMIT if n >= 1 else Status.HEURISTIC)


def test_never_worse_than_nearest():
    for kind, seed in [("outlier", 0), ("clamped", 1), ("dual", 2)]:
        p = case(kind, seed)
        near = p.objective(p.nearest())
        for variant in ("release", "paper"):
            assert (get_solver("rr", variant=variant)(p).objective <= near.cpu()).all()


def test_max_iter_zero_returns_the_start():
    p = case("dual", 1)
    assert torch.equal(get_solver("rr", max_iter=0)(p).delta, p.nearest())


def test_release_group_loop_changes_runtime_not_results():
    p = vit_like_problem(8, 32, seed=5, dtype=torch.float64)        # outlier channels: many no-op proposals
    row = get_solver("rr")(p)
    grp = get_solver("rr", incremental=False, loop="release")(p)
    assert torch.equal(row.delta, grp.delta) and torch.equal(row.iterations, grp.iterations)
    assert row.info["loop_iterations"] <= 3 and grp.info["loop_iterations"] == 100


def _bits(t):
    return t.contiguous().view(torch.int64)


@pytest.mark.parametrize("variant, k, incremental, loop", [("release", 1, True, "row"), ("paper", 1, True, "row"),
                                                           ("paper", 3, True, "row"), ("release", 1, False, "release"),
                                                           ("paper", 2, True, "release")])
def test_sync_interval_changes_no_returned_value(variant, k, incremental, loop):
    # The iterations a CUDA run queues past the stop test change nothing: delta (bit for bit), flips, the active
    # mask and the loop count are those of one read per iteration.
    from roundlab.solvers.rr import RRConfig, refine
    problems = [flipping(0), flipping(2, perrow=True), case("clamped", 1), vit_like_problem(8, 32, seed=5,
                                                                                            dtype=torch.float64)]
    for p in problems:
        for max_iter in (1, 2, 5, 100):
            cfg = RRConfig(variant=variant, k=k, incremental=incremental, loop=loop, max_iter=max_iter)
            ref = refine(p, cfg, p.nearest(), every=1)
            for every in (2, 3, 8, 1000):
                got = refine(p, cfg, p.nearest(), every=every)
                assert torch.equal(_bits(got[0]), _bits(ref[0])) and torch.equal(got[1], ref[1])
                assert torch.equal(got[2], ref[2]) and got[3] == ref[3]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_sync_interval_changes_nothing():
    from roundlab.solvers.base import sync_every
    from roundlab.solvers.rr import RRConfig, refine
    assert sync_every("cuda") > 1
    for p in (flipping(0).to("cuda"), vit_like_problem(8, 32, seed=5, dtype=torch.float64).to("cuda")):
        for cfg in (RRConfig(), RRConfig(variant="paper", k=2), RRConfig(incremental=False, loop="release")):
            ref, got = refine(p, cfg, p.nearest(), every=1), refine(p, cfg, p.nearest())
            assert torch.equal(_bits(got[0]), _bits(ref[0])) and torch.equal(got[1], ref[1])
            assert torch.equal(got[2], ref[2]) and got[3] == ref[3]
