"""The ImageNet path tried for real: a generated class-folder tree of JPEGs through each paper model's own timm data
config, a `roundlab quantize` run of a timm name from a local weights file, and one clear error for weights of
another model size."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from roundlab.data import load_dataset
from roundlab.errors import RoundlabError
from roundlab.zoo import load_model
from roundlab.zoo.timm_names import timm_data_config

PAPER_MODELS = ["deit_small_patch16_224", "vit_small_patch16_224", "swin_small_patch4_window7_224"]


def _jpeg_tree(root, classes=("n01440764", "n01443537"), per_class=3):
    """``root/val/<wnid>/<i>.JPEG``: RGB JPEGs of odd sizes (the eval transform resizes and crops them)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        (root / "val" / c).mkdir(parents=True)
        for i in range(per_class):
            h, w = int(rng.integers(180, 320)), int(rng.integers(180, 320))
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "val" / c / f"{i}.JPEG")
    return root


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_paper_models_read_a_jpeg_tree_through_their_data_config(name, tmp_path):
    import timm
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    model = timm.create_model(name, pretrained=False).eval()
    cfg = timm_data_config(model)
    ds = load_dataset("imagenet", "test", root=_jpeg_tree(tmp_path), data_config=cfg)
    assert len(ds) == 6 and ds.classes == ["n01440764", "n01443537"]
    x, y = ds[4]
    assert tuple(x.shape) == tuple(cfg["input_size"]) == (3, 224, 224) and y == 1
    path = sorted((tmp_path / "val" / "n01443537").iterdir())[1]
    ref = create_transform(**resolve_data_config({}, model=model))(Image.open(path).convert("RGB"))
    assert torch.allclose(x, ref, atol=1e-6), "not timm's own eval transform"
    with torch.no_grad():
        assert model(x[None]).shape == (1, 1000)


def test_quantize_a_timm_name_from_local_weights_on_a_jpeg_tree(tmp_path):
    import timm

    torch.manual_seed(0)
    weights = tmp_path / "test_vit.pth"
    torch.save(timm.create_model("test_vit", pretrained=False).state_dict(), weights)
    tree = _jpeg_tree(tmp_path / "imagenet")
    (tree / "train").symlink_to(tree / "val")          # calibration images come from the train split
    run = tmp_path / "run"
    out = subprocess.run([sys.executable, "-m", "roundlab.cli", "quantize", "--model", "test_vit", "--checkpoint",
                          str(weights), "--dataset", "imagenet", "--data-root", str(tree), "--calib-images", "4",
                          "--heldout-images", "2", "--solver", "rr", "--run-dir", str(run), "--quiet"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((run / "result.json").read_text())
    assert result["quantized"]["n"] == 6 and result["config"]["checkpoint"] == str(weights)
    assert result["n_layers"] > 0 and result["wqer"]["objective"] > 0


def test_weights_of_another_model_size_are_one_clear_error(tmp_path):
    import timm

    torch.save({"model": timm.create_model("test_vit2", pretrained=False).state_dict()}, tmp_path / "w.pth")
    with pytest.raises(RoundlabError) as e:
        load_model("test_vit", checkpoint=tmp_path / "w.pth")
    msg = str(e.value)
    assert "\n" not in msg and "does not fit timm model 'test_vit'" in msg and "missing (first: cls_token)" in msg
    torch.save(timm.create_model("test_vit", pretrained=False, embed_dim=48).state_dict(), tmp_path / "small.pth")
    with pytest.raises(RoundlabError, match=r"tensor\(s\) of another shape \(first: cls_token is \(1, 1, 48\) in "
                                            r"the file, \(1, 1, 64\) in the model"):
        load_model("test_vit", checkpoint=tmp_path / "small.pth")
