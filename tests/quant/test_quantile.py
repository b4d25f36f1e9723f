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


# ------------------------------------------------------------------------------------- the release's rank
@pytest.mark.parametrize("n", [2, 7, 197, 6304, 50_000])
def test_release_rank_is_torch_quantile_on_float32(n):
    """rank="release" gives torch.quantile's float32 answer bit for bit (p held in float32, rank in float64)."""
    g = torch.Generator().manual_seed(n)
    x = torch.randn(3, n, generator=g) * 4
    ps = [0.97, 0.999, 0.9999, 0.99999, 1.0, 0.03, 0.001, 1e-4, 1e-5, 0.0]
    stats = OrderStatistics(x, ps, rank="release")
    for p in ps:
        ref = torch.quantile(x, p, dim=-1)
        assert torch.equal(quantile(x, p, rank="release"), ref), p
        assert torch.equal(stats.quantile(p), ref), p
    mask = torch.rand(3, n, generator=g) < 0.5
    mask[:, 0] = True
    for p in (0.99, 0.01):
        ref = torch.stack([torch.quantile(x[i][mask[i]], p) for i in range(3)])
        assert torch.equal(masked_row_quantile(x, mask, p, float("inf"), rank="release"), ref)


def test_release_rank_differs_from_float64_where_p_is_not_a_float32():
    x = torch.randn(1, 6304, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(quantile(x, 0.99999, rank="release"), quantile(x, 0.99999))
    assert torch.equal(quantile(x, 0.5, rank="release"), quantile(x, 0.5))      # 0.5 is exact in float32


def test_release_search_matches_a_torch_quantile_search():
    """The percentile-MSE search with rank="release" picks the scale/zero a torch.quantile-based search picks."""
    from roundlab.quant.grid import fake_quant
    from roundlab.quant.uniform import safe_scale, search_uniform

    v = torch.randn(16, 384, generator=torch.Generator().manual_seed(3)) ** 3
    ps = (0.97, 0.98, 0.99, 0.995, 0.9995, 0.9997, 0.9999, 0.99995, 0.99999, 1.0)
    s, z = search_uniform(v, 4, ps, rank="release")
    full = v.amax(-1) - v.amin(-1)
    best = None
    for p in ps:
        hi, lo = torch.quantile(v, p, dim=-1), torch.quantile(v, 1.0 - p, dim=-1)
        sp = safe_scale(hi, lo, full, 4)
        zp = torch.round(-lo / sp)
        err = (fake_quant(v, sp[:, None], zp[:, None], 4) - v).pow(2).mean(-1)
        if best is None:
            best = [err, sp, zp]
        else:
            better = err < best[0]
            best = [torch.where(better, a, b) for a, b in zip((err, sp, zp), best)]
    assert torch.equal(s, best[1]) and torch.equal(z, best[2])


def test_bad_rank_is_one_clear_error():
    from roundlab.errors import RoundlabError

    with pytest.raises(RoundlabError, match="quantile rank must be one of"):
        OrderStatistics(torch.randn(2, 10), [0.9], rank="float32")




@pytest.mark.parametrize("name", ["vit", "swin"])
def test_quant_config_sets_every_quantizers_rank(name, images):
    """QuantConfig(quantile_rank="release") reaches every quantizer (also the folded ones) and changes the
    calibrated activation grids; the default keeps float64 ranks."""
    from roundlab.quant import QuantConfig
    from roundlab.quant.base import Quantizer

    from .helpers import build, calibrated_copy

    grids = {}
    for rank in ("float64", "release"):
        q = calibrated_copy(build(name), images, QuantConfig(quantile_rank=rank))
        quantizers = {n: m for n, m in q.named_modules() if isinstance(m, Quantizer)}
        assert {m.quantile_rank for m in quantizers.values()} == {rank}
        grids[rank] = {n: m.scale for n, m in quantizers.items() if m.role == "activation" and m.calibrated}
    assert any(not torch.equal(grids["float64"][n], grids["release"][n]) for n in grids["float64"])
