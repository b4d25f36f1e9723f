"""The ERQ pipeline on tiny random timm models: on-grid weights, solver independence, release data, resume."""

import pytest
import torch

from roundlab.errors import RoundlabError
from roundlab.pipeline.capture import run_capturing
from roundlab.pipeline.config import ERQConfig
from roundlab.pipeline.run import RunState, erq_quantize
from roundlab.quant import calibration_mode, quant_layers, quantize_model, reparameterize, set_quant_state

from tiny_models import tiny_model

FAMILIES = ["vit", "swin"]


def _config(**kw):
    base = dict(model="tiny", solver="greedy", calib_images=8, heldout_images=4, batch_size=16)
    return ERQConfig.for_method(kw.pop("method", "erq"), **{**base, **kw})


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("data_flow", ["independent", "sequential"])
def test_every_weight_ends_on_its_grid(family, data_flow, images):
    q, records = erq_quantize(tiny_model(family), images[:8], _config(data_flow=data_flow), heldout=images[8:])
    layers = dict(quant_layers(q))
    assert [r["layer"] for r in records] == list(layers)
    for name, layer in layers.items():
        W = layer.weight.detach()
        assert torch.equal(layer.weight_quantizer.quantize(W), W), name
        assert set(records[0]["errors"]) >= {"calib", "rtn_after_aqer", "wqer", "final"}


@pytest.mark.parametrize("family", FAMILIES)
def test_swapping_solvers_changes_nothing_else(family, images):
    runs = {s: erq_quantize(tiny_model(family), images[:8], _config(solver=s))[1] for s in ("nearest", "rr")}
    differs = False
    for a, b in zip(runs["nearest"], runs["rr"]):
        for stage in ("act_only", "calib", "aqer", "rtn_after_aqer"):
            if stage in a["errors"]:
                assert a["errors"][stage] == b["errors"][stage], (a["layer"], stage)
        differs |= a["errors"]["wqer"] != b["errors"]["wqer"]
    assert differs, "the solver should change the rounding of at least one layer"


@pytest.mark.parametrize("family", FAMILIES)
def test_independent_flow_sees_the_fp_networks_layer_inputs(family, images):
    """Release data flow: each layer's captured input reproduces the FP network's output of that layer."""
    fp = tiny_model(family)
    q = quantize_model(tiny_model(family), _config().quant_config())
    with calibration_mode(q), torch.no_grad():
        q(images[:8])
    reparameterize(q)                                   # inputs of qkv/fc1 are in reparameterised coordinates
    set_quant_state(q, weight=False, act=False)
    layers = dict(quant_layers(q))
    X = run_capturing(q, images, layers)
    fp_out = {}
    hooks = [dict(fp.named_modules())[n].register_forward_hook(
        lambda m, a, o, n=n: fp_out.__setitem__(n, o.detach())) for n in layers]
    with torch.no_grad():
        fp(images)
    for h in hooks:
        h.remove()
    for name, layer in layers.items():
        W = layer.weight.detach().reshape(layer.weight.shape[0], -1)
        out = X[name] @ W.T + (0 if layer.bias is None else layer.bias.detach())
        ref = fp_out[name]
        ref = ref.flatten(2).transpose(1, 2) if ref.dim() == 4 and name.startswith("patch_embed") else ref
        torch.testing.assert_close(out, ref.reshape(out.shape), atol=1e-4, rtol=1e-4, msg=name)


def test_resume_after_an_interruption_gives_the_same_weights(tmp_path, images):
    cfg = _config(solver="rr")
    clean, _ = erq_quantize(tiny_model("vit"), images[:8], cfg)

    calls = {"n": 0}

    def crash_midway(*_):
        calls["n"] += 1
        if calls["n"] == 12:
            raise KeyboardInterrupt
    state = RunState(tmp_path / "run", cfg, fresh=False)
    with pytest.raises(KeyboardInterrupt):
        erq_quantize(tiny_model("vit"), images[:8], cfg, state=state, on_problem=crash_midway)
    n_done = len(list(state.layers.glob("*.pt")))
    assert 0 < n_done < len(quant_layers(clean))
    resumed, records = erq_quantize(tiny_model("vit"), images[:8], cfg,
                                    state=RunState(tmp_path / "run", cfg, fresh=False))
    assert len(records) == len(quant_layers(clean))
    for (name, a), (_, b) in zip(quant_layers(clean), quant_layers(resumed)):
        assert torch.equal(a.weight, b.weight), name
        assert (a.bias is None and b.bias is None) or torch.equal(a.bias, b.bias), name
    with pytest.raises(RoundlabError, match="different config"):
        RunState(tmp_path / "run", cfg.replace(lam=5.0), fresh=False)


def test_ablation_switches_and_partition(images):
    base = erq_quantize(tiny_model("vit"), images[:8], _config(method="calib"))[1]
    for r in base:
        assert r["wqer"] is None and "aqer" not in r["errors"]
        assert r["errors"]["final"] == r["errors"]["calib"]
    full = erq_quantize(tiny_model("vit"), images[:8], _config(records="full", partition="error"))[1]
    for r in full:
        assert {"ridge_only", "wqer"} <= set(r["errors"])
        assert ("rounding_only" in r["errors"]) == (r["kind"] != "patch_embed")


@pytest.mark.parametrize("bad, message", [
    (dict(wbits=9), "wbits must be an integer in \\[2, 8\\]"),
    (dict(abits=1), "abits must be an integer"),
    (dict(solver="simulated-annealing"), "unknown solver"),
    (dict(lam=-1.0), "lam must be a number >= 0"),
    (dict(data_flow="sideways"), "unknown data_flow"),
    (dict(calib_images=0), "calib_images must be a positive integer"),
])
def test_bad_config_is_one_clear_error(bad, message):
    with pytest.raises(RoundlabError, match=message):
        _config(**bad)


def test_the_statistics_block_size_is_part_of_the_digest(monkeypatch):
    """A run directory made with other summation blocks (an older roundlab) is not resumed into this one's."""
    import roundlab.pipeline.stats as stats
    from roundlab.pipeline.config import DIGEST_BLOCK_ROWS

    digests = {}
    for rows in (DIGEST_BLOCK_ROWS, 1024, 256):
        monkeypatch.setattr(stats, "BLOCK_ROWS", rows)
        digests[rows] = ERQConfig().digest()
    assert len(set(digests.values())) == 3
    # with the original blocks the digest is the one every earlier version gave (pinned: other fields unchanged)
    assert digests[DIGEST_BLOCK_ROWS] == "569428bc6345"


def test_device_auto_is_cuda_when_present_else_cpu(monkeypatch):
    """--device auto (the default) resolves once, in the config, so the run records the device it used."""
    from roundlab.pipeline.config import ERQConfig

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert ERQConfig().device == "cpu" and ERQConfig(device="auto").device == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    cfg = ERQConfig(device="auto")
    assert cfg.device == "cuda" and cfg.digest() == ERQConfig(device="cpu").digest()   # where it runs: not hashed
