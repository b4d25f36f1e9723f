"""Images as the pipeline reads them: a tensor in memory, or a dataset's images loaded batch by batch."""

import pytest
import torch

from roundlab.data import (DatasetImages, TensorImageDataset, TensorImages, as_images, calibration_split,
                           calibration_split_images)
from roundlab.errors import RoundlabError


@pytest.fixture(scope="module")
def dataset():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (50, 1, 6, 6), dtype=torch.uint8, generator=g)
    return TensorImageDataset(images, torch.arange(50) % 10, mean=0.3, std=0.2, num_classes=10, name="toy")


def test_batches_cover_every_image_once_in_order(dataset):
    imgs = DatasetImages(dataset, [7, 3, 41, 0, 9, 12, 5])
    assert len(imgs) == 7
    sizes = [b.shape[0] for b in imgs.batches(3)]
    assert sizes == [3, 3, 1]
    assert torch.equal(torch.cat(list(imgs.batches(3))), imgs.all())
    assert torch.equal(imgs.all(), dataset.images_at([7, 3, 41, 0, 9, 12, 5]))


def test_the_split_as_images_is_the_split_as_tensors(dataset):
    calib, heldout = calibration_split(dataset, n=9, n_heldout=4, seed=3)
    lazy_c, lazy_h = calibration_split_images(dataset, n=9, n_heldout=4, seed=3)
    assert torch.equal(lazy_c.all(), calib) and torch.equal(lazy_h.all(), heldout)
    assert len(calibration_split_images(dataset, n=5)[1]) == 0
    # each refers to its own selection, not to the whole dataset (an ImageNet folder's sample list stays freeable)
    assert len(lazy_c.dataset) == 9 and len(lazy_h.dataset) == 4


def test_the_split_of_a_dataset_without_select_reads_the_dataset(dataset):
    class Rows:
        def __len__(self):
            return len(dataset)

        def images_at(self, idx):
            return dataset.images_at(idx)

    lazy_c, _ = calibration_split_images(Rows(), n=9, n_heldout=4, seed=3)
    assert torch.equal(lazy_c.all(), calibration_split(dataset, n=9, n_heldout=4, seed=3)[0])


def test_a_tensor_passes_through_as_views():
    x = torch.randn(5, 1, 4, 4)
    imgs = as_images(x)
    assert isinstance(imgs, TensorImages) and as_images(imgs) is imgs and imgs.all() is x
    assert [b.data_ptr() for b in imgs.batches(2)] == [x[0].data_ptr(), x[2].data_ptr(), x[4].data_ptr()]


@pytest.mark.parametrize("bad", [[1, 2], "images", None])
def test_what_is_not_images_is_one_clear_error(bad):
    with pytest.raises(RoundlabError, match="images must be a tensor"):
        as_images(bad)


def test_indices_outside_the_dataset_and_bad_batch_sizes_are_clear_errors(dataset):
    with pytest.raises(RoundlabError, match=r"image indices must lie in \[0, 50\)"):
        DatasetImages(dataset, [0, 50])
    with pytest.raises(RoundlabError, match="batch size must be a positive integer"):
        next(DatasetImages(dataset, [0, 1]).batches(0))
