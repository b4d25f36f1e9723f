"""Wqer against closed forms: on-grid output, RTN when both parts are off, the Eq. 17 ridge step."""

import pytest
import torch

from roundlab.pipeline.wqer import wqer
from roundlab.quant.grid import fake_quant
from roundlab.solvers import get_solver


def _layer(seed=0, N=300, Din=10, Dout=6, bits=3, mix=0.6):
    g = torch.Generator().manual_seed(seed)
    mix = torch.eye(Din, dtype=torch.float64) + mix * torch.randn(Din, Din, generator=g, dtype=torch.float64)
    X = torch.randn(N, Din, generator=g, dtype=torch.float64) @ mix      # correlated channels, like real activations
    X = X * torch.linspace(0.3, 2.0, Din, dtype=torch.float64)
    X[:, 0] += 1.5                                          # a column with a large mean, like post-GELU inputs
    W = torch.randn(Dout, Din, generator=g, dtype=torch.float64) * 0.5
    b = torch.randn(Dout, generator=g, dtype=torch.float64)
    lo, hi = W.min(1, keepdim=True).values, W.max(1, keepdim=True).values
    scale = (hi - lo) / (2**bits - 1)
    zero = torch.round(-lo / scale)
    return X, W, b, scale, zero, bits


def _on_grid(W, scale, zero, bits):
    return torch.equal(fake_quant(W, scale, zero, bits), W)


@pytest.mark.parametrize("partition", ["natural", "error"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("solver", ["nearest", "greedy"])
def test_every_weight_leaves_on_its_grid(partition, bias, solver):
    X, W, b, scale, zero, bits = _layer(seed=1)
    res = wqer(W, b if bias else None, X, scale, zero, bits, get_solver(solver), lam=1.0, partition=partition)
    assert _on_grid(res.W, scale, zero, bits)
    assert (res.b is None) == (not bias)
    # the halving loop: ⌈log2(columns)⌉ steps, each quantizing half of what is left
    n_cols = W.shape[1] + bias
    assert [s.n_cols for s in res.steps][0] == n_cols // 2
    assert sum(s.n_cols for s in res.steps) == W.shape[1] - (0 if bias else 1)


@pytest.mark.parametrize("partition", ["natural", "error"])
def test_no_rounding_no_ridge_is_rtn(partition):
    X, W, b, scale, zero, bits = _layer(seed=2)
    res = wqer(W, b, X, scale, zero, bits, get_solver("greedy"), lam=1.0, rounding=False, ridge=False,
               partition=partition)
    assert torch.equal(res.W, fake_quant(W, scale, zero, bits))
    assert torch.equal(res.b, b)


def test_first_ridge_step_is_paper_eq17():
    """Two weight columns, no bias: step 1 quantizes column 0 and corrects column 1 by Eq. 17."""
    X, W, _, scale, zero, bits = _layer(seed=3, Din=2)
    lam = 0.7
    res = wqer(W, None, X, scale, zero, bits, get_solver("nearest"), lam=lam)
    d0 = fake_quant(W[:, :1], scale, zero, bits) - W[:, :1]             # nearest rounding of column 0
    G = X.T @ X
    w1 = W[:, 1:] - d0 * G[1, 0] / (G[1, 1] + lam)                      # −δ E[x0 x1](E[x1²] + λ)⁻¹, in sums
    torch.testing.assert_close(res.W[:, :1], W[:, :1] + d0, rtol=0, atol=1e-12)
    torch.testing.assert_close(res.W[:, 1:], fake_quant(w1, scale, zero, bits), rtol=0, atol=1e-12)


def test_ridge_lowers_the_output_error():
    # weakly correlated inputs: the corrections stay inside the fixed grid's range (with strongly correlated ones the
    # ridge can push weights past the clamp and lose, which the pipeline's Eq. 4 records expose)
    X, W, b, scale, zero, bits = _layer(seed=4, Din=16, mix=0.0)
    Y = X @ W.T + b
    err = {}
    for ridge in (False, True):
        res = wqer(W, b, X, scale, zero, bits, get_solver("nearest"), lam=1e-3, ridge=ridge)
        err[ridge] = float(((Y - (X @ res.W.T + res.b)) ** 2).mean())
    assert err[True] < 0.95 * err[False]


def test_a_better_solver_lowers_each_segment_objective():
    X, W, b, scale, zero, bits = _layer(seed=5, Din=12)
    res = wqer(W, b, X, scale, zero, bits, get_solver("brute"), lam=1.0)
    for step in res.steps:
        assert step.objective <= step.objective_nearest * (1 + 1e-12)
    assert sum(s.objective for s in res.steps) < sum(s.objective_nearest for s in res.steps)


def test_inputs_are_not_modified():
    """Regression: a float64, bias-free W used to be updated in place (``.to`` returns the same tensor)."""
    X, W, _, scale, zero, bits = _layer(seed=6)
    W_before = W.clone()
    wqer(W, None, X, scale, zero, bits, get_solver("greedy"), lam=1.0)
    assert torch.equal(W, W_before)


@pytest.mark.parametrize("partition", ["natural", "error"])
def test_samples_objective_reaches_the_same_rounding_as_the_proxy(partition):
    """A solver asking for the samples objective gets X̃_S; exact MIQP on the samples == brute force on M."""
    X, W, b, scale, zero, bits = _layer(seed=7, Din=8, Dout=3)
    seen = []
    proxy = wqer(W, b, X, scale, zero, bits, get_solver("brute"), lam=1.0, partition=partition)
    solver = get_solver("miqp", backend="highs", objective="samples", time_limit=20.0)
    samples = wqer(W, b, X, scale, zero, bits, solver, lam=1.0, partition=partition,
                   on_problem=lambda step, problem, res, S: seen.append(problem.X is not None))
    assert seen and all(seen)
    assert all(st.summary["status"] == {"optimal": W.shape[0]} for st in samples.steps)
    torch.testing.assert_close(samples.W, proxy.W, rtol=0, atol=1e-12)
