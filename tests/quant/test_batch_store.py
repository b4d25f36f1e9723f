"""BatchStore: tensors kept in memory up to a budget, on disk beyond it, read back bit for bit."""

import pytest
import torch

from roundlab.errors import RoundlabError
from roundlab.quant.batch_store import BatchStore


def _t(n, seed=0):
    return torch.randn(n, generator=torch.Generator().manual_seed(seed))


def test_memory_up_to_the_budget_then_disk_bit_for_bit(tmp_path):
    with BatchStore(memory_bytes=100 * 4, directory=tmp_path) as store:
        a, b, c = _t(60, 1), _t(40, 2), _t(30, 3).double()
        for key, x in [("a", a), ("b", b), ("c", c)]:
            store.put(key, x)
        assert store.memory_used == 400 and store.disk_bytes == 240          # a and b fill the budget; c spills
        assert store.get("a") is a and store.get("b") is b
        back = store.get("c")
        assert back is not c and back.dtype == torch.float64 and torch.equal(back, c)
        assert len(list(tmp_path.glob("roundlab-batches-*/*.pt"))) == 1
        store.discard("a")                                                    # frees its share of the budget
        assert store.memory_used == 160 and "a" not in store and len(store) == 2
        store.put("d", _t(60, 4))
        assert store.memory_used == 400 and store.disk_bytes == 240
        store.put("c", _t(10, 5))                                            # replacing removes the old file
        assert len(list(tmp_path.glob("roundlab-batches-*/*.pt"))) == 1
    assert not list(tmp_path.iterdir())                                       # the directory is gone


def test_a_view_is_copied_out_of_its_storage():
    big = _t(1000)
    with BatchStore(memory_bytes=10**6) as store:
        store.put("v", big[:10])
        kept = store.get("v")
        assert torch.equal(kept, big[:10]) and kept.untyped_storage().nbytes() == 40 and store.memory_used == 40


def test_nothing_is_written_while_the_budget_holds(tmp_path):
    with BatchStore(memory_bytes=10**6, directory=tmp_path) as store:
        store.put(0, _t(100))
        assert store.disk_bytes == 0 and not list(tmp_path.iterdir())


@pytest.mark.parametrize("bad", [-1, 1.5, True, "64"])
def test_a_bad_budget_is_one_clear_error(bad):
    with pytest.raises(RoundlabError, match="memory budget must be a non-negative integer"):
        BatchStore(bad)


def test_an_unwritable_directory_is_one_clear_error(tmp_path):
    missing = tmp_path / "no" / "such"
    with BatchStore(memory_bytes=0, directory=missing) as store:
        with pytest.raises(RoundlabError, match="cannot create a directory for calibration batches"):
            store.put(0, _t(4))
