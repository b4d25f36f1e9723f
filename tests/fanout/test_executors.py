"""Executors: the same answers whichever runs them; errors, time-outs and worker deaths reported, never lost."""

import os
import threading
import time

import pytest
import torch

from roundlab.errors import RoundlabError
from roundlab.fanout import FannedSolver, get_executor
from roundlab.fanout.executors import Outcome
from roundlab.solvers import get_solver


def _square(x):
    return x * x


def _sleep_then(x):
    time.sleep(x)
    return os.getpid()


def _by_index(outcomes):
    return {o.index: o for o in outcomes}


@pytest.fixture(scope="module")
def process_executor():
    ex = get_executor("process", workers=2, task_timeout=20)
    yield ex
    ex.close()


def test_serial_yields_every_payload_once():
    with get_executor("serial") as ex:
        out = _by_index(ex.run(_square, [1, 2, 3]))
    assert {i: o.value for i, o in out.items()} == {0: 1, 1: 4, 2: 9}


@pytest.mark.parametrize("name", ["serial", "process", "ray"])
def test_every_executor_gives_the_serial_answers_bit_for_bit(name, problem, process_executor, request):
    """brute force on 8 chunks of 8 rows: identical delta, status and bound, and equal to the unchunked solve."""
    ex = {"serial": lambda: get_executor("serial"), "process": lambda: process_executor,
          "ray": lambda: request.getfixturevalue("ray_executor")}[name]()
    reference = get_solver("brute")(problem)
    res = FannedSolver(get_solver("brute"), ex, chunk_rows=8)(problem)
    assert torch.equal(res.delta, reference.delta)
    assert res.status == reference.status
    assert torch.equal(res.bound, reference.bound)


def test_process_executor_reports_errors_timeouts_and_deaths(tmp_path):
    """One task each: raises, hangs past the time-out, kills its worker every time, kills it once (then works)."""
    with get_executor("process", workers=2, task_timeout=3, retries=1) as ex:
        out = _by_index(ex.run(_fault, [("ok", None), ("raise", None), ("hang", None), ("kill", None),
                                        ("kill_once", str(tmp_path / "once"))]))
        assert len(ex.pids()) == 2                        # dead and killed workers were replaced
    assert out[0].kind == "ok" and out[0].value == "fine"
    assert out[1].kind == "error" and out[1].message == "ValueError: injected" and "Traceback" in out[1].traceback
    assert out[2].kind == "timeout" and out[2].seconds >= 3
    assert out[3].kind == "died" and out[3].attempts == 2 and "signal 9" in out[3].message
    assert out[4].kind == "ok" and out[4].attempts == 2


def test_ray_executor_reports_errors_timeouts_and_deaths(ray_executor, tmp_path):
    out = _by_index(ray_executor.run(_fault, [("ok", None), ("raise", None), ("kill_once", str(tmp_path / "once"))]))
    assert out[0].kind == "ok" and out[0].value == "fine"
    assert out[1].kind == "error" and "injected" in out[1].message
    assert out[2].kind == "ok"                            # Ray re-ran the task after its worker died
    assert (tmp_path / "once").exists()
    ray_executor.task_timeout = 5           # a time-out on its own: a retried task's clock includes a worker start
    try:
        (hung,) = ray_executor.run(_fault, [("hang", None)])
    finally:
        ray_executor.task_timeout = None
    assert hung.kind == "timeout" and hung.seconds >= 5


def test_a_worker_killed_from_outside_mid_solve_is_retried():
    with get_executor("process", workers=2) as ex:
        ex.start()
        victim = ex.pids()[0]
        killer = threading.Timer(1.0, os.kill, (victim, 9))   # both tasks are mid-sleep by then
        killer.start()
        outs = list(ex.run(_sleep_then, [2.5, 2.5]))
        killer.join()
    assert sorted(o.kind for o in outs) == ["ok", "ok"]
    assert sorted(o.attempts for o in outs) == [1, 2]
    assert victim not in {o.value for o in outs}


def test_bad_executor_options_are_one_clear_error():
    with pytest.raises(RoundlabError, match="unknown executor 'dask'"):
        get_executor("dask")
    with pytest.raises(RoundlabError, match="task_timeout needs the process or ray executor"):
        get_executor("serial", task_timeout=5)
    with pytest.raises(RoundlabError, match="workers must be a positive integer"):
        get_executor("process", workers=0)
    with pytest.raises(RoundlabError, match="retries must be an integer >= 0"):
        get_executor("process", retries=-1)


def _fault(arg):
    kind, marker = arg
    if kind == "raise":
        raise ValueError("injected")
    if kind == "hang":
        time.sleep(3600)
    if kind == "kill" or (kind == "kill_once" and not os.path.exists(marker)):
        if kind == "kill_once":
            open(marker, "w").close()
        os.kill(os.getpid(), 9)
    return "fine"


def test_outcome_ok_flag():
    assert Outcome(0, "ok").ok and not Outcome(0, "timeout").ok


def _thread_env(_):
    from roundlab.fanout.process_executor import THREAD_ENV

    return {name: os.environ.get(name) for name in THREAD_ENV}


def test_process_workers_start_their_native_libraries_with_the_executor_s_thread_count(process_executor):
    """Not one OpenBLAS thread per core in every worker (oversubscribed, and last bits that vary with the
    machine); the parent's own environment is left as it was."""
    from roundlab.fanout.process_executor import THREAD_ENV

    before = {name: os.environ.get(name) for name in THREAD_ENV}
    (out,) = process_executor.run(_thread_env, [0])
    assert out.ok and out.value == {name: "1" for name in THREAD_ENV}
    assert {name: os.environ.get(name) for name in THREAD_ENV} == before
