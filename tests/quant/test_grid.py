"""The shared uniform grid (roundlab.quant.grid): membership, floor ≤ round ≤ ceil, idempotence, bad inputs."""

import pytest
import torch

from roundlab.errors import RoundlabError
from roundlab.quant.grid import check_bits, fake_quant, levels


def _grid(bits, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 50, generator=g, dtype=torch.float64) * 3
    scale = torch.rand(64, 1, generator=g, dtype=torch.float64) * 0.2 + 0.01
    zero = torch.randint(0, levels(bits) + 1, (64, 1), generator=g).to(torch.float64)
    return x, scale, zero


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("mode", ["round", "floor", "ceil"])
def test_outputs_are_grid_points(bits, mode):
    x, s, z = _grid(bits)
    q = fake_quant(x, s, z, bits, mode)
    k = q / s + z
    assert torch.allclose(k, k.round(), atol=1e-9)
    assert k.round().min() >= 0 and k.round().max() <= levels(bits)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_floor_le_round_le_ceil_within_one_step(bits):
    x, s, z = _grid(bits, seed=1)
    lo, mid, hi = (fake_quant(x, s, z, bits, m) for m in ("floor", "round", "ceil"))
    assert (lo <= mid).all() and (mid <= hi).all()
    assert ((hi - lo) <= s * (1 + 1e-9)).all()
    inside = (x / s).floor() + z >= 0
    inside &= (x / s).ceil() + z <= levels(bits)
    assert (lo[inside] <= x[inside]).all()
    assert (hi[inside] >= x[inside]).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_requantizing_on_grid_values_reproduces_them(bits, dtype):
    x, s, z = (t.to(dtype) for t in _grid(bits, seed=2))
    for mode in ("round", "floor", "ceil"):
        q = fake_quant(x, s, z, bits, mode)
        assert torch.equal(fake_quant(q, s, z, bits, "round"), q)


def test_round_is_half_to_even():
    s, z = torch.tensor(1.0), torch.tensor(0.0)
    x = torch.tensor([0.5, 1.5, 2.5])
    assert fake_quant(x, s, z, 4).tolist() == [0.0, 2.0, 2.0]


@pytest.mark.parametrize("bad", [1, 9, 0, -3, 4.0, True, "4", None])
def test_bad_bits_raise(bad):
    with pytest.raises(RoundlabError, match="bits"):
        check_bits(bad)


def test_bad_mode_raises():
    with pytest.raises(RoundlabError, match="rounding mode"):
        fake_quant(torch.zeros(2), torch.tensor(1.0), torch.tensor(0.0), 4, "stochastic")
