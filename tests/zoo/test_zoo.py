"""The committed zoo: cards match the checkpoints and a fresh CPU evaluation; loading of zoo and real timm names."""

import json
from pathlib import Path

import pytest
import torch

from roundlab.data import DEBIAN_FMNIST, load_dataset
from roundlab.errors import RoundlabError
from roundlab.evaluate import evaluate
from roundlab.zoo import ZOO, ModelCard, checkpoint_path, list_models, load_card, load_model
from roundlab.zoo.card import sha256_of

HAVE_FMNIST = (DEBIAN_FMNIST / "t10k-images-idx3-ubyte.gz").is_file()
needs_fmnist = pytest.mark.skipif(not HAVE_FMNIST, reason="Debian dataset-fashion-mnist not installed")
ZOO_NAMES = ["fmnist-vit", "fmnist-deit", "fmnist-swin"]
TIMM_CLASS = {"fmnist-vit": "VisionTransformer", "fmnist-deit": "VisionTransformerDistilled",
              "fmnist-swin": "SwinTransformer"}


def test_zoo_lists_three_trained_models():
    assert list_models() == ZOO_NAMES
    assert list_models(trained_only=True) == ZOO_NAMES
    total = sum(checkpoint_path(n).stat().st_size for n in ZOO_NAMES)
    assert total < 6e6     # a few MB in all


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_card_describes_its_checkpoint(name):
    card = load_card(name)
    entry = ZOO[name]
    assert card.name == name and card.timm_class == entry.timm_class == TIMM_CLASS[name]
    assert card.architecture == json.loads(json.dumps(entry.arch))
    assert card.checkpoint["sha256"] == sha256_of(checkpoint_path(name))
    assert card.checkpoint["bytes"] == checkpoint_path(name).stat().st_size
    model, _ = load_model(name)
    assert card.params == sum(p.numel() for p in model.parameters())
    assert card.fp_test["device"] == "cpu" and card.fp_test["n"] == 10000
    assert card.fp_test["top1"] == card.fp_test["correct_top1"] / 10000
    assert card.training["wall_time_s"] > 0 and card.recipe["seed"] == card.seed == 0
    for key in ("roundlab", "torch", "timm"):
        assert card.versions[key]
    if entry.recipe.distill:
        assert card.training["teacher_sha256"] == sha256_of(checkpoint_path(entry.recipe.teacher))


def test_vit_reaches_the_target():
    assert load_card("fmnist-vit").fp_test["top1"] >= 0.88


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_load_model_returns_eval_model_and_data_config(name):
    model, cfg = load_model(name, device="cpu")
    assert type(model).__name__ == TIMM_CLASS[name] and not model.training
    assert cfg["dataset"] == "fashion-mnist" and cfg["num_classes"] == 10 and tuple(cfg["input_size"]) == (1, 28, 28)
    assert len(cfg["mean"]) == len(cfg["std"]) == 1
    with torch.no_grad():
        out = model(torch.zeros(2, 1, 28, 28))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert all(p.dtype == torch.float32 for p in model.parameters())


@needs_fmnist
@pytest.mark.parametrize("name", ZOO_NAMES)
def test_card_check_subset_matches_a_fresh_cpu_evaluation(name):
    """Fast: the card's 1,000-image check subset, exactly (same count of correct images)."""
    card = load_card(name)
    model, cfg = load_model(name)
    test = load_dataset("fashion-mnist", "test", data_config=cfg)
    m = evaluate(model, test.subset(card.fp_check["n"], seed=0), batch_size=500)
    assert card.fp_check["subset"] == f"test.subset({card.fp_check['n']}, seed=0)"
    assert (m["correct_top1"], m["correct_top5"]) == (card.fp_check["correct_top1"], card.fp_check["correct_top5"])


