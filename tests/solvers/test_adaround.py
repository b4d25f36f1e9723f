"""AdaRound: schedule, objective kinds, and hard rounding that beats nearest on ViT-like rows."""

import pytest
import torch

from roundlab.errors import RoundlabError
from roundlab.solvers import get_solver
from roundlab.solvers.adaround import AdaRoundConfig, beta_at, rectified_sigmoid, relaxation_grad
from roundlab.testing.synthetic import vit_like_problem

from .cases import case


def test_beta_schedule():
    cfg = AdaRoundConfig(iters=100)
    assert beta_at(cfg, 0) is None and beta_at(cfg, 19) is None
    assert beta_at(cfg, 20) == pytest.approx(20.0)
    assert beta_at(cfg, 99) == pytest.approx(2.0, abs=0.3)
    cos = AdaRoundConfig(iters=100, schedule="cosine")
    assert beta_at(cos, 20) == pytest.approx(20.0) and beta_at(cos, 60) == pytest.approx(11.0, abs=0.5)


def test_improves_on_nearest_on_a_vit_like_problem():
    p = vit_like_problem(64, 64, seed=2)
    near = float(p.objective(p.nearest()).sum())
    res = get_solver("adaround")(p)
    assert float(res.objective.sum()) < 0.9 * near
    assert res.fallback.sum() < p.rows // 4


def test_samples_objective_matches_proxy_objective():
    p = case("samples", 0)
    a = get_solver("adaround", objective="proxy", iters=200)(p)
    b = get_solver("adaround", objective="samples", iters=200)(p)
    # the same function, evaluated two ways in float32: the same hard rounding on (almost) every element
    assert (a.delta == b.delta).float().mean() > 0.95


def test_samples_objective_needs_samples():
    with pytest.raises(RoundlabError, match="needs a problem built from samples X"):
        get_solver("adaround", objective="samples")(case("outlier", 0))


@pytest.mark.parametrize("beta", [None, 2.0, 12.0])
def test_hand_written_gradient_equals_autograd(beta):
    p = case("dual", 1)
    cfg = AdaRoundConfig(lam=0.05)
    V = torch.randn(p.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64, requires_grad=True)
    norm = p.objective(p.nearest())
    h = rectified_sigmoid(V, cfg.zeta, cfg.gamma)
    delta = p.lo + h * p.step
    loss = (p.objective(delta) / norm).sum()
    if beta is not None:
        loss = loss + cfg.lam * (1 - (2 * h - 1).abs() ** beta).where(p.free, torch.zeros_like(h)).sum()
    loss.backward()
    ours = relaxation_grad(V.detach(), p.lo, p.step, p.free, norm, lambda dl: 2 * (dl @ p.M), cfg, beta)
    torch.testing.assert_close(ours, V.grad, rtol=1e-10, atol=1e-12)
