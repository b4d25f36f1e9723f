"""``ERQConfig.calib_batch_size``: the run with streamed activation calibration, its digest and its errors."""

import pytest
import torch

from roundlab.errors import RoundlabError
from roundlab.pipeline.config import ERQConfig
from roundlab.pipeline.run import erq_quantize

from tiny_models import tiny_model


def _config(**kw):
    return ERQConfig.for_method("erq", model="tiny", solver="rr", calib_images=8, heldout_images=4, **kw)


@pytest.mark.parametrize("family", ["vit", "swin"])
def test_one_calibration_batch_of_all_images_is_the_released_run(family, images):
    """Streamed with one batch of all 8 images: bit-identical weights and identical records (Aqer, Wqer, Eq. 4)."""
    runs = {bs: erq_quantize(tiny_model(family), images[:8], _config(calib_batch_size=bs), heldout=images[8:])
            for bs in (None, 8)}
    for (name, a), (_, b) in zip(runs[None][0].state_dict().items(), runs[8][0].state_dict().items()):
        assert torch.equal(a, b), name
    for ra, rb in zip(runs[None][1], runs[8][1]):
        assert ra["errors"] == rb["errors"] and ra["errors_heldout"] == rb["errors_heldout"], ra["layer"]


def test_the_default_keeps_every_digest_and_a_set_batch_size_is_its_own_run():
    base = _config()
    assert base.calib_batch_size is None
    assert base.digest() == _config(calib_batch_size=None).digest()
    assert "calib_batch_size" in base.to_dict()
    assert len({base.digest(), _config(calib_batch_size=4).digest(), _config(calib_batch_size=8).digest()}) == 3


@pytest.mark.parametrize("bad", [0, -3, True, 2.5, "8"])
def test_bad_calibration_batch_size_is_one_clear_error(bad):
    with pytest.raises(RoundlabError, match="calib_batch_size must be a positive integer or None"):
        _config(calib_batch_size=bad)


@pytest.mark.parametrize("data_flow", ["independent", "sequential"])
def test_images_loaded_batch_by_batch_give_the_run_of_tensors(data_flow, images, monkeypatch):
    """Calibration and held-out images read from a dataset whenever a pass asks (with every kept batch sent to disk):
    bit-identical weights and identical records to the images held as tensors."""
    import roundlab.quant.streamed as streamed
    from roundlab.data import DatasetImages

    class Rows:                         # a dataset: images_at(indices) → the images at those rows
        def __len__(self):
            return images.shape[0]

        def images_at(self, idx):       # never more than one batch at a time (no pass makes a tensor of all)
            assert len(idx) <= max(cfg.batch_size, cfg.calib_batch_size), len(idx)
            return images[torch.as_tensor(idx, dtype=torch.long)]

    cfg = _config(calib_batch_size=3, data_flow=data_flow, batch_size=5)
    ref = erq_quantize(tiny_model("vit"), images[:8], cfg, heldout=images[8:])
    monkeypatch.setattr(streamed, "MEMORY_BYTES", 0)
    lazy = erq_quantize(tiny_model("vit"), DatasetImages(Rows(), range(8)), cfg,
                        heldout=DatasetImages(Rows(), range(8, 12)))
    for (name, a), (_, b) in zip(ref[0].state_dict().items(), lazy[0].state_dict().items()):
        assert torch.equal(a, b), name
    for ra, rb in zip(ref[1], lazy[1]):
        assert ra["errors"] == rb["errors"] and ra["errors_heldout"] == rb["errors_heldout"], ra["layer"]


def test_a_streamed_run_loads_its_images_batch_by_batch_and_matches_one_pass(tmp_path, monkeypatch):
    """``run_erq`` with ``calib_batch_size`` reads the calibration and held-out images from the dataset batch by batch
    (no tensor of them); one batch of every image gives the one-pass run's predictions, bit for bit."""
    import roundlab.pipeline.run as run
    from roundlab.data import DatasetImages

    seen = []
    real = run.erq_quantize

    def spy(model, calib, config, heldout=None, **kw):
        seen.append((type(calib), type(heldout)))
        return real(model, calib, config, heldout=heldout, **kw)

    monkeypatch.setattr(run, "erq_quantize", spy)
    cfg = ERQConfig.for_method("erq", model="fmnist-vit", solver="rr", calib_images=6, heldout_images=3,
                               eval_images=40)
    one_pass = run.run_erq(cfg, run_dir=tmp_path / "one", progress=False)
    streamed = run.run_erq(cfg.replace(calib_batch_size=6), run_dir=tmp_path / "streamed", progress=False)
    assert seen == [(torch.Tensor, torch.Tensor), (DatasetImages, DatasetImages)]
    assert streamed["predictions_sha256"] == one_pass["predictions_sha256"]
    assert streamed["wqer"]["objective"] == one_pass["wqer"]["objective"]
