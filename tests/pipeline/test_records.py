"""Eq. 4 records: the output error against a hand computation, ratios, the report."""

import torch

from roundlab.pipeline.records import RecordWriter, format_report, lowered_share, output_error, reduction_ratios


def test_output_error_matches_hand_computation():
    g = torch.Generator().manual_seed(0)
    X, Xbar = torch.randn(50, 4, generator=g), torch.randn(50, 4, generator=g)
    W0, W = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    b0, b = torch.randn(3, generator=g), torch.randn(3, generator=g)
    X, Xbar, W0, W, b0, b = (t.double() for t in (X, Xbar, W0, W, b0, b))
    by_hand = sum(float(((W0 @ X[n] + b0) - (W @ Xbar[n] + b)).pow(2).sum()) for n in range(50)) / 50
    assert abs(output_error(W0, b0, X, W, b, Xbar, chunk=7) - by_hand) < 1e-9 * by_hand


def test_ratios_and_report(tmp_path):
    recs = [{"layer": "a", "kind": "qkv", "errors": {"act_only": 2.0, "aqer": 1.0, "calib": 4.0, "final": 3.0},
             "errors_heldout": {"act_only": 2.0, "aqer": 3.0}},
            {"layer": "b", "kind": "fc2", "errors": {"act_only": 1.0, "aqer": 1.5, "calib": 2.0, "final": 1.0}}]
    for r in recs:
        r["ratios"] = reduction_ratios(r["errors"])
    assert recs[0]["ratios"] == {"aqer": 0.5, "erq": 0.25}
    assert lowered_share(recs, "act_only", "aqer") == (1, 2)
    assert lowered_share(recs, "act_only", "aqer", "errors_heldout") == (0, 1)
    text = format_report(recs)
    assert "lowers the Eq. 4 error on 1/2 layers (calibration images), 0/1 (held-out images)" in text
    w = RecordWriter(tmp_path / "r.jsonl")
    for r in recs:
        w.append(r)
    with open(w.path, "a") as f:
        f.write('{"torn": ')                      # a crash mid-line loses nothing before it
    assert [r["layer"] for r in w.read()] == ["a", "b"]
