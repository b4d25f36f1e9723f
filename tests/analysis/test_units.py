"""The analysis' small pieces: options, statistics, the problem log."""

import json
import math

import pytest
import torch

from analysis import stats
from analysis.options import SMOKE, parse, positive_int
from analysis.problem_log import PROBLEMS, open_log, read_problems


def test_options_smoke_and_models(tmp_path):
    dirs = ["--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs")]
    opts, _ = parse("doc", ["--smoke", "--eval-images", "500"] + dirs, full_eval=5000, models="a,b")
    assert opts.smoke and opts.eval_images == SMOKE["eval_images"] and opts.models == ("fmnist-vit",)
    assert opts.out.is_dir() and opts.runs.is_dir()
    opts, _ = parse("doc", dirs, full_eval=5000, models="a,b")
    assert opts.eval_images == 5000 and opts.models == ("a", "b")
    opts, ns = parse("doc", ["--models", "x,y"] + dirs, models=True,
                     extra=lambda p: p.add_argument("--k", default="1", help="a script flag"))
    assert opts.models == ("x", "y") and ns.k == "1"
    cfg = opts.with_model("fmnist-deit").config("calib")
    assert cfg.model == "fmnist-deit" and not cfg.aqer and opts.model == "fmnist-vit"
    with pytest.raises(Exception):
        opts.model = "other"                                   # frozen: passed explicitly, never mutated


def test_correlations():
    x = [1, 2, 3, 4, 5]
    y = [5, 6, 7, 8, 7]
    assert stats.spearman(x, y) == pytest.approx(0.8207826816681233, abs=1e-12)     # ties: average ranks
    a, b = torch.randn(50, dtype=torch.float64), torch.randn(50, dtype=torch.float64)
    ref = float(torch.corrcoef(torch.stack([a, b]))[0, 1])
    assert stats.pearson(a, b) == pytest.approx(ref, abs=1e-12)
    assert math.isnan(stats.pearson([1, 2], [2, 1])) and math.isnan(stats.spearman([1, 1, 1], [1, 2, 3]))


def test_row_spearman():
    from scipy.stats import spearmanr

    a, b = torch.randn(6, 10, dtype=torch.float64), torch.randn(6, 10, dtype=torch.float64)
    a[5] = 2.0                                                 # a constant row has no ranking
    r = stats.row_spearman(a, b)
    for i in range(5):
        assert float(r[i]) == pytest.approx(spearmanr(a[i], b[i]).statistic, abs=1e-12)
    assert math.isnan(float(r[5]))


def test_top1_se():
    assert stats.top1_se({"top1": 50.0, "n_eval": 100}) == pytest.approx(5.0)
    assert math.isnan(stats.top1_se({"top1": 50.0, "n_eval": 0}))


def _write(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_problem_log_keeps_the_last_record_in_network_order(tmp_path):
    _write(tmp_path / PROBLEMS, [{"layer": "b", "step": 0, "v": 1}, {"layer": "b", "step": 1, "v": 2},
                                 {"layer": "a", "step": 0, "v": 3}, {"layer": "b", "step": 0, "v": 4}])
    assert [(r["layer"], r["step"], r["v"]) for r in read_problems(tmp_path / PROBLEMS)] == \
        [("b", 0, 4), ("b", 1, 2), ("a", 0, 3)]


def test_problem_log_resumes_only_when_it_covers_the_finished_layers(tmp_path):
    run = tmp_path / "run"
    _write(run / "records.jsonl", [{"layer": "blocks.0.qkv"}])
    _write(run / PROBLEMS, [{"layer": "blocks.0.qkv", "step": 0}, {"layer": "blocks.0.proj", "step": 0}])
    hook, fresh = open_log(run, lambda step, problem, result, S: {"d": 2}, wqer=True)
    assert not fresh and len(read_problems(run / PROBLEMS)) == 2
    hook("blocks.0.proj", 1, None, None, None)
    assert read_problems(run / PROBLEMS)[-1] == {"layer": "blocks.0.proj", "step": 1, "d": 2}
    _write(run / PROBLEMS, [{"layer": 0, "step": 0}])          # misses a finished layer: start afresh
    _, fresh = open_log(run, lambda *a: {}, wqer=True)
    assert fresh and not (run / PROBLEMS).exists()


def test_paired_difference_is_the_mean_difference_with_its_standard_error():
    a = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])
    b = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0])
    mean, se = stats.paired_difference(a, b)
    d = [1, 0, 0, 1, 0]
    sd = math.sqrt(sum((x - 0.4) ** 2 for x in d) / 4)
    assert mean == pytest.approx(0.4) and se == pytest.approx(sd / math.sqrt(5))
    assert stats.paired_difference(a, a) == (0.0, 0.0)
    assert math.isnan(stats.paired_difference([1.0], [0.0])[1])


def _segment(layer, step, objective, bound, optimal, solver="bnb", d=4):
    return {"layer": layer, "step": step, "rows": len(objective), "d": d, "solver": solver,
            "row_objective": objective, "row_bound": bound, "row_optimal": optimal,
            "claimed_optimal": sum(optimal)}


