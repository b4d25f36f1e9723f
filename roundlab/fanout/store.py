"""The results store: every solved subproblem, recorded the moment it completes, in one SQLite file.

Why SQLite in WAL mode (``synchronous=FULL``) rather than append-only JSON lines: a commit is atomic and durable
once ``put`` returns, so a process killed at any instant leaves either the whole answer or none of it (a JSON-lines
file needs torn-line detection and ad-hoc compaction); answers are looked up by key in O(log n) instead of by
re-reading the log; the per-row tensors are stored as exact binary blobs (bit-identical float64 on reload, no
text round-trip); and readers (``roundlab report``, a notebook) can open the file while a run writes it.

A row is keyed by a content hash of the task (solver class and config, the subproblem's tensors, the warm start;
see :func:`roundlab.fanout.fanned.task_key`), so an answer is reused only for the very same subproblem.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from roundlab.errors import RoundlabError
from roundlab.result import ROW_COLUMNS, row_shape

#: SQLite column type of every row-form column (one blob each: exact binary, bit-identical on reload).
_BLOB_COLUMNS = "\n".join(f"    {name:<10} BLOB NOT NULL, -- {dtype} {'(rows, d)' if name == 'delta' else '(rows,)'}"
                           for name, dtype in ROW_COLUMNS)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS answers (
    key        TEXT PRIMARY KEY,
    rows       INTEGER NOT NULL,
    d          INTEGER NOT NULL,
{_BLOB_COLUMNS}
    outcome    TEXT NOT NULL,     -- ok | error | timeout | died
    reason     TEXT,              -- why a fallback was recorded (NULL when solved)
    meta       TEXT NOT NULL,     -- JSON: digest, layer, call, rows range, solver, executor, seconds
    created    REAL NOT NULL,
    checksum   TEXT               -- SHA-256 of everything above but `created` (NULL: written before checksums)
)
"""
_NAMES = tuple(name for name, _ in ROW_COLUMNS)
_NP = {name: torch.empty(0, dtype=dtype).numpy().dtype for name, dtype in ROW_COLUMNS}


class Answer:
    """One task's recorded answer: the row form of its :class:`~roundlab.result.RoundingResult` (``delta``,
    ``status`` codes and every ``ROW_FIELDS`` record, as attributes) with ``outcome`` (``"ok"``, or a fallback's
    ``error`` | ``timeout`` | ``died``), the fallback's ``reason`` and ``meta``."""

    def __init__(self, outcome: str = "ok", reason: str | None = None, meta: dict | None = None, **rows):
        unknown = sorted(set(rows) - set(_NAMES))
        missing = [n for n in _NAMES if n not in rows]
        if unknown or missing:
            raise TypeError(f"Answer needs exactly the row columns {list(_NAMES)}; missing {missing}, "
                            f"unknown {unknown}")
        for name in _NAMES:
            setattr(self, name, rows[name])
        self.outcome, self.reason, self.meta = outcome, reason, dict(meta or {})

    @property
    def rows(self) -> dict:
        """The row form (``RoundingResult.from_rows`` input)."""
        return {name: getattr(self, name) for name in _NAMES}


def _checksum(key: str, rows: int, d: int, blobs, outcome: str, reason, meta: str) -> str:
    h = hashlib.sha256(f"{key}|{rows}|{d}|{outcome}|{reason}|{meta}".encode())
    for b in blobs:
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def _blob(t: torch.Tensor, dtype) -> bytes:
    return t.detach().cpu().to(dtype).contiguous().numpy().tobytes()


def _tensor(b: bytes, np_dtype, shape) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(b, dtype=np_dtype).copy().reshape(shape))


