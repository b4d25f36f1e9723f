"""Uniform quantizer: the percentile-MSE search against a direct loop, granularities, guards, errors."""

import pytest
import torch

from roundlab.errors import RoundlabError
from roundlab.quant.config import ACT_PERCENTILES, WEIGHT_PERCENTILES
from roundlab.quant.grid import fake_quant, levels
from roundlab.quant.uniform import UniformQuantizer, search_uniform


def brute_force(v: torch.Tensor, bits: int, percentiles):
    """ERQ_SPEC §3.1 literally: one slice, candidates in order, torch.quantile, strict < (earliest wins)."""
    best, best_sz = 1e10, None
    for p in percentiles:
        hi, lo = torch.quantile(v, p), torch.quantile(v, 1 - p)
        s = (hi - lo) / levels(bits)
        z = torch.round(-lo / s)
        err = ((fake_quant(v, s, z, bits) - v) ** 2).mean()
        if err < best:
            best, best_sz = err, (s, z)
    return best_sz


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("percentiles", [WEIGHT_PERCENTILES, ACT_PERCENTILES])
def test_search_picks_the_direct_loops_argmin(bits, percentiles):
    torch.manual_seed(bits)
    g = torch.Generator().manual_seed(bits)
    rows = torch.distributions.StudentT(3.0).sample((24, 300)).to(torch.float64)  # heavy tails: candidates differ
    rows += torch.randn(24, 1, generator=g, dtype=torch.float64)                   # and asymmetric ranges
    s, z = search_uniform(rows, bits, percentiles)
    for i in range(rows.shape[0]):
        s_ref, z_ref = brute_force(rows[i], bits, percentiles)
        assert s[i].item() == pytest.approx(s_ref.item(), rel=1e-9)
        assert z[i].item() == z_ref.item()


def test_tied_candidates_keep_a_valid_grid():
    # Two values only: every candidate gives the same range, so all errors tie.
    rows = torch.tensor([[0.0] * 50 + [1.0] * 50])
    s, z = search_uniform(rows, 4, (1.0, 0.99))
    assert s.item() == pytest.approx(1 / 15) and z.item() == 0


@pytest.mark.parametrize("value", [3.5, -2.25, 0.0, 1e-12])
def test_constant_slice_is_guarded_and_exact(value):
    q = UniformQuantizer(4, WEIGHT_PERCENTILES, "row", "w", role="weight")
    W = torch.full((3, 16), value)
    q.calibrate(W)
    assert torch.isfinite(q.scale).all() and (q.scale > 0).all()
    assert torch.allclose(q.quantize(W), W, rtol=1e-6, atol=0)


def test_mostly_zero_activation_falls_back_to_data_range():
    x = torch.zeros(100000)
    x[:5] = torch.tensor([0.01, 0.02, 0.03, -0.01, 0.05])
    q = UniformQuantizer(8, ACT_PERCENTILES, "tensor", "a").calibrate(x)
    assert q.scale.item() == pytest.approx(0.06 / 255, rel=1e-5)


def test_channel_granularity_uses_the_last_dim_of_nhwc_input():
    x = torch.randn(2, 5, 5, 6) * torch.arange(1, 7)          # NHWC: channel c has scale c + 1
    q = UniformQuantizer(4, ACT_PERCENTILES, "channel", "a").calibrate(x)
    assert q.scale.shape == (6,)
    s_ref, z_ref = search_uniform(x.reshape(-1, 6).T, 4, ACT_PERCENTILES)
    assert torch.equal(q.scale, s_ref) and torch.equal(q.zero, z_ref)
    assert torch.equal(q(x), fake_quant(x, s_ref, z_ref, 4))
    with pytest.raises(RoundlabError, match="channels"):
        q(torch.randn(2, 6, 5, 5))


def test_row_granularity_on_conv_weight_is_per_output_channel():
    W = torch.randn(8, 3, 4, 4)
    q = UniformQuantizer(4, WEIGHT_PERCENTILES, "row", "pe", role="weight").calibrate(W)
    s_ref, z_ref = search_uniform(W.reshape(8, -1), 4, WEIGHT_PERCENTILES)
    assert q.scale.shape == (8, 1)
    assert torch.equal(q.scale[:, 0], s_ref) and torch.equal(q.zero[:, 0], z_ref)
    Wq = q.quantize(W)
    assert Wq.shape == W.shape
    assert torch.equal(Wq.reshape(8, -1), q.quantize(W.reshape(8, -1)))
    scale, zero = q.element_grid()
    assert torch.equal(Wq.reshape(8, -1), fake_quant(W.reshape(8, -1), scale, zero, 4))


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_weight_quantizer_grid_order_and_idempotence(bits):
    W = torch.randn(16, 40)
    q = UniformQuantizer(bits, WEIGHT_PERCENTILES, "row", "w", role="weight").calibrate(W)
    lo, mid, hi = (q.quantize(W, m) for m in ("floor", "round", "ceil"))
    assert (lo <= mid).all() and (mid <= hi).all()
    k = mid / q.scale + q.zero
    assert torch.allclose(k, k.round(), atol=1e-4) and k.round().min() >= 0 and k.round().max() <= levels(bits)
    for Wq in (lo, mid, hi):
        assert torch.equal(q.quantize(Wq), Wq)


def test_search_runs_in_float64_for_float64_and_float32_for_half():
    assert search_uniform(torch.randn(2, 10, dtype=torch.float64), 4, ACT_PERCENTILES)[0].dtype == torch.float64
    x = torch.randn(2, 10).half()
    q = UniformQuantizer(4, ACT_PERCENTILES, "tensor", "a").calibrate(x)
    assert q.scale.dtype == torch.float32 and q(x).dtype == torch.float16


def test_calibration_sees_only_the_first_tensor_in_calibration_mode():
    q = UniformQuantizer(4, ACT_PERCENTILES, "tensor", "a")
    q.start_calibration()
    q(torch.randn(1000))
    s = q.scale.clone()
    q(100 * torch.randn(1000))
    assert torch.equal(q.scale, s)
    q.stop_calibration()
    assert not q.calibrating


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_or_inf_during_calibration_raises_one_line(bad):
    x = torch.randn(10)
    x[3] = bad
    q = UniformQuantizer(4, ACT_PERCENTILES, "channel", "blocks.3.attn.qkv")
    with pytest.raises(RoundlabError) as err:
        q.calibrate(x[None])
    assert str(err.value) == "activation quantizer for blocks.3.attn.qkv saw NaN/Inf during calibration"


def test_uncalibrated_use_raises():
    with pytest.raises(RoundlabError, match="activation quantizer for blocks.0.mlp.fc2 is not calibrated"):
        UniformQuantizer(4, ACT_PERCENTILES, "tensor", "blocks.0.mlp.fc2")(torch.randn(3))
    with pytest.raises(RoundlabError, match="weight quantizer for head is not calibrated"):
        UniformQuantizer(4, WEIGHT_PERCENTILES, "row", "head", role="weight").element_grid()


@pytest.mark.parametrize("bad", [1, 9, 2.5, "8"])
def test_bad_bits_raise(bad):
    with pytest.raises(RoundlabError, match="bits"):
        UniformQuantizer(bad, ACT_PERCENTILES)


def test_bad_granularity_raises():
    with pytest.raises(RoundlabError, match="granularity"):
        UniformQuantizer(4, ACT_PERCENTILES, "column")
