"""Every analysis script's smoke mode runs and writes a PNG and a CSV with the expected columns and sane values."""

import csv
import math

import pytest

pytest.importorskip("matplotlib")


def _read(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _num(x):
    return float(x) if x not in ("", None) else math.nan


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis")
    return ["--smoke", "--out", str(root / "figures"), "--runs", str(root / "runs")], root / "figures"


def _run(name, dirs, *extra):
    import importlib

    args, out = dirs
    importlib.import_module(f"analysis.{name}").main(args + list(extra))
    return out


def _check_ablation(rows, n):
    assert len(rows) == n
    for r in rows:
        assert 0 < _num(r["top1"]) <= 100 and 0 < _num(r["agreement"]) <= 100
        assert _num(r["kl"]) >= 0 and _num(r["quant_time_s"]) > 0


def test_fig5_9(dirs):
    out = _run("fig5_9_error_reduction", dirs)
    for name in ("fig5_aqer", "fig6_rounding", "fig7_ridge", "fig8_wqer", "fig9_erq"):
        assert (out / f"{name}.png").stat().st_size > 10_000
    rows = _read(out / "fig5_9_error_reduction.csv")
    assert {"layer", "aqer", "rounding", "ridge", "wqer", "erq", "erq_heldout"} <= set(rows[0])
    assert len(rows) == 26                     # fmnist-vit: patch embed, 6 blocks × 4, head
    erq = [_num(r["erq"]) for r in rows]
    assert all(v <= 1 for v in erq) and sum(erq) / len(erq) > 0     # ERQ reduces the error on average
    assert all(_num(r["wqer"]) >= -0.01 for r in rows)               # Wqer does not raise the calibration error


def test_table4(dirs):
    out = _run("table4_components", dirs)
    assert (out / "table4_components.png").exists()
    rows = _read(out / "table4_components.csv")
    _check_ablation(rows, 8)
    assert rows[0]["label"] == "baseline" and _num(rows[0]["delta_top1"]) == 0


def test_table5_fig4_table7(dirs):
    out = _run("table5_k", dirs)
    rows = _read(out / "table5_k.csv")
    _check_ablation(rows, 3)
    assert [int(r["k"]) for r in rows] == [0, 1, 2]
    out = _run("fig4_lambda", dirs)
    _check_ablation(_read(out / "fig4_lambda.csv"), 2)
    out = _run("table7_images", dirs)
    rows = _read(out / "table7_images.csv")
    _check_ablation(rows, 2)
    assert [int(r["images"]) for r in rows] == [2, 4]
    for name in ("table5_k", "fig4_lambda", "table7_images"):
        assert (out / f"{name}.png").exists()


def test_fig3(dirs):
    out = _run("fig3_proxy_fidelity", dirs)
    assert (out / "fig3_proxy_fidelity.png").exists()
    rows = {r["regime"]: r for r in _read(out / "fig3_proxy_fidelity.csv")}
    ident = rows["in-sample, biased cov (1/N)"]
    assert abs(_num(ident["ratio_min"]) - 1) < 1e-5 and abs(_num(ident["ratio_max"]) - 1) < 1e-5
    assert _num(ident["max_rel_M_mismatch"]) < 1e-9          # rebuilt samples give the pipeline's M exactly
    unb = rows["in-sample, unbiased cov (1/(N−1))"]
    n = int(unb["N_min"])
    # the CSV keeps 6 significant digits
    assert 1 - 1e-5 <= _num(unb["ratio_min"]) and _num(unb["ratio_max"]) <= n / (n - 1) + 1e-5
    for r in rows.values():
        p = _num(r["pearson"])
        assert math.isnan(p) or -1 - 1e-9 <= p <= 1 + 1e-9
    assert len(_read(out / "fig3_proxy_fidelity_points.csv")) > 100
    down = rows["downstream: logits KL(FP‖Q)"]
    assert int(down["layers"]) == 2 and int(down["candidates_per_segment"]) == 10     # smoke: 2 layers
    assert int(down["points"]) == 10 * int(down["downstream_segments"]) > 0


def test_table1(dirs):
    out = _run("table1_solvers", dirs)
    assert (out / "table1_solvers.png").exists() and (out / "table1_exact.png").exists()
    rows = _read(out / "table1_solvers.csv")
    assert [r["solver"] for r in rows] == ["-"] + ["analysis-sample"] * 3 + ["rr", "rr", "adaround", "greedy",
                                                                              "tabu", "gptq"]
    runs = out.parent / "runs"
    for r in rows:                             # runs named relative to the run cache
        assert not r["run"].startswith("/") and (runs / r["run"] / "result.json").exists()
    exact = rows[1]
    assert _num(exact["share_at_optimum"]) == 1 and _num(exact["excess_over_optimum"]) == 0
    assert _num(exact["exact_minus_top1"]) == 0 and _num(exact["exact_minus_kl_se"]) == 0
    n = int(exact["subproblems"])
    assert n == 25350 - 320                    # fmnist-vit: every row a solver decides (not the patch embedding's)
    for r in rows[1:]:
        assert int(r["subproblems"]) == n and int(r["contradictions"]) == 0
        for k in ("share_claimed_optimal", "share_at_optimum", "certified_gap"):
            assert 0 <= _num(r[k]) <= 1, (r["method"], k)
        assert _num(r["excess_over_optimum"]) >= 0
        assert _num(r["lower_bound_sum"]) <= _num(r["wqer_objective"]) * (1 + 1e-9)
        assert _num(r["exact_minus_top1_se"]) >= 0
    assert _num(exact["share_claimed_optimal"]) > 0.02            # smoke: bnb on 2 rows of each segment
    assert _num(rows[6]["excess_over_optimum"]) > _num(rows[8]["excess_over_optimum"])     # AdaRound vs tabu
    widths = _read(out / "table1_excess_by_width.csv")
    assert sorted({int(w["d"]) for w in widths}) == [1, 2, 4, 8, 16, 32, 64, 128]
    assert len(_read(out / "table1_excess_by_layer.csv")) == 9 * 25            # 26 layers less the patch embedding