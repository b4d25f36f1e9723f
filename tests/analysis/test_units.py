"""The analysis' small pieces: options, statistics, the problem log."""

import json
import math

import pytest
import torch

from analysis import stats
from analysis.options import SMOKE, parse
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
