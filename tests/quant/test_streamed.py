"""Streamed activation calibration: the one-pass calibration's grids, found batch by batch, holding tails and sums
rather than every image's activations."""

import copy

import pytest
import torch

from roundlab.errors import RoundlabError
from roundlab.quant import (ACT_PERCENTILES, DualUniformQuantizer, Log2Quantizer, QuantConfig, UniformQuantizer,
                            activation_quantizers, calibration_mode, find_architecture, quantize_model,
                            reparameterize, set_quant_state)
from roundlab.quant.base import Quantizer
from roundlab.quant.quantile import RANKS, OrderStatistics, TailStatistics, extreme_values, tail_sizes
from roundlab.quant.streamed import calibrate_streamed

from .helpers import build


def _heavy(shape, seed=0):
    """Heavy-tailed activations (Student-t-like), so the percentile candidates differ."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) / (torch.rand(shape, generator=g) + 0.05)


def _stream(q: Quantizer, x: torch.Tensor, bs: int):
    """Run ``q``'s streamed search over ``x`` in batches of ``bs`` images; returns the search."""
    search = q.search_stream(x.shape[0])
    for pass_ in range(search.passes):
        for i in range(0, x.shape[0], bs):
            search.observe(pass_, x[i:i + bs], x[i:i + bs].shape[0])
        search.end_pass(pass_)
    search.finish()
    return search


def _grids(model):
    return {n: {b: getattr(m, b) for b in m.PARAMS} for n, m in model.named_modules()
            if isinstance(m, Quantizer) and m.role == "activation" and m.calibrated}


def _assert_same_grids(a, b):
    assert a.keys() == b.keys() and a
    for name in a:
        for buf, t in a[name].items():
            assert torch.equal(t, b[name][buf]), (name, buf)


# -- the searches ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("tokens", [40, 2])                  # long rows (tails by topk) and short ones (sorted)
def test_tail_statistics_are_the_order_statistics(rank, tokens):
    x = _heavy((9, tokens, 6))
    rows = x.reshape(-1, 6).T
    ps = [q for p in (0.9, 0.99, 0.999) for q in (p, 1 - p)]
    ref = OrderStatistics(rows, ps, rank)
    for bs in (9, 4, 1):
        tails = TailStatistics(ps, 9, rank)
        for i in range(0, 9, bs):
            tails.add(x[i:i + bs].reshape(-1, 6).T, x[i:i + bs].shape[0])
        stats = tails.statistics()
        for p in ps + [0.0, 1.0]:
            assert torch.equal(stats.quantile(p), ref.quantile(p)), (bs, p)


def test_extreme_values_are_topks_values():
    g = torch.Generator().manual_seed(3)
    cases = [torch.randn(1, 200_000, generator=g), torch.zeros(1, 50_000), torch.arange(60_000.)[None],
             torch.randn(3, 5_000, generator=g)]
    spiky = torch.zeros(1, 50_000)
    spiky[0, ::16] = -1.0                                    # every sampled entry is extreme: the filter passes few
    for x in cases + [spiky]:
        for k in (1, 7, 300):
            for largest in (True, False):
                ref = torch.topk(x, k, dim=-1, largest=largest, sorted=True).values
                assert torch.equal(extreme_values(x, k, largest), ref)


@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_streamed_uniform_search_is_the_search(granularity, rank):
    """Over any batching: the one-pass grid (random data: no near ties); one batch: bit-identical by construction."""
    x = _heavy((8, 50, 12), seed=1)
    ref = UniformQuantizer(4, ACT_PERCENTILES, granularity)
    ref.quantile_rank = rank
    ref.calibrate(x)
    for bs in (8, 3, 1):
        q = UniformQuantizer(4, ACT_PERCENTILES, granularity)
        q.quantile_rank = rank
        _stream(q, x, bs)
        assert torch.equal(q.scale, ref.scale) and torch.equal(q.zero, ref.zero), bs


@pytest.mark.parametrize("rank", RANKS)
def test_streamed_log2_search_is_the_search(rank):
    x = torch.softmax(_heavy((8, 2, 12, 12), seed=2), dim=-1)
    ref = Log2Quantizer(4, ACT_PERCENTILES)
    ref.quantile_rank = rank
    ref.calibrate(x)
    for bs in (8, 3, 1):
        q = Log2Quantizer(4, ACT_PERCENTILES)
        q.quantile_rank = rank
        _stream(q, x, bs)
        assert torch.equal(q.scale, ref.scale) and q.scale.shape == ref.scale.shape == (), bs


