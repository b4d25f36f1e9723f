import pytest

from roundlab.testing.synthetic import vit_like_problem


@pytest.fixture(scope="session")
def ray_executor():
    """One local Ray instance (2 CPUs) for the whole session; skipped when Ray is not installed."""
    pytest.importorskip("ray")
    from roundlab.fanout import get_executor

    ex = get_executor("ray", workers=2)
    yield ex
    ex.close()


@pytest.fixture(scope="module")
def problem():
    """A 64-row ViT-like problem small enough for brute force (d = 10)."""
    return vit_like_problem(64, 10, seed=3)
