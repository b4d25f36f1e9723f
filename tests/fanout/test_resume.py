"""A run SIGKILLed at random points, several times, then resumed, ends with the uninterrupted run's weights."""

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import kill_target
from roundlab.fanout import ResultStore

TARGET = Path(kill_target.__file__)


def _records(run_dir: Path, skip=("time_s", "wqer", "fallbacks", "layer_sha256", "record_sha256")) -> dict:
    out = {}
    for line in (run_dir / "records.jsonl").read_text().splitlines():
        r = json.loads(line)
        out[r["layer"]] = {k: v for k, v in r.items() if k not in skip}
    return out


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """The uninterrupted run, in this process, serial, no delay."""
    d = tmp_path_factory.mktemp("clean")
    return d, kill_target.run(d, "serial", 0.0)


def test_same_config_and_seed_give_bit_identical_weights_and_records(clean, tmp_path):
    d, final = clean
    again = kill_target.run(tmp_path, "serial", 0.0)
    assert final.keys() == again.keys() and all(torch.equal(final[k], again[k]) for k in final)
    assert _records(d) == _records(tmp_path)
    digest = kill_target.config("serial", 0.0).digest()
    assert {r["digest"] for r in _records(tmp_path).values()} == {digest}


def _answers(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    except sqlite3.OperationalError:          # created but no table yet
        return 0


def _run_until_killed(run_dir: Path, executor: str, extra: int) -> bool:
    """Start the run; SIGKILL it once ``extra`` more answers are recorded (plus a random fraction of a task).
    Returns True if it was killed, False if it finished first."""
    store = run_dir / "subproblems.sqlite"
    start = _answers(store)
    proc = subprocess.Popen([sys.executable, str(TARGET), str(run_dir), executor, "0.02"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if _answers(store) >= start + extra:
            time.sleep(random.Random(extra).uniform(0.0, 0.03))       # land anywhere inside the next task
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.returncode in (0, -signal.SIGKILL), err[-2000:]
    return proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("executor", ["serial", "process"])
def test_sigkill_at_random_points_then_resume_gives_the_clean_runs_weights(executor, clean, tmp_path):
    """Killed three times, each after a random number (10-120) of newly recorded answers, then run to the end."""
    rng = random.Random(f"kill-{executor}")
    points = [rng.randint(10, 120) for _ in range(3)]
    kills = [n for n in points if _run_until_killed(tmp_path, executor, n)]
    assert len(kills) >= 2, f"the run finished before it could be killed twice (kills after {kills} answers)"
    recorded_before_resume = _answers(tmp_path / "subproblems.sqlite")
    assert recorded_before_resume > 0
    done = subprocess.run([sys.executable, str(TARGET), str(tmp_path), executor, "0.02"], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    final = torch.load(tmp_path / "final.pt", weights_only=True)
    clean_dir, clean_final = clean
    assert final.keys() == clean_final.keys()
    assert all(torch.equal(final[k], clean_final[k]) for k in final), f"weights differ (kills after {kills})"
    skip = ("time_s", "wqer", "fallbacks", "digest", "layer_sha256", "record_sha256")   # the clean run: no delay
    assert _records(tmp_path, skip) == _records(clean_dir, skip)
    with ResultStore(tmp_path / "subproblems.sqlite") as st:
        assert st.summary()["by_outcome"].keys() == {"ok"}
        total = len(st)
    assert total == _answers(clean_dir / "subproblems.sqlite")
    # the resumed run solved only what no killed run had recorded: finished work is not redone
    assert json.loads((tmp_path / "fanout.json").read_text())["tasks_solved"] == total - recorded_before_resume
