"""Tabu search: certified 1-flip optima, never worse than its start, finds the optimum of small rows."""

import pytest
import torch

from roundlab.errors import RoundlabError
from roundlab.problem import Status
from roundlab.solvers import get_solver
from roundlab.testing.synthetic import vit_like_problem

from .cases import ALL_CASES, case, optimum
from .test_greedy import one_flip_gains


def test_reaches_the_brute_force_optimum_on_small_rows():
    hits = total = 0
    for kind, seed in ALL_CASES:
        p, opt = case(kind, seed), optimum(kind, seed)
        res = get_solver("tabu")(p)
        assert all(s is Status.LOCAL_OPTIMUM for s in res.status)
        assert (one_flip_gains(p, res.delta) >= -1e-12 * res.objective[:, None]).all()
        hits += int((res.objective <= opt * (1 + 1e-9)).sum())
        total += p.rows
    assert hits >= 0.95 * total, f"tabu found the optimum on {hits}/{total} rows"


@pytest.mark.parametrize("start", [None, "gptq", "nearest"])
def test_never_worse_than_greedy_from_the_same_start(start):
    p = vit_like_problem(16, 96, seed=3)
    init = None if start is None else get_solver(start)(p).delta
    t = get_solver("tabu", iters=400)(p, init=init)
    starts = [init] if init is not None else [p.nearest(), get_solver("gptq")(p).delta]
    g = torch.stack([get_solver("greedy")(p, init=s).objective for s in starts]).min(0).values
    assert (t.objective <= g * (1 + 1e-12)).all()
    assert float(t.objective.sum()) < float(g.sum())


def test_greedy_start_option():
    p = vit_like_problem(8, 64, seed=2)
    a = get_solver("greedy", start="gptq")(p)
    b = get_solver("greedy")(p, init=get_solver("gptq")(p).delta)
    assert torch.equal(a.delta, b.delta)
    with pytest.raises(RoundlabError, match="start must be None or the name of another solver"):
        get_solver("greedy", start="greedy")
    with pytest.raises(RoundlabError, match="unknown solver 'nope'"):
        get_solver("tabu", start="nope")(p)
