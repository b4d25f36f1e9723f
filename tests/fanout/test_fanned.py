"""FannedSolver: the wrapped solver's answers, recorded and reused; every fault an error or a recorded fallback."""

import pytest
import torch

from roundlab.errors import RoundlabError
from roundlab.fanout import FannedSolver, ResultStore, get_executor, task_key
from roundlab.problem import Status
from roundlab.solvers import get_solver
from roundlab.testing.synthetic import vit_like_problem


def test_chunked_answers_equal_the_unchunked_solve_and_look_like_the_inner_solver(problem):
    inner = get_solver("greedy")
    res = FannedSolver(inner, chunk_rows=7)(problem)
    ref = inner(problem)
    assert torch.equal(res.delta, ref.delta) and res.status == ref.status
    assert res.solver == "greedy" and res.config == inner.config.asdict()


def test_answers_are_recorded_and_reused_by_a_new_run(tmp_path, problem):
    path = tmp_path / "s.sqlite"
    first = FannedSolver(get_solver("brute"), store=ResultStore(path), chunk_rows=16)
    a = first(problem)
    first.close()
    again = FannedSolver(get_solver("brute"), store=ResultStore(path), chunk_rows=16)
    b = again(problem)
    assert torch.equal(a.delta, b.delta) and a.status == b.status
    assert again.report()["tasks_reused"] == 4 and again.report()["tasks_solved"] == 0
    # a different solver config or problem is never served a stored answer
    other = FannedSolver(get_solver("greedy"), store=again.store, chunk_rows=16)
    other(problem)
    assert other.report()["tasks_solved"] == 4


def test_task_key_covers_solver_config_problem_and_warm_start(problem):
    k = task_key(get_solver("greedy"), problem, None)
    assert k == task_key(get_solver("greedy"), problem, None)
    assert k != task_key(get_solver("tabu"), problem, None)
    assert k != task_key(get_solver("miqp", time_limit=5.0), problem, None)
    assert k != task_key(get_solver("greedy"), problem.subproblem(slice(0, 63)), None)
    assert k != task_key(get_solver("greedy"), problem, problem.nearest())
    p2 = vit_like_problem(64, 10, seed=4)
    assert k != task_key(get_solver("greedy"), p2, None)


def test_a_raising_solver_is_one_clear_error_and_keeps_what_finished(tmp_path, problem):
    store = ResultStore(tmp_path / "s.sqlite")
    faulty = get_solver("faulty", fail="raise", fail_fraction=0.3)
    picked = [faulty.picked(problem.subproblem(slice(a, a + 16))) for a in range(0, 64, 16)]
    first_failure = picked.index(True)
    assert first_failure > 0, "the test needs a chunk that finishes before the failing one"
    s = FannedSolver(faulty, store=store, chunk_rows=16, error_log=tmp_path / "errors.log")
    s.set_context(layer="blocks.0.mlp.fc1")
    with pytest.raises(RoundlabError, match=r"solver faulty raised on blocks\.0\.mlp\.fc1 \(call 0\), rows \d+-\d+: "
                                            r"RuntimeError: injected fault"):
        s(problem)
    assert "Traceback" in (tmp_path / "errors.log").read_text()
    assert len(store) == first_failure        # chunks solved before the failing one are kept for the rerun


def test_fallback_policy_records_the_reason_and_rounds_to_nearest(tmp_path, problem):
    store = ResultStore(tmp_path / "s.sqlite")
    s = FannedSolver(get_solver("faulty", fail="raise", fail_fraction=0.3), store=store, chunk_rows=16,
                     on_error="fallback")
    res = s(problem)
    fb = torch.tensor([st == Status.FALLBACK for st in res.status])
    assert 0 < int(fb.sum()) < 64
    assert torch.equal(res.delta[fb], problem.nearest()[fb])
    rep = s.report()
    assert rep["fallback_rows"] == int(fb.sum())
    assert {f["reason"] for f in rep["fallbacks"]} == {"error: RuntimeError: injected fault (faulty solver, fail=raise)"}
    assert store.summary()["by_outcome"]["error"]["rows"] == int(fb.sum())


def test_time_outs_and_dead_workers_become_recorded_fallbacks(tmp_path, problem):
    with get_executor("process", workers=2, task_timeout=2, retries=1) as ex:
        for fail, reason in (("hang", "timeout: no answer after 2 s"), ("kill", "died: worker died (signal 9)")):
            s = FannedSolver(get_solver("faulty", fail=fail, fail_fraction=0.3), ex, chunk_rows=16)
            res = s(problem)
            rep = s.report()
            assert rep["fallbacks"] and all(f["reason"].startswith(reason) for f in rep["fallbacks"])
            fb = torch.tensor([st == Status.FALLBACK for st in res.status])
            assert int(fb.sum()) == rep["fallback_rows"] > 0
            assert torch.equal(res.delta[~fb], get_solver("greedy")(problem).delta[~fb])


def test_kill_fault_refuses_to_kill_the_calling_process(problem):
    s = FannedSolver(get_solver("faulty", fail="kill"), chunk_rows=64)
    with pytest.raises(RoundlabError, match="refusing to kill the process that runs the pipeline"):
        s(problem)
