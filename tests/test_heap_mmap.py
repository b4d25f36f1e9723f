"""roundlab.heap.map_large_allocations and `roundlab quantize --low-memory`."""
import ctypes
import subprocess
import sys

import pytest

from roundlab import heap


def test_map_large_allocations_reports_a_missing_mallopt(monkeypatch):
    monkeypatch.setattr(heap, "_mallopt", lambda: None)
    assert heap.map_large_allocations() is False


def test_map_large_allocations_passes_the_threshold(monkeypatch):
    calls = []
    monkeypatch.setattr(heap, "_mallopt", lambda: lambda param, value: calls.append((param, value)) or 1)
    assert heap.map_large_allocations(4096) is True
    assert calls == [(heap.M_MMAP_THRESHOLD, 4096)]


def test_map_large_allocations_reports_a_refusal(monkeypatch):
    monkeypatch.setattr(heap, "_mallopt", lambda: lambda param, value: 0)
    assert heap.map_large_allocations() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_glibc_takes_the_threshold():
    try:
        ctypes.CDLL(None).gnu_get_libc_version
    except AttributeError:
        pytest.skip("not glibc")
    # in a child: the setting is process-wide and would slow the rest of the suite's large allocations
    code = ("from roundlab.heap import map_large_allocations as m; assert m() is True; "
            "b = bytearray(8 << 20); assert len(b) == 8 << 20; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_cli_low_memory_sets_it_before_the_run(monkeypatch, capsys):
    from roundlab import cli
    from roundlab.pipeline import run

    order = []
    monkeypatch.setattr(heap, "map_large_allocations", lambda: order.append("heap") or False)

    def fake_run(config, **kw):
        order.append("run")
        raise SystemExit(0)

    monkeypatch.setattr(run, "run_erq", fake_run)
    with pytest.raises(SystemExit):
        cli.main(["quantize", "--low-memory", "--method", "rtn"])
    assert order == ["heap", "run"]
    assert "--low-memory has no effect" in capsys.readouterr().err
