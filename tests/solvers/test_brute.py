"""Brute force against itertools enumeration; clamped elements; the size limit."""

import itertools

import pytest
import torch

from roundlab.errors import RoundlabError
from roundlab.solvers import get_solver

from .cases import case


@pytest.mark.parametrize("kind", ["clamped", "dual", "perrow"])
def test_matches_itertools_enumeration(kind):
    p = case(kind, 0).subproblem(slice(0, 2))
    res = get_solver("brute", chunk_bits=5)(p)
    for r in range(p.rows):
        free = torch.nonzero(p.free[r]).flatten().tolist()
        best = float("inf")
        for bits in itertools.product([0, 1], repeat=len(free)):
            delta = p.lo[r].clone()
            for j, b in zip(free, bits):
                if b:
                    delta[j] = p.hi[r, j]
            M = p.M if p.shared else p.M[r]
            best = min(best, float(delta @ M @ delta))
        assert float(res.objective[r]) == pytest.approx(best, rel=1e-12)


def test_too_many_free_elements_is_one_clear_error():
    from roundlab.testing.synthetic import vit_like_problem
    with pytest.raises(RoundlabError, match="max_free=10"):
        get_solver("brute", max_free=10)(vit_like_problem(1, 16, seed=0, clip=1.0))
