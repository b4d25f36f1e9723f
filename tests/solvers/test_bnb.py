"""bnb: the brute-force optimum on adversarial rows, agreement with every installed MIQP backend, honest anytime
statuses and bounds, the pure-Python kernel equal to the compiled one, resumable through the results store."""

import numpy as np
import pytest
import torch

from roundlab.errors import RoundlabError
from roundlab.fanout import FannedSolver, ResultStore
from roundlab.problem import RoundingProblem, Status
from roundlab.solvers import bnb_kernel, get_solver
from roundlab.solvers.bound import lower_bound
from roundlab.solvers.miqp import available_backends
from roundlab.testing.synthetic import vit_like_problem, vit_like_samples

F64 = torch.float64


def _adversarial(kind: str, seed: int, d: int = 16, R: int = 6) -> RoundingProblem:
    g = torch.Generator().manual_seed(seed)
    X = vit_like_samples(96, d, outliers=2, outlier_scale=20.0, generator=g)
    if kind == "rank_deficient":                        # N < d and duplicated channels: M singular
        X = X[:5].clone()
        X[:, 1] = X[:, 0]
    M = X.T @ X / X.shape[0]
    w = torch.randn(R, d, generator=g, dtype=F64) * 0.05
    if kind == "outlier_weights":
        w[:, :2] *= 20.0
    lo_w, hi_w = w.amin(1, keepdim=True), w.amax(1, keepdim=True)
    clip = 0.6 if kind == "clamped" else 1.0
    scale = (hi_w - lo_w) * clip / 15
    zero = torch.round(-lo_w * clip / scale)
    if kind == "no_free":                               # row 0 entirely clamped (a grid far below the weights)
        zero[0] = -1000.0
    if kind == "all_free":                              # a wide grid: nothing clamped
        scale, zero = (hi_w - lo_w) / 7, torch.full_like(lo_w, 100.0)
    if kind == "ties":                                  # weights on half-steps: every nearest rounding is a tie,
        w = (torch.randint(0, 10, (R, d), generator=g).to(F64) + 0.5) * 0.01   # and an isotropic M gives
        scale, zero = torch.full_like(lo_w, 0.01), torch.zeros_like(lo_w)      # 2^d equal optima
        M = torch.eye(d, dtype=F64)
    return RoundingProblem.from_grid(w, scale, zero, 4, M=M)


KINDS = ["outlier_weights", "clamped", "ties", "rank_deficient", "no_free", "all_free"]


@pytest.mark.parametrize("probe", [50000, 3, None])      # rows closed by the probe; by Shor's forms; no probe
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("kind", KINDS)
def test_bnb_reaches_the_brute_force_optimum_with_a_proof(kind, seed, probe):
    p = _adversarial(kind, seed, d=20 if kind == "all_free" else 16)
    opt = get_solver("brute")(p).objective
    res = get_solver("bnb", probe_nodes=probe)(p)
    torch.testing.assert_close(res.objective, opt, rtol=1e-9, atol=1e-30)
    assert all(s is Status.OPTIMAL for s in res.status), res.status
    assert (res.bound <= opt * (1 + 1e-12) + 1e-300).all(), "a bound above the optimum"
    assert (res.gap <= 1e-8).all()
    if kind == "no_free":
        assert res.iterations[0] == 0


def test_bnb_without_shor_and_in_natural_order_is_still_exact():
    p = _adversarial("outlier_weights", 3)
    opt = get_solver("brute")(p).objective
    for opts in ({"shor": False}, {"order": "natural"}, {"refit": ()}, {"warm_start": None}, {"probe_nodes": 2}):
        res = get_solver("bnb", **opts)(p)
        torch.testing.assert_close(res.objective, opt, rtol=1e-9, atol=1e-30)
        assert all(s is Status.OPTIMAL for s in res.status)


@pytest.mark.parametrize("backend", [b for b in ("highs", "cbc", "scip", "cvxpy-scip", "gurobi")])
def test_bnb_agrees_with_every_installed_miqp_backend_at_d24(backend):
    if backend not in available_backends():
        pytest.skip(f"{backend} not installed")
    p = vit_like_problem(2, 24, seed=11, outlier_scale=20.0)
    ref = get_solver("miqp", backend=backend, time_limit=120.0)(p)
    res = get_solver("bnb")(p)
    assert all(s is Status.OPTIMAL for s in res.status)
    proven = [i for i, s in enumerate(ref.status) if s is Status.OPTIMAL]
    assert proven, f"{backend} proved no row"
    torch.testing.assert_close(res.objective[proven], ref.objective[proven], rtol=1e-7, atol=1e-30)
    assert (res.objective <= ref.objective * (1 + 1e-9)).all()


