"""log√2 quantizer (ERQ_SPEC §3.2): exact levels, saturation, underflow, the scale search."""

import math

import pytest
import torch

from roundlab.errors import RoundlabError
from roundlab.quant.config import ACT_PERCENTILES
from roundlab.quant.log2 import Log2Quantizer, log2_fake_quant, log2_levels


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_levels_are_s_times_powers_of_root_two(bits):
    s = 0.37
    lv = log2_levels(s, bits)
    assert len(lv) == 2**bits
    for k, v in enumerate(lv.tolist()):
        assert v == pytest.approx(s * math.sqrt(2) ** (-k), rel=1e-12)
        # the paper's form: s · 2^{−⌈k/2⌉} · (1 + (√2 − 1)·[k odd])
        assert v == pytest.approx(s * 2 ** (-math.ceil(k / 2)) * (1 + (math.sqrt(2) - 1) * (k % 2)), rel=1e-12)


@pytest.mark.parametrize("bits", [2, 3, 4, 6])
def test_outputs_are_zero_or_a_level(bits):
    x = torch.softmax(torch.randn(4, 3, 20, 20, dtype=torch.float64) * 3, dim=-1)
    s = torch.tensor(0.8, dtype=torch.float64)
    out = log2_fake_quant(x, s, bits)
    lv = log2_levels(s, bits)
    dist = (out.reshape(-1, 1) - lv.reshape(1, -1)).abs().min(dim=1).values
    assert ((out.reshape(-1) == 0) | (dist <= 1e-12 * s)).all()
    assert (out > 0).any()


def test_rounding_saturation_and_underflow():
    bits, s = 3, torch.tensor(1.0, dtype=torch.float64)
    lv = log2_levels(s, bits)
    assert torch.allclose(log2_fake_quant(lv, s, bits), lv, rtol=1e-14, atol=0)     # levels map to themselves
    assert log2_fake_quant(torch.tensor([5.0], dtype=torch.float64), s, bits).item() == 1.0   # saturates to s
    tiny = torch.tensor([2.0 ** (-(2**bits) / 2 - 0.1), 0.0], dtype=torch.float64)
    assert log2_fake_quant(tiny, s, bits).tolist() == [0.0, 0.0]                     # e >= 2^b → exact zero
    # nearest in the log domain: 2^{-0.74} has −2·log2 = 1.48 → e = 1
    assert log2_fake_quant(torch.tensor([2.0 ** -0.74], dtype=torch.float64), s, bits).item() == pytest.approx(
        2 ** -0.5)


def test_search_picks_the_mse_best_quantile():
    torch.manual_seed(0)
    x = torch.softmax(torch.randn(2, 4, 50, 50, dtype=torch.float64) * 4, dim=-1)
    q = Log2Quantizer(4, ACT_PERCENTILES, "blocks.0.attn.matmul2[attn]").calibrate(x)
    errs = []
    for p in ACT_PERCENTILES:
        s = torch.quantile(x.reshape(-1), p)
        errs.append((((log2_fake_quant(x, s, 4) - x) ** 2).mean().item(), s.item()))
    best = min(errs, key=lambda e: e[0])       # min keeps the first of equal errors, as strict < does
    assert q.scale.item() == pytest.approx(best[1], rel=1e-12)


def test_errors():
    q = Log2Quantizer(4, ACT_PERCENTILES, "blocks.1.attn.matmul2[attn]")
    with pytest.raises(RoundlabError, match="not calibrated"):
        q(torch.rand(3))
    with pytest.raises(RoundlabError, match=r"matmul2\[attn\] saw NaN/Inf during calibration"):
        q.calibrate(torch.tensor([0.5, float("nan")]))
    with pytest.raises(RoundlabError, match="bits"):
        Log2Quantizer(9, ACT_PERCENTILES)
