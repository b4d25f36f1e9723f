"""Streamed layer statistics: the same Aqer, Wqer Gram and Eq. 4 errors as the N rows themselves, in any batching,
and memory that does not grow with the number of images."""

import pytest
import torch

from roundlab.pipeline.aqer import aqer, aqer_update, design, stack_theta
from roundlab.pipeline.config import ERQConfig
from roundlab.pipeline.layer_data import LayerData
from roundlab.pipeline.records import output_error
from roundlab.pipeline.run import calibrate, erq_quantize
from roundlab.pipeline.stats import LayerStats, RowBlocks

from tiny_models import tiny_model


def _data(bias: bool, N=300, Din=12, Dout=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, Din, generator=g, dtype=torch.float64) * torch.linspace(0.1, 5, Din, dtype=torch.float64)
    Xbar = X + 0.05 * torch.randn(N, Din, generator=g, dtype=torch.float64)        # "quantized" input
    W0 = torch.randn(Dout, Din, generator=g, dtype=torch.float64)
    b0 = torch.randn(Dout, generator=g, dtype=torch.float64) if bias else None
    return X, Xbar, W0, b0


def _stats(X, Xbar, W0, b0, batch, keep=False, block=4096):
    """Rows fed in batches of ``batch`` through fixed blocks of ``block`` rows, as the pipeline feeds them."""
    st = LayerStats(keep_samples=keep)
    blocks = RowBlocks(lambda x, xb: st.add_rows(W0, b0, x, xb), block_rows=block)
    for i in range(0, X.shape[0], batch):
        blocks.add(X[i:i + batch], Xbar[i:i + batch])
    blocks.flush()
    return st


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("block", [4096, 64])
def test_errors_from_statistics_equal_errors_from_rows(bias, block):
    X, Xbar, W0, b0 = _data(bias)
    st = _stats(X, Xbar, W0, b0, batch=7, block=block)
    g = torch.Generator().manual_seed(1)
    for scale in (0.0, 1e-3, 1e-1, 1.0):                    # Θ₀ itself, then ever larger changes
        W = W0 + scale * torch.randn(W0.shape, generator=g, dtype=torch.float64)
        b = None if b0 is None else b0 + scale * torch.randn(b0.shape, generator=g, dtype=torch.float64)
        direct = output_error(W0, b0, X, W, b, Xbar)
        assert abs(st.error(stack_theta(W, b) - stack_theta(W0, b0)) - direct) <= 1e-10 * direct, scale


@pytest.mark.parametrize("bias", [True, False])
def test_aqer_from_batched_statistics_is_aqer_on_the_rows(bias):
    X, Xbar, W0, b0 = _data(bias, seed=3)
    Y = X @ W0.T + (0 if b0 is None else b0)
    W_ref, b_ref = aqer(W0, b0, Xbar, Y, lam=0.5)
    theta0 = stack_theta(W0, b0)
    W, b = aqer_update(_stats(X, Xbar, W0, b0, batch=11, block=50), theta0, 0.5, bias)
    torch.testing.assert_close(W, W_ref, rtol=1e-10, atol=1e-12)
    if bias:
        torch.testing.assert_close(b, b_ref, rtol=1e-10, atol=1e-12)
    one = _stats(X, Xbar, W0, b0, batch=11)                   # one block: the very same arithmetic as on the rows
    assert torch.equal(aqer_update(one, theta0, 0.5, bias)[0], W_ref)


def test_sums_do_not_depend_on_the_batching():
    """Rows regrouped into fixed blocks: any batch size gives bit-identical statistics."""
    X, Xbar, W0, b0 = _data(True, N=1000)
    ref = _stats(X, Xbar, W0, b0, batch=1000, block=128)
    for batch in (1, 7, 128, 333):
        st = _stats(X, Xbar, W0, b0, batch=batch, block=128)
        assert torch.equal(st.G, ref.G) and torch.equal(st.R, ref.R) and st.e0 == ref.e0 and st.N == 1000


