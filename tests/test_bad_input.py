"""Bad input and faults: each gives one clear error or a recorded, reported fallback — never a silent wrong number.

| bad input / fault                               | behaviour                          | test                              |
|-------------------------------------------------|------------------------------------|-----------------------------------|
| NaN/Inf in the weights                          | error naming the parameter         | here                              |
| NaN/Inf in activations (calibration)            | error naming the quantizer         | here; tests/quant/test_state.py   |
| NaN/Inf in a rounding problem (w, M, X, scale)  | error naming the tensor            | tests/test_problem.py             |
| singular Gram matrix with λ = 0                 | error naming the layer, "use lam>0"| here; tests/pipeline/test_aqer.py |
| all-zero or constant weight rows (zero range)   | finishes, exact on the grid        | here                              |
| bits outside 2..8                               | error                              | here                              |
| checkpoint that does not fit the model          | error naming the first mismatch    | tests/zoo/test_zoo.py             |
| solver raises                                   | error naming layer/rows (default), | here; tests/fanout/test_fanned.py |
|                                                 | or fallback recorded (opt-in)      |                                   |
| solver exceeds task_timeout                     | fallback recorded and reported     | tests/fanout/test_fanned.py       |
| worker killed mid-solve                         | retried, then fallback recorded    | tests/fanout/test_executors.py    |
| λ = inf, seed < 0, device 'banana' / 'cuda:7'   | error before any loading           | here                              |
| --quant-opt of a run field (wbits=8 under W4)   | error: set it with its own flag    | here                              |
| crafted or damaged FP-logit cache file          | never unpickled; recomputed        | here                              |
"""

import sys
from pathlib import Path

import pytest
import torch

from roundlab.errors import RoundlabError
from roundlab.pipeline.config import ERQConfig
from roundlab.pipeline.run import RunState, erq_quantize
from roundlab.quant import quant_layers

sys.path.insert(0, str(Path(__file__).parent / "pipeline"))
from tiny_models import tiny_model  # noqa: E402

IMAGES = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def _cfg(**kw) -> ERQConfig:
    return ERQConfig.for_method("erq", **{"model": "tiny-vit", "calib_images": 4, "heldout_images": 0, **kw})


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_or_inf_weights_name_the_parameter(value):
    model = tiny_model("vit")
    with torch.no_grad():
        model.blocks[0].mlp.fc1.weight[3, 5] = value
    with pytest.raises(RoundlabError, match=r"^model parameter blocks\.0\.mlp\.fc1\.weight holds 1 NaN/Inf value\(s\) "
                                            r"\(first at \[3, 5\]\); the checkpoint is damaged$"):
        erq_quantize(model, IMAGES, _cfg())


def test_inf_activations_name_the_quantizer():
    images = IMAGES.clone()
    images[1, 0, 3, 3] = float("inf")
    with pytest.raises(RoundlabError, match="saw NaN/Inf during calibration"):
        erq_quantize(tiny_model("vit"), images, _cfg())


def test_singular_gram_with_lam_zero_names_the_layer():
    """One image: 17 tokens for 49 input features, so X̄ᵀX̄ is singular and λ = 0 cannot regularise it."""
    with pytest.raises(RoundlabError, match=r"^layer patch_embed\.proj: .*not positive definite \(lam=0\).*use lam > 0"):
        erq_quantize(tiny_model("vit"), IMAGES[:1], _cfg(lam=0.0, calib_images=1))


def test_zero_and_constant_weight_rows_finish_exactly_on_the_grid():
    model = tiny_model("vit")
    with torch.no_grad():
        model.blocks[0].attn.qkv.weight[4].zero_()
        model.blocks[0].mlp.fc1.weight[7] = 0.3
        model.head.weight[2].zero_()
    qmodel, records = erq_quantize(model, IMAGES, _cfg())
    assert all(torch.isfinite(torch.tensor(list(r["errors"].values()))).all() for r in records)
    layers = dict(quant_layers(qmodel))
    for name in ("blocks.0.attn.qkv", "blocks.0.mlp.fc1", "head"):
        layer = layers[name]
        W = layer.weight.detach()
        scale, _ = layer.weight_quantizer.element_grid()
        assert bool(torch.isfinite(torch.as_tensor(scale)).all() and (torch.as_tensor(scale) > 0).all())
        assert torch.equal(layer.weight_quantizer.quantize(W), W)                        # exactly on the grid
    assert torch.equal(layers["blocks.0.attn.qkv"].weight[4], torch.zeros_like(layers["blocks.0.attn.qkv"].weight[4]))
    assert bool(torch.isfinite(qmodel(IMAGES)).all())


