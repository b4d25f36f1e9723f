"""QuantConfig: release defaults, validation (one clear RoundlabError per bad value), serialisation."""

import dataclasses

import pytest

from roundlab.errors import RoundlabError
from roundlab.quant import ACT_PERCENTILES, WEIGHT_PERCENTILES, QuantConfig


def test_defaults_are_the_release():
    cfg = QuantConfig()
    assert cfg.weight_percentiles == WEIGHT_PERCENTILES and len(WEIGHT_PERCENTILES) == 10
    assert cfg.act_percentiles == ACT_PERCENTILES == (0.999, 0.9999, 0.99999)
    assert cfg.reparam and not cfg.round_zero and not cfg.reparam_patch_merging
    assert cfg.dual_uniform and cfg.dual_k_from == "dout" and cfg.dual_k_divisor == 20
    assert cfg.quantize_head and cfg.quantize_attention and not cfg.quantize_patch_embed_input
    assert not cfg.calibrate_act_with_quantized_weights


def test_frozen_and_serialisable():
    cfg = QuantConfig(wbits=3, act_percentiles=[0.999, 1.0])
    assert cfg.act_percentiles == (0.999, 1.0)                 # lists become tuples
    assert QuantConfig(**dataclasses.asdict(cfg)) == cfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.wbits = 4


@pytest.mark.parametrize("kwargs,match", [
    (dict(wbits=1), "wbits"), (dict(wbits=9), "wbits"), (dict(abits=4.0), "abits"), (dict(abits=True), "abits"),
    (dict(wbits="4"), "wbits"), (dict(patch_embed_input_bits=16), "patch_embed_input_bits"),
    (dict(weight_percentiles=()), "weight_percentiles"), (dict(act_percentiles=(0.3,)), "act_percentiles"),
    (dict(softmax_percentiles=(1.5,)), "softmax_percentiles"), (dict(act_percentiles=0.99), "act_percentiles"),
    (dict(dual_k_from="rows"), "dual_k_from"), (dict(dual_k_divisor=0), "dual_k_divisor"),
    (dict(dual_tail=0.5), "dual_tail"), (dict(reparam="yes"), "reparam"),
    (dict(channelwise_post_ln=False), "channelwise_post_ln"),
    (dict(reparam=False, reparam_patch_merging=True), "reparam_patch_merging"),
])
def test_bad_values_raise_one_line(kwargs, match):
    with pytest.raises(RoundlabError, match=match) as err:
        QuantConfig(**kwargs)
    assert "\n" not in str(err.value)


def test_consistent_non_default_combinations_are_accepted():
    QuantConfig(reparam=False, channelwise_post_ln=False, weight_percentiles=(1.0,), act_percentiles=(1.0,))
    QuantConfig(wbits=2, abits=8, round_zero=True, reparam_patch_merging=True, dual_k_from="din")
