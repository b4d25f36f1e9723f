"""Fashion-MNIST IDX reading (real and synthetic), errors that say where roundlab looked, ImageNet folders, and
reproducible calibration sets."""

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from roundlab.data import (DEBIAN_FMNIST, FMNIST_FILES, calibration_indices, calibration_set, calibration_split,
                           get_spec, load_dataset, read_idx, write_idx)
from roundlab.errors import RoundlabError

HAVE_FMNIST = (DEBIAN_FMNIST / "t10k-images-idx3-ubyte.gz").is_file()
needs_fmnist = pytest.mark.skipif(not HAVE_FMNIST, reason="Debian dataset-fashion-mnist not installed")


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def fake_fmnist(root: Path, n_train=12, n_test=6, gz=True, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    data = {}
    for split, n in (("train", n_train), ("test", n_test)):
        img = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        lbl = rng.integers(0, 10, size=n, dtype=np.uint8)
        img_stem, lbl_stem = FMNIST_FILES[split]
        ext = ".gz" if gz else ""
        write_idx(root / (img_stem + ext), img)
        write_idx(root / (lbl_stem + ext), lbl)
        data[split] = (img, lbl)
    return data


# ------------------------------------------------------------------------------------------------------------- IDX
@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, gz, dtype):
    a = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4) if dtype != np.uint8 \
        else np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("x.idx" + (".gz" if gz else ""))
    write_idx(path, a)
    b = read_idx(path)
    assert b.shape == a.shape and b.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(a, b)


def test_idx_header_is_the_documented_format(tmp_path):
    # magic 0x00000803 (ubyte, 3 dims), then big-endian sizes, then the bytes
    path = tmp_path / "hand.idx"
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2, 7, 8, 9, 10]))
    np.testing.assert_array_equal(read_idx(path), np.array([[[7, 8]], [[9, 10]]], dtype=np.uint8))


@pytest.mark.parametrize("payload, words", [
    (b"", "bad magic"),
    (bytes([1, 2, 8, 1, 0, 0, 0, 1, 5]), "bad magic"),
    (bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 5]), "bad magic"),
    (bytes([0, 0, 8, 3, 0, 0]), "truncated"),
    (bytes([0, 0, 8, 1, 0, 0, 0, 4, 1, 2]), "header"),          # 2 bytes, header says 4
    (bytes([0, 0, 8, 1, 0, 0, 0, 1, 1, 2]), "header"),          # 1 byte too many
])
def test_idx_malformed_names_the_file(tmp_path, payload, words):
    path = tmp_path / "bad.idx"
    path.write_bytes(payload)
    with pytest.raises(RoundlabError) as e:
        read_idx(path)
    assert words in one_line(e) and str(path) in str(e.value)


def test_idx_bad_gzip_and_missing(tmp_path):
    path = tmp_path / "bad.idx.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(RoundlabError) as e:
        read_idx(path)
    assert str(path) in one_line(e)
    with pytest.raises(RoundlabError) as e:
        read_idx(tmp_path / "nope.gz")
    assert "nope.gz" in one_line(e)


# --------------------------------------------------------------------------------------------------- Fashion-MNIST
@pytest.mark.parametrize("gz", [True, False])
def test_fmnist_from_a_named_directory(tmp_path, gz):
    data = fake_fmnist(tmp_path / "fm", gz=gz)
    for split in ("train", "test"):
        ds = load_dataset("fashion-mnist", split, root=tmp_path / "fm")
        img, lbl = data[split]
        assert len(ds) == len(img) and ds.num_classes == 10 and ds.source == str(tmp_path / "fm")
        np.testing.assert_array_equal(ds.images[:, 0].numpy(), img)
        np.testing.assert_array_equal(ds.labels.numpy(), lbl)
        x, y = ds[3]
        spec = get_spec("fashion-mnist")
        expect = (torch.from_numpy(img[3]).float() / 255 - spec.mean[0]) / spec.std[0]
        assert x.shape == (1, 28, 28) and y == int(lbl[3])
        torch.testing.assert_close(x[0], expect)