@pytest.mark.parametrize("field,value", [("wbits", 1), ("wbits", 9), ("abits", 0), ("abits", 16)])
def test_bits_outside_2_to_8_are_one_clear_error(field, value):
    with pytest.raises(RoundlabError, match=rf"{field} must be an integer in \[2, 8\]"):
        _cfg(**{field: value})


def test_a_raising_solver_stops_the_run_with_one_line_and_a_rerun_resumes(tmp_path):
    bad = _cfg(solver="faulty", solver_options={"fail": "raise", "fail_fraction": 0.3}, chunk_rows=8)
    state = RunState(tmp_path, bad, fresh=False)
    with pytest.raises(RoundlabError, match=r"^solver faulty raised on blocks\.\S+ \(call \d\), rows \d+-\d+: "
                                            r"RuntimeError: injected fault .*traceback in .*errors\.log"):
        erq_quantize(tiny_model("vit"), IMAGES, bad, state=state)
    assert (tmp_path / "errors.log").exists()


def test_fallback_policy_finishes_and_reports_every_fallback(tmp_path):
    cfg = _cfg(solver="faulty", solver_options={"fail": "raise", "fail_fraction": 0.3}, chunk_rows=8,
               on_solver_error="fallback")
    fanout: dict = {}
    _, records = erq_quantize(tiny_model("vit"), IMAGES, cfg, state=RunState(tmp_path, cfg, fresh=False),
                              fanout=fanout)
    per_layer = [f for r in records for f in r["fallbacks"]]
    assert per_layer and fanout["fallback_rows"] == sum(f["rows"][1] - f["rows"][0] for f in per_layer)
    assert {f["reason"] for f in per_layer} == {"error: RuntimeError: injected fault (faulty solver, fail=raise)"}
    from roundlab.pipeline.records import format_report

    assert f"FALLBACKS: {fanout['fallback_rows']} rounding rows" in format_report(records)
    # the rows' status says fallback too, except rows with nothing to choose (lo == hi), which are optimal anyway
    assert 0 < sum(r["wqer"]["status"].get("fallback", 0) for r in records) <= fanout["fallback_rows"]


@pytest.mark.parametrize("kw, match", [
    (dict(lam=float("inf")), r"^lam must be a number >= 0 and finite, got inf$"),
    (dict(seed=-1), r"^seed must be an integer in \[0, 2\*\*63\), got -1$"),
    (dict(device="banana"), r"^unknown device 'banana'; use cpu, cuda or cuda:N$"),
    (dict(quant_options={"wbits": 8}), r"^quant option\(s\) \['wbits'\] are fields of the run itself; set them with "
                                       r"--wbits, not --quant-opt$"),
])
def test_bad_run_fields_are_one_error_before_anything_loads(kw, match):
    with pytest.raises(RoundlabError, match=match):
        _cfg(**kw)


def test_a_cuda_device_this_machine_lacks_is_one_error():
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(RoundlabError, match=r"^device 'cuda:7': "):
        if n > 7:
            pytest.skip("this machine has a cuda:7")
        _cfg(device="cuda:7")


class _Payload:
    """Unpickling this runs code (writes the marker file): what a crafted cache file would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


def test_the_fp_logit_cache_is_never_unpickled_and_a_bad_one_is_recomputed(tmp_path, capsys):
    from roundlab.pipeline.fp_cache import fp_reference as _fp_reference

    model = tiny_model("vit")
    test = (IMAGES, torch.tensor([0, 1, 2, 3]))
    cfg = _cfg()
    metrics, logits = _fp_reference(model, test, cfg, tmp_path)
    (cache,) = list(tmp_path.glob("*.pt"))
    marker = tmp_path / "marker"
    torch.save({"metrics": _Payload(marker), "logits": logits}, cache)          # crafted
    again, again_logits = _fp_reference(model, test, cfg, tmp_path)
    assert not marker.exists(), "the cache file was unpickled with code execution"
    assert again == metrics and torch.equal(again_logits, logits)
    assert "ignoring the FP-logit cache" in capsys.readouterr().err
    cache.write_bytes(b"not a torch file")                                     # damaged
    assert _fp_reference(model, test, cfg, tmp_path)[0] == metrics
    assert torch.load(cache, weights_only=True)["metrics"] == metrics            # replaced by a good one