class ResultStore:
    """``put`` / ``get`` answers by key; safe against SIGKILL at any point (WAL, fsync on every commit)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=60)
            mode = self.db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute(_SCHEMA)
            columns = {r[1] for r in self.db.execute("PRAGMA table_info(answers)")}
            if "checksum" not in columns:                   # a store from before checksums
                self.db.execute("ALTER TABLE answers ADD COLUMN checksum TEXT")
            for name in _NAMES:                             # a row record added since: its old answers are solved again
                if name not in columns:
                    self.db.execute(f"ALTER TABLE answers ADD COLUMN {name} BLOB")
        except sqlite3.DatabaseError as e:
            raise RoundlabError(f"results store {self.path} cannot be opened ({e}); move it away to start over") \
                from None
        if str(mode).lower() != "wal":
            raise RoundlabError(f"results store {self.path}: the filesystem refused WAL mode (got {mode!r})")
        self.discarded: list[tuple[str, str]] = []         # (key, why) of answers found damaged and dropped

    def get(self, key: str, rows: int, d: int) -> Answer | None:
        """The answer stored under ``key``, or None: also when its shape does not match (never a wrong answer) and
        when it is damaged (checksum, blob sizes) — a damaged answer is deleted, noted in ``discarded`` and
        announced on stderr, so the caller solves the task again."""
        cols = ", ".join(_NAMES)
        row = self.db.execute(f"SELECT rows, d, {cols}, outcome, reason, meta, checksum FROM answers WHERE key = ?",
                              (key,)).fetchone()
        if row is None or row[0] != rows or row[1] != d:
            return None
        n = len(_NAMES)
        blobs, (outcome, reason, meta_text, checksum) = row[2:2 + n], row[2 + n:]
        if any(b is None for b in blobs):        # written before a row record existed: solved again, quietly
            return None
        why = None
        if any(not isinstance(b, bytes) or len(b) != _NP[name].itemsize * int(np.prod(row_shape(name, rows, d)))
               for b, name in zip(blobs, _NAMES)):
            why = "truncated or incomplete data"
        elif checksum is not None and checksum != _checksum(key, rows, d, blobs, outcome, reason, meta_text):
            why = "checksum mismatch"
        if why is None:
            try:
                meta = json.loads(meta_text)
            except (TypeError, ValueError):
                why = "unreadable metadata"
        if why is not None:
            self.discard(key, why)
            return None
        tensors = {name: _tensor(b, _NP[name], row_shape(name, rows, d)) for b, name in zip(blobs, _NAMES)}
        return Answer(outcome=outcome, reason=reason, meta=meta, **tensors)

    def answers(self) -> Iterator[tuple[str, Answer]]:
        """Every intact answer, as ``(key, answer)`` (checked like :meth:`get`; damaged ones are discarded)."""
        for key, rows, d in self.db.execute("SELECT key, rows, d FROM answers").fetchall():
            a = self.get(key, rows, d)
            if a is not None:
                yield key, a

    def discard(self, key: str, why: str) -> None:
        """Delete a damaged answer (it is solved again) and say so."""
        self.discarded.append((key, why))
        print(f"roundlab: warning: results store {self.path}: answer {key[:16]} is damaged ({why}); solving that "
              f"task again", file=sys.stderr)
        self._write("DELETE FROM answers WHERE key = ?", (key,))

    def put(self, key: str, a: Answer) -> None:
        """Record ``a`` under ``key`` (one durable transaction; an existing key is replaced)."""
        R, d = a.delta.shape
        blobs = tuple(_blob(getattr(a, name), dtype) for name, dtype in ROW_COLUMNS)
        meta = json.dumps(a.meta, default=str, sort_keys=True)
        cols = ", ".join(("key", "rows", "d") + _NAMES + ("outcome", "reason", "meta", "created", "checksum"))
        self._write(f"INSERT OR REPLACE INTO answers ({cols}) VALUES ({', '.join('?' * (len(_NAMES) + 8))})",
                    (key, R, d, *blobs, a.outcome, a.reason, meta, time.time(),
                     _checksum(key, R, d, blobs, a.outcome, a.reason, meta)))

    def _write(self, sql: str, args: tuple) -> None:
        try:
            self.db.execute(sql, args)
        except sqlite3.Error as e:      # disk full, read-only filesystem, a damaged file
            raise RoundlabError(f"results store {self.path}: cannot write ({e}); what is recorded is kept — free "
                                f"the disk or fix the file, then rerun to resume") from None

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def summary(self) -> dict:
        """Counts by outcome (tasks and rows) and the distinct fallback reasons."""
        out = {"tasks": 0, "rows": 0, "by_outcome": {}, "fallback_reasons": {}}
        for outcome, n, rows in self.db.execute("SELECT outcome, COUNT(*), SUM(rows) FROM answers GROUP BY outcome"):
            out["by_outcome"][outcome] = {"tasks": n, "rows": rows}
            out["tasks"] += n
            out["rows"] += rows
        for reason, n in self.db.execute("SELECT reason, COUNT(*) FROM answers WHERE reason IS NOT NULL "
                                         "GROUP BY reason"):
            out["fallback_reasons"][reason] = n
        return out

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