def test_the_probe_closes_narrow_rows_and_hands_only_the_open_ones_to_shor():
    p = vit_like_problem(6, 40, seed=4)
    probed = get_solver("bnb", probe_nodes=50000)(p)
    full = get_solver("bnb", probe_nodes=None)(p)
    torch.testing.assert_close(probed.objective, full.objective, rtol=1e-9, atol=1e-30)
    assert all(s is Status.OPTIMAL for s in probed.status) and probed.info["probe_closed"] > 0
    few = get_solver("bnb", probe_nodes=5)(p)                 # nothing closes in 5 nodes: every row goes on
    assert few.info["probe_closed"] == 0 and all(s is Status.OPTIMAL for s in few.status)
    torch.testing.assert_close(few.objective, full.objective, rtol=1e-9, atol=1e-30)


def test_a_node_limit_gives_time_limit_with_a_valid_bound_and_never_a_worse_answer():
    p = vit_like_problem(3, 40, seed=5)
    full = get_solver("bnb")(p)
    assert all(s is Status.OPTIMAL for s in full.status)
    cut = get_solver("bnb", node_limit=50, shor=False, warm_start=None)(p)
    assert Status.TIME_LIMIT in cut.status
    assert (cut.bound <= full.objective * (1 + 1e-9)).all(), "an anytime bound above the optimum"
    assert (cut.objective >= full.objective * (1 - 1e-12)).all()
    assert (cut.objective <= p.objective(p.nearest()).cpu() * (1 + 1e-12)).all()
    assert (cut.iterations <= 50).all()
    for s, g in zip(cut.status, cut.gap.tolist()):
        assert s is Status.OPTIMAL or g > 0


def test_bnb_bounds_are_at_least_shor_s_and_valid():
    p = vit_like_problem(4, 48, seed=2)
    res = get_solver("bnb", node_limit=1)(p)
    opt = get_solver("bnb")(p).objective
    shor = lower_bound(p, "mixing").bound
    assert (res.bound <= opt * (1 + 1e-9)).all()
    assert (res.bound >= shor * (1 - 1e-3)).all(), (res.bound, shor)


def test_the_python_kernel_equals_the_compiled_one():
    if not bnb_kernel.COMPILED:
        pytest.skip("numba not installed: the Python kernel is the only one")
    p = _adversarial("outlier_weights", 4, d=12, R=3)
    compiled = get_solver("bnb")(p)
    original = bnb_kernel.search
    try:
        bnb_kernel.search = original.py_func
        python = get_solver("bnb")(p)
    finally:
        bnb_kernel.search = original
    assert torch.equal(compiled.delta, python.delta)
    assert torch.equal(compiled.iterations, python.iterations)


def test_a_paused_search_resumes_to_the_same_answer():
    """The kernel's state survives between calls: many 7-node slices give the answer of one uninterrupted call."""
    p = vit_like_problem(2, 28, seed=9)
    one = get_solver("bnb", check_every=10 ** 9)(p)
    sliced = get_solver("bnb", check_every=7)(p)
    assert torch.equal(one.delta, sliced.delta) and torch.equal(one.iterations, sliced.iterations)


def test_bnb_runs_through_the_results_store_and_a_rerun_reuses_every_answer(tmp_path):
    p = vit_like_problem(24, 20, seed=3)
    first = FannedSolver(get_solver("bnb"), store=ResultStore(tmp_path / "s.sqlite"), chunk_rows=8)
    a = first(p)
    first.close()
    again = FannedSolver(get_solver("bnb"), store=ResultStore(tmp_path / "s.sqlite"), chunk_rows=8)
    b = again(p)
    assert torch.equal(a.delta, b.delta) and a.status == b.status
    assert again.report()["tasks_reused"] == 3 and again.report()["tasks_solved"] == 0


@pytest.mark.parametrize("opts, match", [
    ({"time_limit": -1.0}, "time_limit"), ({"node_limit": 0}, "node_limit"), ({"node_limit": -5}, "node_limit"),
    ({"gap_tol": -1e-3}, "gap_tol"), ({"order": "random"}, "order"), ({"refit": (1.5,)}, "refit"),
    ({"warm_start": "bnb"}, "warm_start"), ({"tries": 3}, "unknown option"), ({"shor": "yes"}, "shor"),
    ({"probe_nodes": 0}, "probe_nodes"), ({"polish": "bnb"}, "polish"), ({"polish": 3}, "polish"),
    ({"polish_min_free": 0}, "polish_min_free"),
])
def test_bad_options_are_one_clear_error(opts, match):
    with pytest.raises(RoundlabError, match=match) as e:
        get_solver("bnb", **opts)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("option", ["warm_start", "polish"])
def test_unknown_start_solver_is_one_clear_error(option):
    with pytest.raises(RoundlabError, match="unknown solver"):
        get_solver("bnb", **{option: "nope"})(vit_like_problem(1, 4))


