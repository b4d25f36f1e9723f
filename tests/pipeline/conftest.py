import pytest
import torch


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(12, 1, 28, 28, generator=g)