def test_rows_against_the_proven_optimum():
    from analysis.optimum import Rows, breakdown, compare

    exact = Rows.from_problems([_segment("a", 0, [1.0, 2.0, 3.0], [1.0, 2.0, 2.5], [True, True, False]),
                                _segment("embed", 0, [5.0], [None], [False], solver="nearest")], "bnb")
    assert exact.left_out == {"embed": 1} and len(exact.objective) == 3
    run = Rows.from_problems([_segment("a", 0, [1.0, 2.2, 3.3], [None, None, None], [False] * 3, "rr")], "rr")
    c = compare(run, exact)
    # rows 0 and 1 are proven (bound = objective); row 2 keeps bnb's certified bound 2.5
    assert c["rows_proven_by_exact"] == 2 and c["share_at_optimum"] == 0.5
    assert c["excess_over_optimum"] == pytest.approx(3.2 / 3.0 - 1)
    assert c["certified_gap"] == pytest.approx((6.5 - 5.5) / 6.5) and c["contradictions"] == 0
    assert c["share_claimed_optimal"] == 0
    own = compare(exact, exact)
    assert own["excess_over_optimum"] == 0 and own["share_at_optimum"] == 1
    assert own["certified_gap"] == pytest.approx(0.5 / 6.0) and own["share_claimed_optimal"] == pytest.approx(2 / 3)
    better = Rows.from_problems([_segment("a", 0, [0.9, 2.0, 3.0], [None] * 3, [False] * 3, "x")], "x")
    assert compare(better, exact)["contradictions"] == 1           # below a proven optimum: counted, not hidden
    by = breakdown(run, exact, "d")
    assert [b["d"] for b in by] == [4] and by[0]["rows"] == 3


def test_rows_must_face_the_same_subproblems():
    from analysis.optimum import Rows, check_aligned

    exact = Rows.from_problems([_segment("a", 0, [1.0], [1.0], [True])], "bnb")
    other = Rows.from_problems([_segment("a", 1, [1.0], [None], [False], "rr")], "rr")
    with pytest.raises(ValueError, match="not the same subproblems"):
        check_aligned(other, exact, "rr")
    with pytest.raises(ValueError, match="no per-row objectives"):
        Rows.from_problems([{"layer": "a", "step": 0, "rows": 1, "d": 1, "solver": "rr"}], "rr")


def test_sampled_solver_solves_the_first_rows_and_claims_nothing_elsewhere():
    from analysis.smoke_sample import NAME
    from roundlab.solvers import get_solver
    from roundlab.testing.synthetic import vit_like_problem

    problem = vit_like_problem(6, 8, N=64, seed=3)
    res = get_solver(NAME, solver="brute", options={}, row_limit=2)(problem)
    exact = get_solver("brute")(problem)
    assert torch.allclose(res.objective[:2], exact.objective[:2])
    assert [s.value for s in res.status[2:]] == ["heuristic"] * 4
    assert torch.equal(res.delta[2:], get_solver("greedy")(problem).delta[2:])
    wide = get_solver(NAME, solver="brute", row_limit=2, max_d=4)(problem)
    assert all(s.value == "heuristic" for s in wide.status)


def test_a_run_keeps_its_per_image_outcomes_checked_by_checksum(tmp_path):
    from analysis.runs import load_predictions
    from roundlab.pipeline.config import ERQConfig
    from roundlab.pipeline.run import run_erq

    cfg = ERQConfig.for_method("calib", model="fmnist-vit", calib_images=2, heldout_images=0, eval_images=40)
    r = run_erq(cfg, run_dir=tmp_path / "run", progress=False)
    r["run"] = "run"
    p = load_predictions(tmp_path, r)
    assert len(p["correct"]) == 40 and float(p["correct"].double().mean()) == r["quantized"]["top1"]
    assert float(p["kl"].mean()) == pytest.approx(r["quantized"]["kl"], rel=1e-12)
    torch.save({**p, "correct": ~p["correct"]}, tmp_path / "run" / "predictions.pt")     # edited afterwards
    assert load_predictions(tmp_path, r) is None


def test_row_times_per_width_come_from_the_results_store(tmp_path):
    from analysis.row_times import timing_by_width
    from roundlab.fanout import FannedSolver, ResultStore
    from roundlab.solvers import get_solver
    from roundlab.testing.synthetic import vit_like_problem

    with ResultStore(tmp_path / "subproblems.sqlite") as store:
        for d in (8, 16):
            FannedSolver(get_solver("bnb", warm_start="greedy"), store=store, chunk_rows=2)(vit_like_problem(4, d))
    t = timing_by_width(tmp_path)
    assert sorted(t) == [8, 16]
    for v in t.values():
        assert 0 < v["median_row_s"] <= v["p90_row_s"] <= v["max_row_s"] and v["nodes_per_s"] > 0
    assert timing_by_width(tmp_path / "none") == {}


@pytest.mark.parametrize("flag", ["--workers", "--chunk-rows", "--exact-chunk-rows"])
@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_table1_counts_must_be_positive_integers(flag, value, capsys):
    from analysis.table1_solvers import parse_settings

    with pytest.raises(SystemExit):
        parse_settings([flag, value])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert flag in err and "positive integer" in err
    assert positive_int("4") == 4
