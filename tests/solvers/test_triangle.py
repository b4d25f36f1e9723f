"""Shor's SDP with the pair cuts (triangle.py): never above the brute-force optimum, never below Shor's bound, and
much tighter than Shor where Shor's gap is large; bnb reports it on open rows."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from roundlab.errors import RoundlabError
from roundlab.problem import Status
from roundlab.solvers import get_solver
from roundlab.solvers.bound import lower_bound
from roundlab.solvers.qcr import RowQP, row_qps
from roundlab.solvers.triangle import certified, shor_matrix, triangle_bound
from roundlab.testing.synthetic import vit_like_problem

from tests.solvers.cases import KINDS, case, optimum


def _enumerate(qp: RowQP) -> float:
    X = np.array(list(itertools.product([0.0, 1.0], repeat=qp.k)))
    return float(qp.value(X).min())


def _low_rank_row(k: int, seed: int) -> RowQP:
    """A rank-k/2 Gram with its continuous minimiser inside the box: where Shor's SDP is loose."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((k // 2, k))
    Q = A.T @ A
    t = rng.standard_normal(k) * 0.6 + 0.5
    return RowQP(np.arange(k), Q, -2 * Q @ t, float(t @ Q @ t) + 0.01)


@pytest.mark.parametrize("seed", range(6))
def test_the_bound_lies_between_shor_s_and_the_optimum(seed):
    qp = _low_rank_row(12, seed)
    opt = _enumerate(qp)
    tb = triangle_bound(qp, qp.f0, steps=300)
    assert tb.shor <= tb.bound <= opt + 1e-12 * qp.f0, (tb, opt)


def test_the_cuts_close_at_least_half_of_shor_s_summed_gap_on_loose_rows():
    shor_gap = tri_gap = 0.0
    for seed in range(6):
        qp = _low_rank_row(12, seed)
        opt = _enumerate(qp)
        tb = triangle_bound(qp, qp.f0, steps=300)
        shor_gap += opt - tb.shor
        tri_gap += opt - tb.bound
    assert shor_gap > 0.5, "these rows should have a large Shor gap (the test would be vacuous)"
    assert tri_gap < 0.5 * shor_gap, (tri_gap, shor_gap)


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "samples"])
def test_the_bound_never_exceeds_the_optimum_on_the_adversarial_cases(kind):
    p = case(kind, 0)
    opt = optimum(kind, 0)
    for r, qp in enumerate(row_qps(p, p.nearest())):
        if qp is None:
            continue
        tb = triangle_bound(qp, qp.f0, steps=100)
        assert tb.bound <= float(opt[r]) * (1 + 1e-9) + 1e-300, (kind, r, tb, float(opt[r]))


def test_certified_is_a_lower_bound_for_any_factor():
    qp = _low_rank_row(10, 3)
    opt = _enumerate(qp)
    C, K, scale = shor_matrix(qp)
    rng = np.random.default_rng(0)
    for _ in range(20):                                    # random unit rows: a poor V, still a valid bound
        V = rng.standard_normal((C.shape[0], 5))
        V /= np.linalg.norm(V, axis=1, keepdims=True)
        assert certified(C, V, K, 0.0) * scale <= opt + 1e-12


def test_lower_bound_triangle_is_valid_and_at_least_mixing_s():
    p = case("outlier", 1)
    opt = optimum("outlier", 1)
    tri = lower_bound(p, "triangle").bound
    mix = lower_bound(p, "mixing").bound
    assert (tri <= opt * (1 + 1e-9)).all()
    assert (tri >= mix * (1 - 1e-6) - 1e-12).all(), (tri, mix)


def test_bnb_reports_the_tighter_bound_on_rows_it_leaves_open():
    p = vit_like_problem(2, 20, seed=4)
    opt = get_solver("brute")(p).objective
    plain = get_solver("bnb", node_limit=20, triangle_steps=0)(p)
    tight = get_solver("bnb", node_limit=20, triangle_steps=200)(p)
    assert all(s is Status.TIME_LIMIT for s in tight.status)
    assert (tight.bound <= opt * (1 + 1e-9)).all()
    assert (tight.bound >= plain.bound).all() and (tight.bound > plain.bound).any(), (tight.bound, plain.bound)
    torch.testing.assert_close(tight.objective, plain.objective)


def test_a_time_cap_stops_the_fit_early_and_the_bound_stays_valid():
    qp = _low_rank_row(12, 1)
    capped = triangle_bound(qp, qp.f0, steps=10000, seconds=0.0)
    assert capped.steps == 0 and capped.bound == capped.shor <= _enumerate(qp)


@pytest.mark.parametrize("call", [lambda: get_solver("bnb", triangle_steps=-1),
                                  lambda: get_solver("bnb", triangle_seconds=-1.0),
                                  lambda: lower_bound(case("outlier", 0), "triangle", triangle_steps=-2)])
def test_a_negative_step_count_is_one_clear_error(call):
    with pytest.raises(RoundlabError, match="triangle_") as e:
        call()
    assert "\n" not in str(e.value)


def test_a_non_symmetric_q_is_read_as_its_symmetric_part():
    qp = RowQP(np.arange(2), np.array([[0.0, 0.0], [2.0, 0.0]]), np.array([1.0, -1.0]), 1.0)   # min L = 0
    assert _enumerate(qp) == 0.0
    assert triangle_bound(qp, qp.f0).bound <= 1e-12
