"""Exact quantiles: agreement with numpy/torch, the top-k path, per-row masked quantiles, > 2**24 elements."""

import numpy as np
import pytest
import torch

from roundlab.quant.quantile import OrderStatistics, masked_row_quantile, quantile

PS = [0.0, 1e-5, 0.001, 0.03, 0.5, 0.97, 0.99999, 1.0]


@pytest.mark.parametrize("n", [1, 2, 7, 100, 5000])
def test_quantile_matches_numpy(n):
    x = torch.randn(3, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    for p in PS:
        ref = np.quantile(x.numpy(), p, axis=-1)
        assert np.allclose(quantile(x, p).numpy(), ref, rtol=0, atol=1e-12)


def test_topk_path_equals_sort_path():
    x = torch.randn(4, 20000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ps = [0.999, 0.9999, 0.99999, 0.001, 0.0001, 0.00001]
    stats = OrderStatistics(x, ps)
    assert stats.sorted is None                     # long rows, tail quantiles: no full sort
    for p in ps + [0.0, 1.0]:
        assert torch.equal(stats.quantile(p), quantile(x, p))


def test_more_than_2_pow_24_elements():
    n = 2**24 + 3
    x = torch.randn(1, n, generator=torch.Generator().manual_seed(0))
    stats = OrderStatistics(x, [0.9999, 0.0001])
    xs = np.sort(x.numpy().ravel().astype(np.float64))
    for p in (0.9999, 0.0001):
        pos = p * (n - 1)
        i = int(np.floor(pos))
        ref = xs[i] + (pos - i) * (xs[i + 1] - xs[i])
        assert abs(stats.quantile(p).item() - ref) < 1e-6


def test_masked_row_quantile_per_row_counts_and_empty_rows():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 40, dtype=torch.float64, generator=g)
    x[2] = -x[2].abs()      # no positive entries
    x[4] = 0.0              # no entries of either sign
    mask = x > 0
    q = masked_row_quantile(x, mask, 0.99, empty=float("inf"))
    for i in range(6):
        vals = x[i][mask[i]].numpy()
        ref = np.percentile(vals, 99) if len(vals) else np.inf
        assert q[i].item() == pytest.approx(ref, abs=1e-12)