def test_fmnist_torchvision_layout(tmp_path):
    fake_fmnist(tmp_path / "FashionMNIST" / "raw")
    assert len(load_dataset("fmnist", "test", root=tmp_path)) == 6


def test_fmnist_missing_says_where_it_looked(tmp_path):
    with pytest.raises(RoundlabError) as e:
        load_dataset("fashion-mnist", "test", root=tmp_path / "empty")
    msg = one_line(e)
    assert "t10k-images-idx3-ubyte" in msg and str(tmp_path / "empty") in msg


def test_fmnist_default_places_are_named(monkeypatch, tmp_path):
    import roundlab.data as data

    monkeypatch.setattr(data, "DEBIAN_FMNIST", tmp_path / "no-debian")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(RoundlabError) as e:
        load_dataset("fashion-mnist", "train")
    msg = one_line(e)
    assert str(tmp_path / "no-debian") in msg and str(tmp_path / "cache" / "roundlab" / "fashion-mnist") in msg


def test_fmnist_malformed_files(tmp_path):
    fake_fmnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(5, dtype=np.uint8))     # 6 images, 5 labels
    with pytest.raises(RoundlabError) as e:
        load_dataset("fashion-mnist", "test", root=tmp_path)
    assert "t10k-labels-idx1-ubyte.gz" in one_line(e)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.full(6, 11, dtype=np.uint8))  # label 11
    with pytest.raises(RoundlabError, match="outside 0..9"):
        load_dataset("fashion-mnist", "test", root=tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((6, 28, 28), dtype=np.float32))
    with pytest.raises(RoundlabError, match="uint8"):
        load_dataset("fashion-mnist", "test", root=tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(6, dtype=np.uint8))
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((6, 32, 32), dtype=np.uint8))  # well-formed, 32×32
    with pytest.raises(RoundlabError, match="32×32 images; Fashion-MNIST's are 28×28"):
        load_dataset("fashion-mnist", "test", root=tmp_path)


def test_fmnist_val_needs_the_full_train_split(tmp_path):
    fake_fmnist(tmp_path)
    with pytest.raises(RoundlabError, match="val split"):
        load_dataset("fashion-mnist", "val", root=tmp_path)


def test_fmnist_download_from_a_mirror(tmp_path, monkeypatch):
    data = fake_fmnist(tmp_path / "mirror")
    monkeypatch.setenv("ROUNDLAB_FMNIST_MIRROR", (tmp_path / "mirror").as_uri())
    with pytest.raises(RoundlabError):
        load_dataset("fashion-mnist", "test", root=tmp_path / "dl")          # not without download=True
    ds = load_dataset("fashion-mnist", "test", root=tmp_path / "dl", download=True)
    np.testing.assert_array_equal(ds.labels.numpy(), data["test"][1])
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == sorted(p.name for p in (tmp_path / "mirror").iterdir())


def test_fmnist_download_failure_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("ROUNDLAB_FMNIST_MIRROR", (tmp_path / "nowhere").as_uri())
    with pytest.raises(RoundlabError) as e:
        load_dataset("fashion-mnist", "test", root=tmp_path / "dl", download=True)
    assert "could not download" in one_line(e)


