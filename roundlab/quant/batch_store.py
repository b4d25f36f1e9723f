"""Tensors kept by key between passes, in memory up to a fixed budget and on disk beyond it, so that what a streamed
pass keeps for every batch (a segment's inputs, a target's pass-0 inputs) does not grow the process with the number
of images.

A tensor that does not fit the budget is written to a file in a private temporary directory (under ``TMPDIR``, or
``directory``) and read back, bit for bit, on every ``get``; the directory is removed by ``close()`` (or the
``with`` block). On disk the bytes live in the OS page cache while memory allows, outside the process.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

from roundlab.errors import RoundlabError


class BatchStore:
    """``put(key, x)`` / ``get(key)``: in memory while the kept host tensors total at most ``memory_bytes``, else a
    file. A tensor on an accelerator stays in its device's memory (no host round trip in a pass; the budget is the
    host's)."""

    def __init__(self, memory_bytes: int, directory: str | Path | None = None):
        if not isinstance(memory_bytes, int) or isinstance(memory_bytes, bool) or memory_bytes < 0:
            raise RoundlabError(f"a batch store's memory budget must be a non-negative integer, got {memory_bytes!r}")
        self.memory_bytes, self.directory = memory_bytes, directory
        self._memory: dict = {}
        self._files: dict = {}          # key → (path, device)
        self._dir: Path | None = None
        self.memory_used = 0
        self.disk_bytes = 0             # written over the store's life (a figure for reports)
        self._serial = 0

    def __enter__(self) -> "BatchStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __contains__(self, key) -> bool:
        return key in self._memory or key in self._files

    def __len__(self) -> int:
        return len(self._memory) + len(self._files)

    def put(self, key, x: torch.Tensor) -> None:
        """Keep ``x`` under ``key`` (replacing what was there); a view is copied out of the storage it shares."""
        self.discard(key)
        if x.untyped_storage().nbytes() > x.numel() * x.element_size():
            x = x.clone(memory_format=torch.contiguous_format)
        size = x.numel() * x.element_size()
        if x.device.type != "cpu":
            self._memory[key] = x
            return
        if self.memory_used + size <= self.memory_bytes:
            self._memory[key] = x
            self.memory_used += size
            return
        path = self._path()
        try:
            torch.save(x.detach(), path)
        except OSError as e:
            raise RoundlabError(f"cannot spill {size / 2**20:.0f} MB of calibration data to {path.parent}: {e} "
                                f"(set TMPDIR to a disk with room)") from None
        self._files[key] = (path, x.device)
        self.disk_bytes += size

    def get(self, key) -> torch.Tensor:
        if key in self._memory:
            return self._memory[key]
        path, device = self._files[key]
        return torch.load(path, map_location=device, weights_only=True)

    def discard(self, key) -> None:
        x = self._memory.pop(key, None)
        if x is not None and x.device.type == "cpu":
            self.memory_used -= x.numel() * x.element_size()
        entry = self._files.pop(key, None)
        if entry is not None:
            entry[0].unlink(missing_ok=True)

    def close(self) -> None:
        """Forget everything; remove the directory."""
        self._memory.clear()
        self._files.clear()
        self.memory_used = 0
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _path(self) -> Path:
        if self._dir is None:
            try:
                self._dir = Path(tempfile.mkdtemp(prefix="roundlab-batches-", dir=self.directory))
            except OSError as e:
                raise RoundlabError(f"cannot create a directory for calibration batches under "
                                    f"{self.directory or tempfile.gettempdir()}: {e}") from None
        self._serial += 1
        return self._dir / f"{self._serial}.pt"
