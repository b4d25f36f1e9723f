"""Fixtures of the quant tests; the tiny models and model-level checks live in ``helpers.py``."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(1))