@needs_fmnist
def test_debian_fmnist_splits():
    train, val, test = (load_dataset("fashion-mnist", s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (60000, 5000, 10000)
    assert torch.equal(val.images, train.images[55000:]) and torch.equal(val.labels, train.labels[55000:])
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    x = calibration_set(train, 32, seed=0)
    assert x.shape == (32, 1, 28, 28) and x.dtype == torch.float32
    assert abs(float(train.images_at(range(2000)).mean())) < 0.1      # normalised: roughly zero mean


def test_unknown_dataset_and_split():
    with pytest.raises(RoundlabError, match="unknown dataset"):
        load_dataset("cifar-10", "test")
    with pytest.raises(RoundlabError, match="unknown split"):
        load_dataset("fashion-mnist", "dev")


# ---------------------------------------------------------------------------------------------------- calibration
def test_calibration_is_reproducible(tmp_path):
    fake_fmnist(tmp_path, n_train=50)
    ds = load_dataset("fashion-mnist", "train", root=tmp_path)
    a, b, c = calibration_set(ds, 8, seed=0), calibration_set(ds, 8, seed=0), calibration_set(ds, 8, seed=1)
    assert a.shape == (8, 1, 28, 28)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(calibration_set(ds, 12, seed=0)[:8], a)        # a larger n extends a smaller one
    idx = calibration_indices(50, 8, seed=0)
    assert len(set(idx.tolist())) == 8
    torch.testing.assert_close(a, ds.images_at(idx))
    calib, held = calibration_split(ds, 8, 10, seed=0)
    assert torch.equal(calib, a) and held.shape == (10, 1, 28, 28)
    all_idx = calibration_indices(50, 18, seed=0)
    assert not set(all_idx[:8].tolist()) & set(all_idx[8:].tolist())
    assert calibration_split(ds, 8, 0)[1].shape == (0, 1, 28, 28)


def test_calibration_indices_are_pinned():
    # numpy's PCG64 stream: if this changes, every calibration set in every result changes
    assert calibration_indices(60000, 5, seed=0).tolist() == np.random.default_rng(0).permutation(60000)[:5].tolist()


def test_calibration_errors(tmp_path):
    fake_fmnist(tmp_path)
    ds = load_dataset("fashion-mnist", "test", root=tmp_path)
    with pytest.raises(RoundlabError, match="asked for 7 images"):
        calibration_set(ds, 7)
    with pytest.raises(RoundlabError):
        calibration_set(ds, 0)


def test_subset_is_reproducible_and_ordered(tmp_path):
    fake_fmnist(tmp_path, n_train=40)
    ds = load_dataset("fashion-mnist", "train", root=tmp_path)
    s1, s2 = ds.subset(10, seed=3), ds.subset(10, seed=3)
    assert torch.equal(s1.images, s2.images) and len(s1) == 10
    idx = np.sort(calibration_indices(40, 10, seed=3))
    assert torch.equal(s1.labels, ds.labels[idx])
    batches = list(s1.batches(4))
    assert [len(y) for _, y in batches] == [4, 4, 2]


# --------------------------------------------------------------------------------------------------------- ImageNet
def _image_tree(root: Path, classes=("n01", "n02"), per_class=2):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(root / c / f"{i}.png")


def test_imagenet_class_folders(tmp_path):
    _image_tree(tmp_path / "val")
    cfg = {"input_size": (3, 32, 32), "interpolation": "bilinear", "crop_pct": 1.0, "mean": (0.5,) * 3,
           "std": (0.5,) * 3}
    ds = load_dataset("imagenet", "test", root=tmp_path, data_config=cfg)      # test → ROOT/val
    assert len(ds) == 4 and ds.classes == ["n01", "n02"]
    x, y = ds[2]
    assert x.shape == (3, 32, 32) and y == 1 and -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert calibration_set(ds, 3, seed=0).shape == (3, 3, 32, 32)
    xs, ys = next(iter(ds.batches(4, num_workers=0)))
    assert xs.shape == (4, 3, 32, 32) and ys.tolist() == [0, 0, 1, 1]


def test_imagenet_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("ROUNDLAB_IMAGENET", raising=False)
    with pytest.raises(RoundlabError) as e:
        load_dataset("imagenet", "val")
    assert "ROUNDLAB_IMAGENET" in one_line(e)
    (tmp_path / "train").mkdir()
    with pytest.raises(RoundlabError) as e:
        load_dataset("imagenet", "val", root=tmp_path)
    assert str(tmp_path / "val") in one_line(e)
    (tmp_path / "val").mkdir()
    with pytest.raises(RoundlabError) as e:
        load_dataset("imagenet", "val", root=tmp_path)
    assert "no class folders" in one_line(e)


def test_gz_is_really_gzip(tmp_path):
    write_idx(tmp_path / "a.gz", np.zeros(3, dtype=np.uint8))
    with gzip.open(tmp_path / "a.gz") as f:
        assert f.read()[:4] == bytes([0, 0, 8, 1])