def test_a_shared_input_is_one_stream_with_the_same_sums():
    """``X_in is X`` (the independent flow) holds one copy and gives the sums of two equal streams."""
    X, _, W0, b0 = _data(True, N=1000)
    two = _stats(X, X.clone(), W0, b0, batch=333, block=128)
    one = _stats(X, X, W0, b0, batch=333, block=128)
    assert torch.equal(one.G, two.G) and torch.equal(one.R, two.R) and one.e0 == two.e0 == 0.0


@pytest.mark.parametrize("shared", [True, False])
def test_between_batches_less_than_a_block_is_held_not_the_batch(shared):
    """After each batch, the rows held are fewer than a block and keep no batch's storage alive."""
    X, Xbar, W0, b0 = _data(True, N=1000)
    st = LayerStats()
    blocks = RowBlocks(lambda x, xb: st.add_rows(W0, b0, x, xb), block_rows=64)
    row_bytes = X.shape[1] * X.element_size() * (1 if shared else 2)
    for i in range(0, 1000, 333):                                  # 333-row batches: 5 blocks each, 13 rows left
        x = X[i:i + 333].clone()
        blocks.add(x, x if shared else Xbar[i:i + 333].clone())
        assert blocks.held_bytes == blocks._rows * row_bytes < 64 * row_bytes
    blocks.flush()
    assert blocks.held_bytes == 0 and st.N == 1000


def test_samples_are_kept_only_when_asked():
    X, Xbar, W0, b0 = _data(True)
    assert _stats(X, Xbar, W0, b0, batch=50).samples is None
    kept = _stats(X, Xbar, W0, b0, batch=50, keep=True)
    assert torch.equal(kept.samples, design(Xbar, True)) and kept.N == 300


def _held_bytes(data: LayerData) -> int:
    return sum(t.numel() * t.element_size() for parts in data._ready.values() for st in parts.values()
               for t in (st.G, st.R))


def test_memory_does_not_grow_with_the_number_of_images(images):
    """What the pipeline holds per layer is Gram-sized: 4 and 12 calibration images hold the same bytes."""
    cfg = ERQConfig.for_method("erq", model="tiny", solver="rr", calib_images=4, heldout_images=0)
    held = []
    for n in (4, 12):
        qmodel, layers = calibrate(tiny_model("vit"), images[:4], cfg)
        data = LayerData(qmodel, layers, images[:n], None, "independent", batch_size=4)
        assert {data.take(name)[0].N for name in list(layers)[1:2]} == {n * 17}       # 16 patches + class token
        held.append(_held_bytes(data))
    assert held[0] == held[1] > 0


@pytest.mark.parametrize("data_flow", ["independent", "sequential"])
def test_batch_size_changes_nothing(images, data_flow):
    """Batches of 3 images or all at once: bit-identical weights and records (rows are summed in fixed blocks)."""
    runs = {}
    for bs in (3, 64):
        cfg = ERQConfig.for_method("erq", model="tiny", solver="rr", calib_images=8, heldout_images=4,
                                   batch_size=bs, data_flow=data_flow)
        runs[bs] = erq_quantize(tiny_model("vit"), images[:8], cfg, heldout=images[8:])
    for (name, a), (_, b) in zip(runs[3][0].state_dict().items(), runs[64][0].state_dict().items()):
        assert torch.equal(a, b), name
    for ra, rb in zip(runs[3][1], runs[64][1]):
        assert ra["errors"] == rb["errors"] and ra["errors_heldout"] == rb["errors_heldout"], ra["layer"]


def test_the_act_only_error_of_an_unquantized_input_is_exactly_zero():
    X, _, W0, b0 = _data(True)
    st = _stats(X, X, W0, b0, batch=64)
    assert st.error(torch.zeros(5, 13, dtype=torch.float64)) == 0.0
