"""GPTQ restricted to each element's floor/ceil: equals plain GPTQ where the two coincide; honest fallback."""

import torch

from roundlab.problem import RoundingProblem, Status
from roundlab.solvers import get_solver
from roundlab.testing.synthetic import vit_like_problem

from .cases import case


def plain_gptq(W, M, scale, zero, bits, damp=0.01):
    """IST-DASLab/gptq's inner loop (one block), written for a per-row grid."""
    W = W.clone().double()
    d = W.shape[1]
    H = M + damp * torch.diagonal(M).mean() * torch.eye(d, dtype=M.dtype)
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    Q = torch.zeros_like(W)
    for i in range(d):
        w = W[:, i]
        q = (torch.clamp(torch.round(w / scale[:, 0]) + zero[:, 0], 0, 2 ** bits - 1) - zero[:, 0]) * scale[:, 0]
        Q[:, i] = q
        err = (w - q) / U[i, i]
        W[:, i:] -= err[:, None] * U[i, i:][None, :]
    return Q


def test_equals_plain_gptq_when_feedback_stays_within_one_step():
    p0 = vit_like_problem(8, 16, seed=1, outliers=0, clip=1.0, dtype=torch.float64)
    s, z = p0.scale[:, :1], p0.zero[:, :1]
    p = RoundingProblem.from_grid(p0.w, s, z, 4, M=p0.M)
    Q = plain_gptq(p.w, p.M, s, z, 4)
    res = get_solver("gptq", fallback=False)(p)
    ours = p.quantized(res.delta).double()
    moved_far = ((Q - p.w) / s).abs() > 1 + 1e-9     # plain GPTQ left the floor/ceil pair here
    same_rows = ~moved_far.any(1)
    assert same_rows.sum() >= 4
    torch.testing.assert_close(ours[same_rows], Q[same_rows], rtol=0, atol=1e-12)


def test_fallback_is_recorded():
    p = case("outlier", 0)
    raw = get_solver("gptq", fallback=False)(p)
    safe = get_solver("gptq")(p)
    near = p.objective(p.nearest()).cpu()
    worse = raw.objective > near
    assert torch.equal(safe.fallback, worse)
    for i, s in enumerate(safe.status):
        assert s is (Status.FALLBACK if worse[i] else Status.HEURISTIC)
    assert (safe.objective <= near).all()


def test_act_order_runs_and_stays_on_grid():
    p = case("dual", 1)
    res = get_solver("gptq", order="diag")(p)
    assert p.on_candidates(res.delta).all()