@pytest.mark.slow
@needs_fmnist
@pytest.mark.parametrize("name", ZOO_NAMES)
def test_card_accuracy_matches_a_fresh_cpu_evaluation(name):
    """The whole 10,000-image test set: top-1 within 0.05 points of the card (measured here it matched exactly)."""
    card = load_card(name)
    model, cfg = load_model(name)
    m = evaluate(model, load_dataset("fashion-mnist", "test", data_config=cfg), batch_size=500)
    assert m["n"] == card.fp_test["n"] == 10000
    assert abs(100 * m["top1"] - 100 * card.fp_test["top1"]) <= 0.05
    assert abs(100 * m["top5"] - 100 * card.fp_test["top5"]) <= 0.05


# ---------------------------------------------------------------------------------------------------------- errors
def test_unknown_model_is_one_line():
    with pytest.raises(RoundlabError) as e:
        load_model("no-such-model-xyz")
    assert "\n" not in str(e.value) and "fmnist-vit" in str(e.value)


def test_zoo_checkpoint_errors(tmp_path):
    with pytest.raises(RoundlabError, match="checkpoint file not found|no checkpoint"):
        load_model("fmnist-vit", checkpoint=tmp_path / "missing.safetensors")
    with pytest.raises(RoundlabError, match="does not fit"):
        load_model("fmnist-vit", checkpoint=checkpoint_path("fmnist-deit"))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    with pytest.raises(RoundlabError, match="cannot read checkpoint"):
        load_model("fmnist-vit", checkpoint=bad)


def test_card_errors(tmp_path):
    with pytest.raises(RoundlabError, match="not found"):
        ModelCard.from_json(tmp_path / "x.json")
    (tmp_path / "x.json").write_text("[1, 2]")
    with pytest.raises(RoundlabError, match="not a JSON object"):
        ModelCard.from_json(tmp_path / "x.json")
    (tmp_path / "x.json").write_text('{"name": "x"}')
    with pytest.raises(RoundlabError, match="lacks"):
        ModelCard.from_json(tmp_path / "x.json")
    card = load_card("fmnist-swin")
    card.save(tmp_path / "y.json")
    assert ModelCard.from_json(tmp_path / "y.json") == card


# ----------------------------------------------------------------------------------------------- real timm names
@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """No Hugging Face or torch hub weights anywhere, and offline."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "torch"))
    yield tmp_path
    torch.hub.set_dir(old)


@pytest.mark.parametrize("name", ["deit_small_patch16_224", "vit_small_patch16_224", "swin_small_patch4_window7_224"])
def test_real_timm_name_without_weights_is_one_line(empty_caches, name):
    with pytest.raises(RoundlabError) as e:
        load_model(name)
    msg = str(e.value)
    assert "\n" not in msg and name in msg and str(empty_caches / "hf") in msg and "--checkpoint" in msg


def test_real_timm_name_from_the_hf_cache(empty_caches):
    import timm
    from safetensors.torch import save_file

    ref = timm.create_model("test_vit", pretrained=False)
    snap = empty_caches / "hf" / "models--timm--test_vit.r160_in1k" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("abc123")
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(snap / "model.safetensors"))
    model, cfg = load_model("test_vit")
    assert not model.training and cfg["dataset"] == "imagenet" and cfg["num_classes"] == 1000
    assert tuple(cfg["input_size"]) == (3, 160, 160) and cfg["interpolation"] == "bicubic"
    for k, v in ref.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_real_timm_name_from_a_checkpoint_file(tmp_path):
    import timm

    ref = timm.create_model("test_vit", pretrained=False)
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    model, _ = load_model("test_vit", checkpoint=tmp_path / "w.pth")
    assert torch.equal(model.state_dict()["head.weight"], ref.state_dict()["head.weight"])
    with pytest.raises(RoundlabError, match="checkpoint file not found"):
        load_model("test_vit", checkpoint=tmp_path / "missing.pth")
    (tmp_path / "bad.pth").write_bytes(b"nope")
    with pytest.raises(RoundlabError) as e:
        load_model("test_vit", checkpoint=tmp_path / "bad.pth")
    assert "\n" not in str(e.value) and "bad.pth" in str(e.value)