@pytest.fixture
def polish_calls(monkeypatch):
    """(rows, init given) of every call bnb makes to its polish solver (tabu)."""
    from roundlab.solvers import bnb as bnb_module

    seen = []
    real = bnb_module.get_solver

    def spy(name, **kw):
        solver = real(name, **kw)
        if name == "tabu":
            def call(problem, init=None):
                seen.append((problem.rows, init is not None))
                return solver(problem, init=init)
            return call
        return solver

    monkeypatch.setattr(bnb_module, "get_solver", spy)
    return seen


def test_polish_runs_only_on_the_rows_the_probe_leaves_open_and_keeps_the_proof(polish_calls):
    """The polish solver sees exactly the open rows, from the probe's incumbents; the answers stay optimal."""
    seen = polish_calls
    p = vit_like_problem(6, 40, seed=4)
    opt = get_solver("bnb", polish=None, probe_nodes=None)(p)
    res = get_solver("bnb", probe_nodes=30, polish_min_free=1)(p)
    open_rows = p.rows - res.info["probe_closed"]
    assert open_rows > 0 and seen == [(open_rows, True)]
    assert res.info["searched"] == open_rows - res.info["reprobe_closed"]
    assert res.info["reprobe_closed"] <= res.info["polish_improved"] <= open_rows
    torch.testing.assert_close(res.objective, opt.objective, rtol=1e-9, atol=1e-30)
    assert all(s is Status.OPTIMAL for s in res.status)
    seen.clear()
    closed = get_solver("bnb", probe_nodes=10 ** 7, polish_min_free=1)(p)   # the probe closes every row
    assert closed.info["probe_closed"] == p.rows and seen == []
    narrow = get_solver("bnb", probe_nodes=30, polish_min_free=41)(p)       # no row has 41 free elements
    assert narrow.info["polish_improved"] == 0 and seen == []
    torch.testing.assert_close(narrow.objective, opt.objective, rtol=1e-9, atol=1e-30)


def test_no_polish_for_rows_whose_budget_is_spent(polish_calls):
    p = vit_like_problem(2, 40, seed=4)
    res = get_solver("bnb", probe_nodes=30, node_limit=30, polish_min_free=1, triangle_steps=0)(p)
    assert polish_calls == [] and res.info["probe_closed"] < p.rows
    assert (res.iterations <= 30).all()
    get_solver("bnb", probe_nodes=30, node_limit=31, polish_min_free=1, triangle_steps=0)(p)
    assert polish_calls and polish_calls[0][1]                # one node left: those rows are polished


def test_row_times_add_up_to_the_call_including_the_batched_work():
    p = vit_like_problem(6, 40, seed=4)
    res = get_solver("bnb", probe_nodes=30, polish_min_free=1)(p)
    assert float(res.row_time.sum()) == pytest.approx(res.time, rel=0.25)


def test_leaf_values_match_the_objective_on_ill_conditioned_rows():
    """Outliers ×1e3 (condition number ~1e12): the answer is still the brute-force optimum."""
    g = torch.Generator().manual_seed(0)
    X = vit_like_samples(64, 14, outliers=2, outlier_scale=1e3, generator=g)
    w = torch.randn(4, 14, generator=g, dtype=F64) * 0.05
    p = RoundingProblem.from_grid(w, (w.amax(1, keepdim=True) - w.amin(1, keepdim=True)) / 15,
                                  torch.full((4, 1), 7.0, dtype=F64), 4, M=X.T @ X / 64)
    opt = get_solver("brute")(p).objective
    res = get_solver("bnb")(p)
    torch.testing.assert_close(res.objective, opt, rtol=1e-9, atol=1e-30)
    assert np.all([s is Status.OPTIMAL for s in res.status])


_KILL_TARGET = """
import sys, torch
from roundlab.fanout import FannedSolver, ResultStore
from roundlab.solvers import get_solver
from roundlab.testing.synthetic import vit_like_problem
torch.set_num_threads(1)
p = vit_like_problem(48, 30, seed=21)
s = FannedSolver(get_solver("bnb"), store=ResultStore(sys.argv[1]), chunk_rows=2)
res = s(p)
torch.save({"delta": res.delta, "solved": s.report()["tasks_solved"]}, sys.argv[2])
"""


def test_a_bnb_run_sigkilled_mid_way_resumes_with_identical_answers(tmp_path):
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    store = tmp_path / "s.sqlite"

    def answers():
        try:
            with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as db:
                return db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
        except sqlite3.OperationalError:
            return 0

    proc = subprocess.Popen([sys.executable, "-c", _KILL_TARGET, str(store), str(tmp_path / "a.pt")],
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline and answers() < 6:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    recorded = answers()
    assert 0 < recorded < 24, "the run must be killed after some but not all of its 24 tasks"
    done = subprocess.run([sys.executable, "-c", _KILL_TARGET, str(store), str(tmp_path / "b.pt")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    resumed = torch.load(tmp_path / "b.pt", weights_only=True)
    clean = get_solver("bnb")(vit_like_problem(48, 30, seed=21))
    assert torch.equal(resumed["delta"], clean.delta)
    assert resumed["solved"] == 24 - recorded
