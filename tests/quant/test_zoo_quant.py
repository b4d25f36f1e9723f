"""Model-level checks on the committed zoo checkpoints: reparameterisation exact in FP, W8A8 close to FP."""

import pytest
import torch

from roundlab.data import calibration_set, load_dataset
from roundlab.quant import QuantConfig, set_quant_state
from roundlab.zoo import list_models, load_model

from .helpers import calibrated_copy, reparam_max_abs_diff, top1

ZOO = list_models(trained_only=True)


@pytest.fixture(scope="module")
def fmnist():
    train = load_dataset("fashion-mnist", split="train")
    test = load_dataset("fashion-mnist", split="test")
    x, y = next(test.batches(len(test)))
    return calibration_set(train, n=32, seed=0), x, y


@pytest.mark.parametrize("name", ZOO)
def test_reparameterisation_is_exact_on_zoo_logits(name, fmnist):
    calib, x, _ = fmnist
    model, _ = load_model(name)
    assert reparam_max_abs_diff(model, calib, x[:500]) <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_w8a8_within_half_a_point_of_fp(name, fmnist):
    calib, x, y = fmnist
    model, _ = load_model(name)
    qmodel = calibrated_copy(model, calib, QuantConfig(wbits=8, abits=8))
    set_quant_state(qmodel, weight=True, act=True)
    with torch.no_grad():
        fp = torch.cat([model(x[i:i + 1000]) for i in range(0, len(x), 1000)])
        q = torch.cat([qmodel(x[i:i + 1000]) for i in range(0, len(x), 1000)])
    assert abs(top1(fp, y) - top1(q, y)) <= 0.5