def test_a_streamed_search_holds_tails_and_sums_not_batches():
    """Held bytes do not depend on the batching; during pass 0 they grow with the images only as the percentile
    tails do — (1 − p_min)·n entries per side, a thousandth of the input for p_min = 0.999 — and after it they are
    the candidates and their error sums, whatever the number of images."""
    ps = [q for p in ACT_PERCENTILES for q in (p, 1 - p)]
    after = set()
    for images in (16, 64):
        x = _heavy((images, 100, 16), seed=4)
        n = x.numel()
        k_bottom, k_top = tail_sizes(n, ps)
        assert max(k_bottom, k_top) <= (1 - min(ACT_PERCENTILES)) * n + 2
        for bs in (2, 8, images):
            search = UniformQuantizer(4, ACT_PERCENTILES, "tensor").search_stream(images)
            for i in range(0, images, bs):
                search.observe(0, x[i:i + bs], x[i:i + bs].shape[0])
            assert search.held_bytes == (k_bottom + k_top) * 4 and search.held_bytes * 400 < n * 4
            search.end_pass(0)
            for i in range(0, images, bs):
                search.observe(1, x[i:i + bs], x[i:i + bs].shape[0])
            after.add((bs == images, search.held_bytes))       # one batch keeps float32 means, more float64 sums
    assert len(after) == 2 and all(b <= 64 for _, b in after)


# -- whole models ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["vit", "deit", "swin"])
def test_segments_chain_to_the_models_forward(name, images):
    model = build(name)
    chain = find_architecture(model).segments(model)
    box = []
    handle = chain[0].register_forward_pre_hook(lambda m, args: box.append(args[0]))
    with torch.no_grad():
        logits = model(images)
        handle.remove()
        x = box[0]
        for segment in chain:
            x = segment(x)
    assert torch.equal(x, logits)


def test_a_model_with_its_own_forward_is_calibrated_as_one_segment(images):
    """A subclass that replaces the forward: its segments are unknown, so every pass runs the whole model."""
    from timm.models.vision_transformer import VisionTransformer

    class Doubled(VisionTransformer):
        def forward(self, x):
            return 2 * super().forward(x)

    torch.manual_seed(0)
    model = Doubled(img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=64, depth=2, num_heads=4).eval()
    assert find_architecture(model).segments(model) == []
    _assert_same_grids(_grids(_one_pass(model, images, QuantConfig())),
                       _grids(_streamed(model, images, QuantConfig(), images.shape[0])))


def _one_pass(model, images, cfg):
    q = quantize_model(copy.deepcopy(model), cfg)
    set_quant_state(q, weight=False, act=True)
    with calibration_mode(q), torch.no_grad():
        q(images)
    return q


def _streamed(model, images, cfg, bs):
    q = quantize_model(copy.deepcopy(model), cfg)
    set_quant_state(q, weight=False, act=True)
    return calibrate_streamed(q, images, bs)


CONFIGS = {"release": QuantConfig(), "rank": QuantConfig(quantile_rank="release"),
           "weights": QuantConfig(calibrate_act_with_quantized_weights=True),
           "stem": QuantConfig(quantize_patch_embed_input=True)}


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("name", ["vit", "deit", "swin"])
def test_one_batch_of_every_image_is_the_one_pass_calibration(name, config, images):
    model, cfg = build(name), CONFIGS[config]
    ref = _one_pass(model, images, cfg)
    q = _streamed(model, images, cfg, images.shape[0])
    _assert_same_grids(_grids(ref), _grids(q))
    assert set_quant_state(q, weight=False, act=False) is q       # state restored: the flags switch as before
    reparameterize(ref)
    reparameterize(q)
    for (n, a), (_, b) in zip(ref.state_dict().items(), q.state_dict().items()):
        assert torch.equal(a, b), n


def _batch_invariant(model, images, bs) -> bool:
    """Whether this machine's forward gives the same bits for a batch as for all images (a conv may not)."""
    with torch.no_grad():
        whole = model(images)
        return all(torch.equal(model(images[i:i + bs]), whole[i:i + bs]) for i in range(0, images.shape[0], bs))


@pytest.mark.parametrize("name", ["vit", "deit", "swin"])
def test_batches_give_the_one_pass_grids(name, images):
    model = build(name)
    if not _batch_invariant(quantize_model(copy.deepcopy(model)), images, 3):
        pytest.skip("this machine's forward is not bit-identical in batches of 3; differences would come from it")
    ref = _grids(_one_pass(model, images, QuantConfig()))
    _assert_same_grids(ref, _grids(_streamed(model, images, QuantConfig(), 3)))


