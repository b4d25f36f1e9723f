"""The results store: exact round trips, WAL mode, and no torn or lost answers when its writer is SIGKILLed."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from roundlab.errors import RoundlabError
from roundlab.fanout.store import Answer, ResultStore


def answer(seed: int, rows: int = 5, d: int = 7) -> Answer:
    g = torch.Generator().manual_seed(seed)
    return Answer(delta=torch.randn(rows, d, generator=g, dtype=torch.float64),
                  status=torch.randint(0, 5, (rows,), generator=g), bound=torch.rand(rows, generator=g,
                                                                                      dtype=torch.float64),
                  iterations=torch.randint(0, 100, (rows,), generator=g),
                  row_time=torch.rand(rows, generator=g, dtype=torch.float64),
                  fallback=torch.rand(rows, generator=g) > 0.5, meta={"layer": f"l{seed}", "digest": "abc"})


def same(a: Answer, b: Answer) -> bool:
    return all(torch.equal(getattr(a, f), getattr(b, f))
               for f in ("delta", "status", "bound", "iterations", "row_time", "fallback"))


def test_round_trip_is_bit_exact_and_survives_reopening(tmp_path):
    path = tmp_path / "s.sqlite"
    with ResultStore(path) as st:
        st.put("k1", answer(1))
        st.put("k2", Answer(**{**answer(2).__dict__, "outcome": "timeout", "reason": "timeout: 5 s"}))
    with ResultStore(path) as st:
        assert len(st) == 2
        assert same(st.get("k1", 5, 7), answer(1)) and st.get("k1", 5, 7).meta["layer"] == "l1"
        assert st.get("k2", 5, 7).reason == "timeout: 5 s"
        assert st.get("missing", 5, 7) is None
        assert st.get("k1", 4, 7) is None                  # a shape that does not match is never returned
        assert st.summary()["by_outcome"] == {"ok": {"tasks": 1, "rows": 5}, "timeout": {"tasks": 1, "rows": 5}}
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_file_that_is_not_a_store_is_one_clear_error(tmp_path):
    bad = tmp_path / "s.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(RoundlabError, match="cannot be opened"):
        ResultStore(bad)


WRITER = textwrap.dedent("""
    from test_store import answer
    from roundlab.fanout.store import ResultStore
    st = ResultStore({path!r})
    i = 0
    while True:
        st.put(f"k{{i}}", answer(i, rows=64, d=96))
        print(i, flush=True)
        i += 1
""")


@pytest.mark.parametrize("after", [0.5, 1.3, 2.1])
def test_sigkill_mid_write_loses_no_committed_answer_and_tears_none(tmp_path, after):
    """A writer killed at a random instant: every answer it reported as written is there, bit-exact, and nothing
    half-written is visible."""
    path = tmp_path / "s.sqlite"
    here = str(Path(__file__).parent)
    proc = subprocess.Popen([sys.executable, "-c", WRITER.format(path=str(path))], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": here})
    first = proc.stdout.readline()   # the writer is going (imports take seconds on a loaded machine)
    time.sleep(after)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    written = [int(x) for x in (first + out).split()]
    assert written, "the writer never got going"
    with ResultStore(path) as st:
        n = len(st)
        assert n >= len(written)      # a put may have committed just before its print
        for i in range(n):
            assert same(st.get(f"k{i}", 64, 96), answer(i, rows=64, d=96))
