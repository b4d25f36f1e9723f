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