# -- bad input ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bs", [0, -2, 1.5, True])
def test_bad_batch_size_is_one_clear_error(bs, images):
    q = quantize_model(build("vit"))
    with pytest.raises(RoundlabError, match="calibration batch size must be a positive integer"):
        calibrate_streamed(q, images, bs)


def test_nan_activations_and_unstreamable_quantizers_are_clear_errors(images):
    q = quantize_model(build("vit"))
    bad = images.clone()
    bad[5, 0, 3, 3] = float("nan")
    with pytest.raises(RoundlabError, match="saw NaN/Inf during calibration"):
        calibrate_streamed(q, bad, 4)
    assert not any(a.calibrating for a in activation_quantizers(q))
    with pytest.raises(RoundlabError, match="cannot be calibrated streamed"):
        DualUniformQuantizer(4, ACT_PERCENTILES, name="blocks.0.attn.qkv").search_stream(8)
    with pytest.raises(RoundlabError, match="row-granular .* cannot be calibrated streamed"):
        UniformQuantizer(4, ACT_PERCENTILES, "row", name="blocks.0.attn.qkv").search_stream(8)
    with pytest.raises(RoundlabError, match="quantize_model first"):
        calibrate_streamed(build("vit"), images, 4)


# -- the zoo --------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fmnist_calib():
    from roundlab.data import calibration_set, load_dataset

    return calibration_set(load_dataset("fashion-mnist", split="train"), n=16, seed=0)


class _Collected:
    """A one-pass "stream" that concatenates its batches and runs the unstreamed search on them: the streamed
    calibrator's own inputs, searched as the one-pass calibration would search them."""

    passes = 1

    def __init__(self, quantizer, total_images):
        self.quantizer, self.parts = quantizer, []

    def observe(self, pass_, x, images):
        self.parts.append(x.clone())

    def end_pass(self, pass_):
        pass

    def finish(self):
        self.quantizer.calibrate(torch.cat(self.parts))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fmnist-vit", "fmnist-deit", "fmnist-swin"])
def test_the_zoo_calibrates_streamed_to_the_one_pass_grids(name, fmnist_calib, monkeypatch):
    """Trained zoo checkpoints. One batch of all 16 images: bit-identical grids and reparameterised model. Batches
    of 4 (the forward is bit-identical in them, checked first): the one-pass grids. Batches of 3 (the last holds
    one image, and a batch-1 conv can round differently): the unstreamed search on the streamed calibrator's own
    inputs — so any difference from the one-pass grids comes from the forward, not from the streamed search."""
    from roundlab.zoo import load_model

    model, _ = load_model(name)
    ref = _one_pass(model, fmnist_calib, QuantConfig())
    one = _streamed(model, fmnist_calib, QuantConfig(), 16)
    grids = _grids(ref)
    _assert_same_grids(grids, _grids(one))
    reparameterize(ref)
    reparameterize(one)
    for (n, a), (_, b) in zip(ref.state_dict().items(), one.state_dict().items()):
        assert torch.equal(a, b), n
    assert _batch_invariant(quantize_model(copy.deepcopy(model)), fmnist_calib, 4)
    _assert_same_grids(grids, _grids(_streamed(model, fmnist_calib, QuantConfig(), 4)))
    streamed = _grids(_streamed(model, fmnist_calib, QuantConfig(), 3))
    for cls in (UniformQuantizer, Log2Quantizer):
        monkeypatch.setattr(cls, "search_stream", lambda self, total: _Collected(self, total))
    _assert_same_grids(_grids(_streamed(model, fmnist_calib, QuantConfig(), 3)), streamed)


# -- what is kept between passes: memory up to a budget, then disk ---------------------------------------------------
class _Recording:
    """A BatchStore factory whose stores record which kinds of key went to disk and were read back from it, which
    keys were present at each put, and each close."""

    def __init__(self):
        from roundlab.quant.batch_store import BatchStore

        self.written, self.read, self.present_at_put, self.closed = set(), set(), [], []
        rec = self

        class Store(BatchStore):
            def put(self, key, x):
                rec.present_at_put.append((key, set(self._kept) | set(self._spilled)))
                super().put(key, x)
                if key in self._spilled:
                    rec.written.add(key[0])

            def get(self, key):
                if key in self._spilled:
                    rec.read.add(key[0])
                return super().get(key)

            def close(self):
                super().close()
                rec.closed.append(True)

        self.Store = Store


