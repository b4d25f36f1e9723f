"""bnb's ellipsoid bounds: every level's diagonal is certified PSD-below its block, the kernel's recursion for the
free minimiser equals the direct solve, the bound never exceeds a node's true remaining minimum (brute force), and
bnb with and without it returns the same proven optima."""

import itertools

import numpy as np
import pytest
import torch

from roundlab.problem import Status
from roundlab.solvers import get_solver
from roundlab.solvers.ellipsoid import Ellipsoid, ellipsoid, jacobi_diagonals
from roundlab.testing.synthetic import vit_like_problem, vit_like_samples


def _factor(k: int, seed: int, cond: float = 1e6) -> np.ndarray:
    """An upper-triangular factor of an ill-conditioned, ViT-like Gram matrix (outlier channels)."""
    g = torch.Generator().manual_seed(seed)
    X = vit_like_samples(4 * k, k, outliers=2, outlier_scale=20.0, generator=g).numpy()
    A = X.T @ X / X.shape[0] + np.eye(k) * np.trace(X.T @ X) / X.shape[0] / k / cond
    return np.linalg.cholesky(A).T


@pytest.mark.parametrize("levels", [3, 64])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_level_s_diagonal_leaves_its_block_psd(seed, levels):
    R = _factor(40, seed)
    A = R.T @ R
    D = jacobi_diagonals(A, levels)
    assert (D >= 0).all() and np.triu(D).max() == 0          # only D[l, :l]
    assert D[1:].sum(1).min() > 0                            # and not trivially zero
    for l in range(1, 40):
        ev = np.linalg.eigvalsh(A[:l, :l] - np.diag(D[l, :l]))
        assert ev[0] >= -1e-12 * abs(ev[-1]), (l, ev[0])


def test_the_recursion_for_the_free_minimiser_equals_the_direct_solve():
    R = _factor(30, 3)
    ctr = np.random.default_rng(0).normal(size=30)
    ell = ellipsoid(R, ctr)
    assert ell.on and ell.delta < 1e-6
    x = (np.random.default_rng(1).random(30) < 0.5).astype(float)
    t = ctr.copy()
    for l in range(29, 0, -1):
        t[:l] += ell.G[l, :l] * (x[l] - t[l])
        direct = np.linalg.lstsq(R[:l, :l], R[:l, :l] @ ctr[:l] - R[:l, l:] @ (x[l:] - ctr[l:]), rcond=None)[0]
        np.testing.assert_allclose(t[:l], direct, atol=ell.delta)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_the_ellipsoid_bound_never_exceeds_the_remaining_minimum(seed):
    """At every level and both candidates of random paths: Σ D·min(dist², 1) − margin ≤ min over the free
    binaries of what they add (enumerated)."""
    k = 10
    R = _factor(k, seed, cond=1e3)
    rng = np.random.default_rng(seed)
    ctr = rng.normal(0.5, 0.8, size=k)
    ell = ellipsoid(R, ctr, levels=4)
    A = R.T @ R
    free = {l: np.array(list(itertools.product((0.0, 1.0), repeat=l))) for l in range(1, k)}
    positive = 0
    for _ in range(5):
        x = (rng.random(k) < 0.5).astype(float)
        t = ctr.copy()
        for l in range(k - 1, 0, -1):
            for v in (0.0, 1.0):
                tv = t[:l] + ell.G[l, :l] * (v - t[l])
                bound = float(ell.D[l, :l] @ np.minimum(np.minimum(tv ** 2, (1 - tv) ** 2), 1.0)) - ell.margin[l]
                y = free[l] - tv
                true_min = float(np.einsum("ni,ij,nj->n", y, A[:l, :l], y).min())
                assert bound <= true_min * (1 + 1e-9) + 1e-12, (l, v, bound, true_min)
                positive += bound > 0.05 * true_min
            t[:l] += ell.G[l, :l] * (x[l] - t[l])
    assert positive >= 10                                     # the bound is not vacuous


def test_an_untrustworthy_recursion_turns_the_ellipsoid_off():
    R = _factor(20, 4)
    assert not ellipsoid(R, np.zeros(20), max_err=0.0).on
    assert not Ellipsoid.off(5).on


@pytest.mark.parametrize("seed", [0, 1])
def test_bnb_with_and_without_the_ellipsoid_proves_the_same_optima(seed):
    p = vit_like_problem(4, 28, seed=seed)
    on = get_solver("bnb", shor=False, probe_nodes=None)(p)
    off = get_solver("bnb", shor=False, probe_nodes=None, ellipsoid=False)(p)
    assert all(s is Status.OPTIMAL for s in on.status) and all(s is Status.OPTIMAL for s in off.status)
    torch.testing.assert_close(on.objective, off.objective, rtol=1e-9, atol=1e-30)
    assert on.iterations.sum() < off.iterations.sum()
