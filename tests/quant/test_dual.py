"""Dual-uniform weight quantizer (ERQ_SPEC §3.3): the column split (K, counts, ties), robustness, the grids."""

from collections import Counter

import numpy as np
import pytest
import torch

from roundlab.errors import RoundlabError
from roundlab.quant.config import WEIGHT_PERCENTILES
from roundlab.quant.dual import DualUniformQuantizer, outlier_columns
from roundlab.quant.grid import levels
from roundlab.quant.uniform import search_uniform


def reference_columns(W: np.ndarray, k: int, tail: float = 0.01) -> list[int]:
    """The release's loop: per row, numpy percentiles of its positive / negative entries, a Counter filled row by
    row in increasing column order, ``most_common(k)`` (ties keep first-encounter order)."""
    counts = Counter()
    for row in W:
        pos, neg = row[row > 0], row[row < 0]
        marked = np.zeros(len(row), dtype=bool)
        if len(pos):
            marked |= row > np.percentile(pos, 100 * (1 - tail))
        if len(neg):
            marked |= row < np.percentile(neg, 100 * tail)
        for j in np.nonzero(marked)[0]:
            counts[int(j)] += 1
    return [j for j, _ in counts.most_common(k)]


@pytest.mark.parametrize("shape", [(192, 64), (256, 64), (40, 300), (576, 192)])
def test_columns_match_the_release_loop(shape):
    torch.manual_seed(shape[0])
    W = torch.distributions.StudentT(2.5).sample(shape).to(torch.float64)
    W[:, ::7] *= 4                                   # some genuinely wide columns
    k = shape[0] // 20
    assert outlier_columns(W, k).tolist() == reference_columns(W.numpy(), k)


def test_ties_keep_first_encounter_order():
    # Each row marks exactly one column (its single largest positive and most negative entries are marked only if
    # the row has > 1 of that sign); build rows so every marked column has count 1 and check the order.
    W = torch.full((4, 6), 0.1, dtype=torch.float64)
    W[:, 0] = -0.1
    W[0, 5] = 9.0       # row 0 marks column 5
    W[1, 2] = 9.0       # row 1 marks column 2
    W[2, 4] = 9.0       # row 2 marks column 4
    W[3, 1] = 9.0       # row 3 marks column 1
    assert outlier_columns(W, 3).tolist() == [5, 2, 4]
    assert reference_columns(W.numpy(), 3) == [5, 2, 4]
    W[3, 5] = 9.0       # column 5 now has count 2: first; the rest by first encounter
    W[3, 1] = 0.1
    assert outlier_columns(W, 4).tolist() == [5, 2, 4]      # only columns with count >= 1


@pytest.mark.parametrize("k_from,expected", [("dout", 192 // 20), ("din", 64 // 20)])
def test_k_from_dout_or_din(k_from, expected):
    W = torch.distributions.StudentT(2.0).sample((192, 64))
    q = DualUniformQuantizer(4, WEIGHT_PERCENTILES, k_from=k_from, name="qkv").calibrate(W)
    assert int(q.outlier_mask.sum()) == expected
    assert q.num_outliers(192, 64) == expected


def test_rows_without_positive_or_negative_entries():
    torch.manual_seed(0)
    W = torch.randn(40, 32)
    W[0] = W[0].abs() + 0.1          # no negatives
    W[1] = -W[1].abs() - 0.1         # no positives
    W[2] = 0.0                       # neither
    W[3, :] = 1.0                    # constant
    q = DualUniformQuantizer(4, WEIGHT_PERCENTILES, name="fc1").calibrate(W)
    Wq = q.quantize(W)
    assert torch.isfinite(Wq).all()
    assert torch.equal(Wq[2], W[2]) and torch.allclose(Wq[3], W[3])


def test_each_part_has_its_own_percentile_mse_grid():
    torch.manual_seed(1)
    W = torch.distributions.StudentT(2.0).sample((100, 48))
    q = DualUniformQuantizer(3, WEIGHT_PERCENTILES, name="qkv").calibrate(W)
    m = q.outlier_mask
    s_o, z_o = search_uniform(W[:, m], 3, WEIGHT_PERCENTILES)
    s_n, z_n = search_uniform(W[:, ~m], 3, WEIGHT_PERCENTILES)
    assert torch.equal(q.scale_out[:, 0], s_o) and torch.equal(q.zero_out[:, 0], z_o)
    assert torch.equal(q.scale_in[:, 0], s_n) and torch.equal(q.zero_in[:, 0], z_n)
    scale, zero = q.element_grid()
    assert scale.shape == W.shape and torch.equal(scale[:, m], s_o[:, None].expand(-1, int(m.sum())))


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_grid_membership_order_and_idempotence(bits):
    torch.manual_seed(bits)
    W = torch.distributions.StudentT(2.0).sample((120, 40))
    q = DualUniformQuantizer(bits, WEIGHT_PERCENTILES, name="fc1").calibrate(W)
    scale, zero = q.element_grid()
    lo, mid, hi = (q.quantize(W, m) for m in ("floor", "round", "ceil"))
    assert (lo <= mid).all() and (mid <= hi).all()
    k = mid / scale + zero
    assert torch.allclose(k, k.round(), atol=1e-4) and k.round().min() >= 0 and k.round().max() <= levels(bits)
    for Wq in (lo, mid, hi):
        assert torch.equal(q.quantize(Wq), Wq)


def test_small_layer_with_k_zero_is_single_grid():
    W = torch.randn(10, 8)
    q = DualUniformQuantizer(4, WEIGHT_PERCENTILES, name="qkv").calibrate(W)   # K = 10 // 20 = 0
    assert not q.outlier_mask.any()
    s, z = search_uniform(W, 4, WEIGHT_PERCENTILES)
    assert torch.equal(q.element_grid()[0], s[:, None].expand(10, 8))


def test_errors():
    q = DualUniformQuantizer(4, WEIGHT_PERCENTILES, name="blocks.0.attn.qkv")
    with pytest.raises(RoundlabError, match="weight quantizer for blocks.0.attn.qkv is not calibrated"):
        q.quantize(torch.randn(4, 4))
    with pytest.raises(RoundlabError, match="saw NaN/Inf"):
        q.calibrate(torch.tensor([[1.0, float("nan")]]))
    q.calibrate(torch.randn(40, 8))
    with pytest.raises(RoundlabError, match="shape"):
        q.quantize(torch.randn(40, 9))
    with pytest.raises(RoundlabError, match="k_from"):
        DualUniformQuantizer(4, WEIGHT_PERCENTILES, k_from="rows")
