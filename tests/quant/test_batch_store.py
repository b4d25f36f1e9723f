"""BatchStore: tensors kept on the device and in host memory up to budgets, in an unlinked spill file beyond them,
read back bit for bit."""

import errno
import os
import random

import pytest
import torch

from roundlab.errors import RoundlabError
from roundlab.quant.batch_store import BatchStore


def _t(n, seed=0):
    return torch.randn(n, generator=torch.Generator().manual_seed(seed))


def _open_names(directory):
    """Names under ``directory`` (the spill file must have none)."""
    return list(directory.iterdir())


def test_memory_up_to_the_budget_then_disk_bit_for_bit(tmp_path):
    with BatchStore(memory_bytes=100 * 4, directory=tmp_path) as store:
        a, b, c = _t(60, 1), _t(40, 2), _t(30, 3).double()
        for key, x in [("a", a), ("b", b), ("c", c)]:
            store.put(key, x)
        assert store.memory_used == 400 and store.disk_bytes == 240          # a and b fill the budget; c spills
        assert store.get("a") is a and store.get("b") is b
        back = store.get("c")
        assert back is not c and back.dtype == torch.float64 and torch.equal(back, c)
        assert store.disk_bytes_read == 240
        assert not _open_names(tmp_path)                                      # the spill file has no name
        store.discard("a")                                                    # frees its share of the budget
        assert store.memory_used == 160 and "a" not in store and len(store) == 2
        store.put("d", _t(60, 4))
        assert store.memory_used == 400 and store.disk_bytes == 240
        store.put("c", _t(10, 5).double())                                   # replacing: the file shrinks to it
        assert torch.equal(store.get("c"), _t(10, 5).double()) and store._file.end == 80
    assert not _open_names(tmp_path)


def test_every_dtype_and_shape_comes_back_bit_for_bit_while_space_is_reused():
    """Random puts, replacements and discards of tensors of many dtypes and shapes (empty ones too) with nothing kept
    in memory: every get equals what was put, and the file's live and free extents tile it exactly."""
    rng = random.Random(0)
    dtypes = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.bool, torch.int8, torch.int64,
              torch.complex64]
    with BatchStore(memory_bytes=0) as store:
        expected = {}
        for _ in range(1500):
            key, op = rng.randrange(12), rng.random()
            if op < 0.55:
                x = (torch.randn(rng.randrange(0, 9), 3, generator=torch.Generator().manual_seed(rng.randrange(99)))
                     * 7).to(rng.choice(dtypes))
                if rng.random() < 0.3:
                    x = x.t()                                                 # not contiguous
                store.put(key, x)
                expected[key] = x.clone()
            elif op < 0.75:
                store.discard(key)
                expected.pop(key, None)
            elif key in expected:
                back = store.get(key)
                assert back.dtype == expected[key].dtype and back.shape == expected[key].shape
                assert torch.equal(back, expected[key])
        assert store.memory_used == 0 and set(expected) == set(store._spilled) | set(store._kept)
        f = store._file
        extents = sorted([e for e, *_ in store._spilled.values() if e[1]] + f.free_extents)
        pos = 0
        for offset, nbytes in extents:
            assert offset == pos
            pos += nbytes
        assert pos == f.end == os.fstat(f.file.fileno()).st_size and not (f.free_extents and
                                                                           sum(f.free_extents[-1]) == f.end)


def test_a_view_is_copied_out_of_its_storage():
    big = _t(1000)
    with BatchStore(memory_bytes=10**6) as store:
        store.put("v", big[:10])
        kept = store.get("v")
        assert torch.equal(kept, big[:10]) and kept.untyped_storage().nbytes() == 40 and store.memory_used == 40


def test_nothing_is_written_while_the_budget_holds(tmp_path):
    with BatchStore(memory_bytes=10**6, directory=tmp_path) as store:
        store.put(0, _t(100))
        assert store.disk_bytes == 0 and store._file is None


@pytest.mark.parametrize("bad", [-1, 1.5, True, "64"])
@pytest.mark.parametrize("which", ["memory", "device"])
def test_a_bad_budget_is_one_clear_error(bad, which):
    kwargs = {"memory_bytes": 0, f"{which}_bytes": bad}
    with pytest.raises(RoundlabError, match=f"{which} budget must be a non-negative integer"):
        BatchStore(**kwargs)


def test_an_unwritable_directory_is_one_clear_error(tmp_path):
    missing = tmp_path / "no" / "such"
    with BatchStore(memory_bytes=0, directory=missing) as store:
        with pytest.raises(RoundlabError, match="cannot create a file for calibration batches"):
            store.put(0, _t(4))


def test_a_full_disk_is_one_clear_error_and_loses_no_other_batch(tmp_path, monkeypatch):
    """ENOSPC while spilling: one ``set TMPDIR`` line; what was stored before is intact and the failed write's bytes
    are given back."""
    with BatchStore(memory_bytes=0, directory=tmp_path) as store:
        store.put("a", _t(10, 1))
        f = store._file
        real_write = f.file.write

        def full(data):
            real_write(bytes(data)[:8])                                       # a partial write, then the error
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(f, "file", _Wrapped(f.file, write=full))
        with pytest.raises(RoundlabError, match=r"cannot spill 4000 bytes .* \(set TMPDIR to a disk with room\)$"):
            store.put("b", _t(1000, 2))
        assert "b" not in store and f.end == 40 and torch.equal(store.get("a"), _t(10, 1))
        assert os.fstat(f.file.fileno()).st_size == 40                        # the partial write is cut off


class _Wrapped:
    """A file object with some methods replaced."""

    def __init__(self, inner, **methods):
        self._inner, self._methods = inner, methods

    def __getattr__(self, name):
        return self._methods.get(name) or getattr(self._inner, name)


def test_a_conjugate_view_is_stored_as_its_values():
    x = torch.randn(4, 3, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    with BatchStore(memory_bytes=0) as store:
        store.put(0, x.conj())
        store.put(1, -x.imag)
        assert torch.equal(store.get(0), x.conj()) and torch.equal(store.get(1), -x.imag)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_an_accelerator_budget_keeps_device_tensors_then_hands_them_to_the_host_tiers():
    """A CUDA tensor stays on the device up to ``device_bytes``; beyond it it goes to host memory, then disk, and
    comes back on its own device."""
    xs = [_t(100, i).to("cuda") for i in range(4)]
    with BatchStore(memory_bytes=400, device_bytes=800) as store:
        for i, x in enumerate(xs):
            store.put(i, x)
        assert store.device_used == 800 and store.memory_used == 400 and store.disk_bytes == 400
        for i, x in enumerate(xs):
            back = store.get(i)
            assert back.device == x.device and torch.equal(back, x)
        store.discard(0)
        assert store.device_used == 400
