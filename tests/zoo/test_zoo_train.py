"""The zoo trainer: batched augmentation, the LR schedule, and CPU smoke runs that write a loadable card."""

import dataclasses
import math

import pytest
import torch

from roundlab.data import DEBIAN_FMNIST
from roundlab.zoo import ZOO, ModelCard, Recipe, load_model
from roundlab.zoo.card import sha256_of
from roundlab.zoo.train import _ordered, add_arguments, augment, lr_at, main, train_one

HAVE_FMNIST = (DEBIAN_FMNIST / "t10k-images-idx3-ubyte.gz").is_file()
needs_fmnist = pytest.mark.skipif(not HAVE_FMNIST, reason="Debian dataset-fashion-mnist not installed")
MEAN, STD = torch.tensor(0.5).view(1, 1, 1, 1), torch.tensor(0.25).view(1, 1, 1, 1)


def test_augment_off_is_normalisation_only():
    x = torch.rand(5, 1, 6, 6)
    r = Recipe(crop_padding=0, hflip=False, random_erasing=0.0)
    torch.testing.assert_close(augment(x, r, MEAN, STD), (x - 0.5) / 0.25)


def test_augment_crop_is_a_shift_with_zero_fill():
    torch.manual_seed(0)
    x = torch.rand(64, 1, 8, 8) + 1.0          # strictly positive, so zero fill is visible
    out = augment(x, Recipe(crop_padding=2, hflip=False, random_erasing=0.0), torch.zeros(1), torch.ones(1))
    assert out.shape == x.shape
    shifts = set()
    for i in range(64):
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.equal(out[i, 0, max(0, dy):8 + min(0, dy), max(0, dx):8 + min(0, dx)],
                                x[i, 0, max(0, -dy):8 + min(0, -dy), max(0, -dx):8 + min(0, -dx)])]
        assert found, i
        dy, dx = found[0]
        shifts.add((dy, dx))
        zeros = (out[i, 0] == 0).sum().item()
        assert zeros == 8 * 8 - (8 - abs(dy)) * (8 - abs(dx))
    assert len(shifts) > 5


def test_augment_flip_and_erasing():
    torch.manual_seed(0)
    x = torch.rand(200, 1, 8, 8)
    flipped = augment(x, Recipe(crop_padding=0, hflip=True, random_erasing=0.0), torch.zeros(1), torch.ones(1))
    same = [torch.equal(flipped[i], x[i]) for i in range(200)]
    flip = [torch.equal(flipped[i], x[i].flip(-1)) for i in range(200)]
    assert all(a or b for a, b in zip(same, flip)) and 60 < sum(flip) < 140
    erased = augment(x, Recipe(crop_padding=0, hflip=False, random_erasing=1.0), torch.zeros(1), torch.ones(1))
    changed = (erased != x).float().mean(dim=(1, 2, 3))
    assert (changed > 0).all() and (changed < 0.6).all()      # every image, 2%..33% of it (+ rounding)


def test_lr_schedule():
    r = Recipe(lr=1e-3, min_lr=1e-5)
    assert lr_at(0, 100, 10, r) == pytest.approx(1e-4)
    assert lr_at(9, 100, 10, r) == pytest.approx(1e-3)
    assert lr_at(10, 100, 10, r) == pytest.approx(1e-3)
    assert lr_at(55, 100, 10, r) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))
    assert lr_at(100, 100, 10, r) == pytest.approx(1e-5)
    assert all(lr_at(s, 100, 10, r) >= lr_at(s + 1, 100, 10, r) for s in range(10, 100))


def test_recipe_validation():
    from roundlab.errors import RoundlabError

    with pytest.raises(RoundlabError):
        Recipe(epochs=0)
    with pytest.raises(RoundlabError):
        Recipe(distill="hard")              # no teacher
    with pytest.raises(RoundlabError):
        Recipe(min_lr=1.0, lr=0.1)


def test_teachers_train_first():
    assert _ordered(["all"]) == ["fmnist-vit", "fmnist-deit", "fmnist-swin"]
    assert _ordered(["fmnist-deit", "fmnist-vit"]) == ["fmnist-vit", "fmnist-deit"]
    assert _ordered(["fmnist-deit"]) == ["fmnist-deit"]      # the committed teacher is used


def test_cli_arguments():
    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p)
    a = p.parse_args(["--model", "fmnist-vit", "fmnist-swin", "--time-budget", "3.5", "--epochs", "7"])
    assert a.model == ["fmnist-vit", "fmnist-swin"] and a.time_budget == 3.5 and a.epochs == 7 and not a.remeasure


@needs_fmnist
@pytest.mark.parametrize("name", ["fmnist-vit", "fmnist-deit"])
def test_smoke_training_writes_a_loadable_card(tmp_path, name):
    recipe = dataclasses.replace(ZOO[name].recipe, batch_size=32, fit_images=256, epochs=1)
    logs = []
    card = train_one(name, recipe, torch.device("cpu"), tmp_path, max_steps=2, eval_images=50, log=logs.append)
    ckpt = tmp_path / f"{name}.safetensors"
    assert ckpt.is_file() and card.training["steps"] == 2 and card.fp_test["n"] == 50
    assert card.checkpoint["sha256"] == sha256_of(ckpt)
    assert ModelCard.from_json(tmp_path / f"{name}.json") == card
    assert card.fp_check["n"] == 1000 and 0 <= card.fp_check["correct_top1"] <= 1000
    model, _ = load_model(name, checkpoint=ckpt)
    assert sum(p.numel() for p in model.parameters()) == card.params
    if name == "fmnist-deit":
        assert card.training["teacher_sha256"] and any("distillation" in line for line in logs)
    assert math.isfinite(card.training["final"]["loss"])


@needs_fmnist
def test_module_main_smoke(tmp_path, capsys):
    rc = main(["--model", "fmnist-vit", "--device", "cpu", "--max-steps", "1", "--batch-size", "16",
               "--eval-images", "20", "--out-dir", str(tmp_path)])
    assert rc == 0 and (tmp_path / "fmnist-vit.json").is_file()
    assert main(["--model", "nope"]) == 2
    assert "unknown zoo model" in capsys.readouterr().err
