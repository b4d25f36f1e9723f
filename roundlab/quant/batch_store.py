"""Tensors kept by key between passes, in memory up to fixed budgets and on disk beyond them, so that what a streamed
pass keeps for every batch (a segment's inputs, a target's pass-0 inputs) does not grow the process, or the
accelerator's memory, with the number of images.

Three tiers, tried in order for each ``put``:

1. an accelerator tensor stays on its device while the device tensors kept total at most ``device_bytes``;
2. a host tensor (or an accelerator tensor past its budget, copied to the host) stays in host memory while the host
   tensors kept total at most ``memory_bytes``;
3. beyond both, its bytes go to one spill file and are read back, bit for bit, onto the tensor's own device on
   every ``get``.

The spill file is an unlinked temporary file (``tempfile.TemporaryFile`` under ``TMPDIR``, or ``directory``): it has
no name, so nothing is left behind when the process ends, however it ends (a SIGKILL or the OOM killer included),
and its space is reused as keys are replaced. Its bytes live in the OS page cache while memory allows, outside the
process; on a ``/tmp`` that is a tmpfs they stay in RAM, so point ``TMPDIR`` at a disk for large runs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from roundlab.errors import RoundlabError
from roundlab.heap import shares_larger_storage


def _nbytes(x: torch.Tensor) -> int:
    return x.numel() * x.element_size()


def _check_budget(value, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise RoundlabError(f"a batch store's {what} budget must be a non-negative integer, got {value!r}")
    return value


class BatchStore:
    """``put(key, x)`` / ``get(key)`` / ``discard(key)``; see the module docstring for where ``x`` is kept.
    ``get`` returns a tensor on ``x``'s device with ``x``'s dtype, shape and values."""

    def __init__(self, memory_bytes: int, directory: str | Path | None = None, device_bytes: int = 0):
        self.memory_bytes = _check_budget(memory_bytes, "memory")
        self.device_bytes = _check_budget(device_bytes, "device")
        self.directory = directory
        self._kept: dict = {}            # key → (tensor, original device), in host or device memory
        self._spilled: dict = {}         # key → (extent, dtype, shape, original device)
        self._file: _SpillFile | None = None
        self.memory_used = 0             # host bytes kept in memory now
        self.device_used = 0             # device bytes kept now
        self.disk_bytes = 0              # bytes written to the spill file over the store's life (a report figure)
        self.disk_bytes_read = 0         # bytes read back from it

    def __enter__(self) -> "BatchStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __contains__(self, key) -> bool:
        return key in self._kept or key in self._spilled

    def __len__(self) -> int:
        return len(self._kept) + len(self._spilled)

    def put(self, key, x: torch.Tensor) -> None:
        """Keep ``x`` under ``key`` (replacing what was there); a view is copied out of the storage it shares."""
        self.discard(key)
        if x.requires_grad:
            x = x.detach()
        x = x.resolve_conj().resolve_neg()          # lazy conjugate/negative views have no plain bytes
        if shares_larger_storage(x) or not x.is_contiguous():
            x = x.clone(memory_format=torch.contiguous_format)
        size, device = _nbytes(x), x.device
        if device.type != "cpu":
            if self.device_used + size <= self.device_bytes:
                self._kept[key] = (x, device)
                self.device_used += size
                return
            x = x.cpu()
        if self.memory_used + size <= self.memory_bytes:
            self._kept[key] = (x, device)
            self.memory_used += size
            return
        self._spilled[key] = (self._spill_file().write(x), x.dtype, x.shape, device)
        self.disk_bytes += size

    def get(self, key) -> torch.Tensor:
        if key in self._kept:
            x, device = self._kept[key]
            return x.to(device)
        extent, dtype, shape, device = self._spilled[key]
        self.disk_bytes_read += extent[1]
        return self._file.read(extent, dtype, shape).to(device)

    def discard(self, key) -> None:
        entry = self._kept.pop(key, None)
        if entry is not None:
            x, _ = entry
            if x.device.type == "cpu":
                self.memory_used -= _nbytes(x)
            else:
                self.device_used -= _nbytes(x)
        spilled = self._spilled.pop(key, None)
        if spilled is not None:
            self._file.free(spilled[0])

    def close(self) -> None:
        """Forget everything; close (and so remove) the spill file."""
        self._kept.clear()
        self._spilled.clear()
        self.memory_used = self.device_used = 0
        if self._file is not None:
            self._file.close()
            self._file = None

    def _spill_file(self) -> "_SpillFile":
        if self._file is None:
            self._file = _SpillFile(self.directory)
        return self._file


class _SpillFile:
    """One unlinked temporary file holding tensors' raw bytes at extents ``(offset, nbytes)``; a freed extent is
    reused by a later write that fits (first fit), and freed space at the end shrinks the file."""

    def __init__(self, directory):
        try:
            self.file = tempfile.TemporaryFile(prefix="roundlab-batches-", dir=directory, buffering=0)
        except OSError as e:
            raise RoundlabError(f"cannot create a file for calibration batches under "
                                f"{directory or tempfile.gettempdir()}: {e}") from None
        self.directory = directory
        self.end = 0
        self.free_extents: list[tuple[int, int]] = []     # sorted by offset, never adjacent

    def write(self, x: torch.Tensor) -> tuple[int, int]:
        """Write ``x``'s bytes (a contiguous host tensor) and return their extent."""
        data = memoryview(x.reshape(-1).view(torch.uint8).numpy())
        extent = self._allocate(len(data))
        try:
            self.file.seek(extent[0])
            written = 0
            while written < len(data):
                n = self.file.write(data[written:])
                if not n:
                    raise OSError("no bytes written")
                written += n
        except (OSError, RuntimeError) as e:
            self.free(extent)
            size = f"{len(data) / 2**20:.1f} MB" if len(data) >= 2**20 else f"{len(data)} bytes"
            raise RoundlabError(f"cannot spill {size} of calibration data to "
                                f"{self.directory or tempfile.gettempdir()}: {e} (set TMPDIR to a disk with room)"
                                ) from None
        return extent

    def read(self, extent: tuple[int, int], dtype: torch.dtype, shape) -> torch.Tensor:
        offset, nbytes = extent
        out = torch.empty(shape, dtype=dtype)
        buf = memoryview(out.reshape(-1).view(torch.uint8).numpy())
        self.file.seek(offset)
        done = 0
        while done < nbytes:
            n = self.file.readinto(buf[done:])
            if not n:
                raise RoundlabError(f"the calibration spill file ended {nbytes - done} bytes early "
                                    f"(was it truncated?)")
            done += n
        return out

    def free(self, extent: tuple[int, int]) -> None:
        if extent[1] == 0:
            return
        merged: list[tuple[int, int]] = []
        for a, n in sorted(self.free_extents + [extent]):
            if merged and sum(merged[-1]) >= a:                 # touches the previous one: join them
                start = merged[-1][0]
                merged[-1] = (start, max(sum(merged[-1]), a + n) - start)
            else:
                merged.append((a, n))
        if sum(merged[-1]) == self.end:                         # free space at the end: give it back
            self.end = merged.pop()[0]
            self.file.truncate(self.end)
        self.free_extents = merged

    def _allocate(self, nbytes: int) -> tuple[int, int]:
        for i, (a, n) in enumerate(self.free_extents):
            if n >= nbytes:
                if n == nbytes:
                    del self.free_extents[i]
                else:
                    self.free_extents[i] = (a + nbytes, n - nbytes)
                return a, nbytes
        offset, self.end = self.end, self.end + nbytes
        return offset, nbytes

    def close(self) -> None:
        self.file.close()