@pytest.mark.parametrize("name", ["vit", "swin"])
def test_batches_kept_on_disk_give_the_grids_kept_in_memory(name, images, monkeypatch):
    """A budget of 0 bytes sends every kept batch — block inputs and pass-0 inputs — to disk, and later passes read
    both back: the same grids, bit for bit, and the store is closed afterwards."""
    import roundlab.quant.streamed as streamed

    model = build(name)
    in_memory = _grids(_streamed(model, images, QuantConfig(), 3))
    rec = _Recording()
    monkeypatch.setattr(streamed, "MEMORY_BYTES", 0)
    monkeypatch.setattr(streamed, "BatchStore", rec.Store)
    _assert_same_grids(in_memory, _grids(_streamed(model, images, QuantConfig(), 3)))
    assert rec.written == rec.read == {"input", "pass0"} and rec.closed == [True]


def test_a_targets_kept_inputs_are_released_before_the_next_segment(images, monkeypatch):
    """When a segment's outputs replace its inputs, no target's pass-0 inputs are still held."""
    import roundlab.quant.streamed as streamed

    rec = _Recording()
    monkeypatch.setattr(streamed, "BatchStore", rec.Store)
    _streamed(build("deit"), images, QuantConfig(), 3)
    inputs = [present for key, present in rec.present_at_put if key[0] == "input"]
    assert inputs and all(k[0] != "pass0" for present in inputs for k in present)


def test_one_batch_is_kept_as_it_is_whatever_the_budget(images, monkeypatch):
    """With a single batch (every image at once) nothing goes through the store, even at a 0-byte budget, and the
    result is the one-pass calibration bit for bit."""
    import roundlab.quant.streamed as streamed

    rec = _Recording()
    monkeypatch.setattr(streamed, "MEMORY_BYTES", 0)
    monkeypatch.setattr(streamed, "BatchStore", rec.Store)
    model = build("vit")
    _assert_same_grids(_grids(_one_pass(model, images, QuantConfig())),
                       _grids(_streamed(model, images, QuantConfig(), images.shape[0])))
    assert rec.present_at_put == [] and rec.closed == [True]


def test_a_failed_calibration_closes_its_store(images, monkeypatch):
    import roundlab.quant.streamed as streamed

    rec = _Recording()
    monkeypatch.setattr(streamed, "MEMORY_BYTES", 0)
    monkeypatch.setattr(streamed, "BatchStore", rec.Store)
    bad = images.clone()
    bad[7] = float("nan")                                       # the last batch: after batches were spilled
    with pytest.raises(RoundlabError, match="NaN/Inf"):
        _streamed(build("vit"), bad, QuantConfig(), 3)
    assert rec.written and rec.closed == [True]


@pytest.mark.parametrize("segments", [1, 2])
def test_a_quantizer_reached_only_from_a_later_batch_is_one_clear_error(segments, images, monkeypatch):
    """A forward that reaches no quantizer on the first batch and one on the second (a data-dependent forward):
    the same clear error as the other way round, not a failure deep inside the search nor quantizers silently left
    uncalibrated — in a middle segment and in the last one (a model without segments is one)."""
    import roundlab.quant.streamed as streamed

    model = quantize_model(build("vit"))
    first = images[:3]
    chain = [lambda x: x if torch.equal(x, first) else model(x), lambda x: x][:segments]
    monkeypatch.setattr(streamed, "_segments", lambda m: chain)
    with pytest.raises(RoundlabError, match="reached an uncalibrated quantizer on some batches and none on others"):
        calibrate_streamed(model, images, 3)


def test_images_loaded_batch_by_batch_give_the_grids_of_the_tensor(images):
    """An Images source that makes each batch on demand (and counts the calls) calibrates as the tensor does."""
    from roundlab.data import Images

    calls = []

    class OnDemand(Images):
        def __len__(self):
            return images.shape[0]

        def batch(self, start, stop):
            calls.append((start, stop))
            return images[start:stop].clone()

    model = build("deit")
    ref = _grids(_streamed(model, images, QuantConfig(), 3))
    _assert_same_grids(ref, _grids(_streamed(model, OnDemand(), QuantConfig(), 3)))
    assert set(calls) == {(0, 3), (3, 6), (6, 8)}
