"""The run directory: one writer at a time, every persisted file checked before it is trusted.

Layout: ``config.json`` (the config and its digest), ``records.jsonl`` (one record per finished layer, carrying the
config digest, the SHA-256 of its layer file and its own checksum), ``layers/<name>.pt`` (tensors only, loaded with
``weights_only=True``), ``subproblems.sqlite`` (the results store, checksummed answers), ``result.json``,
``predictions.pt`` (every test image's outcome; its SHA-256 in ``result.json``), ``errors.log`` and ``.lock``.

Guarantees (each has a test in ``tests/pipeline/test_rundir.py``):

* a layer is reused only if its record carries this run's config digest and matches its own checksum, and its
  file's SHA-256 matches the record;
  otherwise it is recomputed (from the results store, so nothing is solved twice) and the reason is printed;
* a directory holding another configuration's layers is refused, ``config.json`` present or not;
* a second process writing into the same directory is refused with one line naming the holder (``flock``);
* ``fresh=True`` removes every artefact of the run (layers, records, results store, logs, result);
* the directory is checked (not a file, not under a file, writable) before any model or data is loaded.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import sys
from pathlib import Path

import torch

from roundlab.errors import RoundlabError
from roundlab.files import atomic_file, atomic_write  # noqa: F401  (atomic_write: its historical home)
from roundlab.pipeline.records import RecordWriter

#: every test image's outcome (:func:`roundlab.pipeline.run.save_predictions`)
PREDICTIONS = "predictions.pt"
#: Files a fresh start removes (besides ``layers/*.pt``).
RUN_FILES = ("records.jsonl", "subproblems.sqlite", "subproblems.sqlite-wal", "subproblems.sqlite-shm",
             "errors.log", "result.json", PREDICTIONS, "fanout.json")

_HELD: dict[str, tuple[int, int]] = {}       # realpath → (fd, users): one lock per directory and process


def check_run_dir(path: str | Path) -> Path:
    """``path`` can be (or become) a writable run directory: one clear error otherwise, before anything loads."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RoundlabError(f"--run-dir {path} exists and is not a directory")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise RoundlabError(f"--run-dir {path} lies under {probe}, which is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise RoundlabError(f"--run-dir {path}: {probe} is not writable")
    return path


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def record_sha256(record: dict) -> str:
    """Checksum of a layer record's content (everything but the checksum itself)."""
    body = {k: v for k, v in record.items() if k != "record_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _lock(run_dir: Path) -> str:
    """Hold ``run_dir/.lock`` exclusively for this process (shared by the process's own RunStates)."""
    key = os.path.realpath(run_dir)
    if key in _HELD:
        fd, users = _HELD[key]
        _HELD[key] = (fd, users + 1)
        return key
    path = run_dir / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 300, 0).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        raise RoundlabError(f"{run_dir} is in use by {holder}; wait for it to finish or use another --run-dir") \
            from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} ({' '.join(sys.argv)[:120]})".encode(), 0)
    _HELD[key] = (fd, 1)
    return key


def _unlock(key: str) -> None:
    fd, users = _HELD.get(key, (None, 0))
    if fd is None:
        return
    if users > 1:
        _HELD[key] = (fd, users - 1)
        return
    del _HELD[key]
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


class RunState:
    """The run directory of one config: lock, config check, finished layers (verified), records."""

    def __init__(self, run_dir: Path, config, fresh: bool):
        self.dir = check_run_dir(run_dir)
        self.digest = config.digest()
        self.layers = self.dir / "layers"
        try:
            self.layers.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RoundlabError(f"cannot create {self.layers}: {e.strerror or e}") from None
        self._lock = _lock(self.dir)
        self.records = RecordWriter(self.dir / "records.jsonl")
        try:
            if fresh:
                for p in self.layers.glob("*"):
                    p.unlink()
                for name in RUN_FILES:
                    (self.dir / name).unlink(missing_ok=True)
            records = self.records.read()
            if not fresh:
                self._check_config(records)
            atomic_write(self.dir / "config.json",
                         json.dumps({"digest": self.digest, "config": config.to_dict()}, indent=2))
            self._finished = self._verified_records(records)
        except BaseException:
            self.close()                    # a refused directory is not left locked by this process
            raise

    def _check_config(self, records: list[dict]) -> None:
        cfg_path = self.dir / "config.json"
        if cfg_path.exists():
            try:
                old = json.loads(cfg_path.read_text(encoding="utf-8"))["digest"]
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                raise RoundlabError(f"{cfg_path} is damaged; pass --fresh to start this run over, or use another "
                                    f"--run-dir") from None
            if old != self.digest:
                raise RoundlabError(f"{self.dir} holds a run with a different config (digest {old} != "
                                    f"{self.digest}); pass --fresh or another --run-dir")
        others = sorted({str(r.get("digest")) for r in records} - {self.digest})
        if others:
            raise RoundlabError(f"{self.dir} holds layers of another configuration (digest {', '.join(others)}; "
                                f"this run: {self.digest}); pass --fresh to overwrite them, or use another --run-dir")

    def _verified_records(self, records: list[dict]) -> dict[str, dict]:
        """Records whose layer file exists and matches its checksum; the rest are recomputed (and said so)."""
        last = {}
        for r in records:
            if isinstance(r, dict) and isinstance(r.get("layer"), str) and r.get("digest") == self.digest:
                last[r["layer"]] = r                                  # the newest record of a layer counts
        out = {}
        for name, r in last.items():
            path = self.path(name)
            if not path.exists():
                continue
            if r.get("record_sha256") != record_sha256(r):
                print(f"roundlab: warning: the record of layer {name} in {self.records.path} does not match its "
                      f"checksum; recomputing the layer", file=sys.stderr)
                continue
            if file_sha256(path) != r.get("layer_sha256"):
                print(f"roundlab: warning: {path} does not match its recorded checksum (damaged or foreign); "
                      f"recomputing layer {name}", file=sys.stderr)
                path.unlink()
                continue
            out[name] = r
        return out

    def path(self, name: str) -> Path:
        return self.layers / f"{name}.pt"

    def done(self, name: str) -> bool:
        return name in self._finished

    def save(self, name: str, state: dict, record: dict) -> None:
        """Layer file (tmp + rename) and its record, which carries the file's checksum and the config digest."""
        with atomic_file(self.path(name), f"layer {name} into {self.layers}") as tmp:
            torch.save({k: v.detach().cpu() for k, v in state.items()}, tmp)
            record = {**record, "digest": self.digest, "layer_sha256": file_sha256(tmp)}
            record["record_sha256"] = record_sha256(record)
            self.records.append(record)
        self._finished[name] = record

    def load(self, name: str) -> dict:
        return torch.load(self.path(name), map_location="cpu", weights_only=True)

    def finished_records(self) -> dict[str, dict]:
        return dict(self._finished)

    def close(self) -> None:
        if self._lock is not None:
            _unlock(self._lock)
            self._lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
