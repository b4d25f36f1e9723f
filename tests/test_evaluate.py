"""Metrics against hand-computed values, and evaluate()/fp_logits() over the kinds of data they accept."""

import math

import pytest
import torch

from roundlab.errors import RoundlabError
from roundlab.evaluate import (agreement, evaluate, fp_logits, kl_divergence, metrics_from_logits, topk_accuracy,
                               topk_correct)


def test_top1_top5_by_hand():
    logits = torch.tensor([[0.0, 9, 8, 7, 6, 5, 4, 3, 2, 1],     # ranks: 1,2,3,4,5,6,...
                           [9.0, 8, 7, 6, 5, 4, 3, 2, 1, 0],
                           [0.0, 1, 2, 3, 4, 5, 6, 7, 8, 9]])
    labels = torch.tensor([1, 5, 0])
    # row 0: label 1 is top-1; row 1: label 5 is 6th (not top-5); row 2: label 0 is last
    assert topk_correct(logits, labels, 1) == 1 and topk_correct(logits, labels, 5) == 1
    labels = torch.tensor([5, 4, 5])     # row 0: 5 is 5th → in top-5; row 1: 4 is 5th; row 2: 5 is 5th
    assert topk_correct(logits, labels, 1) == 0 and topk_correct(logits, labels, 5) == 3
    m = metrics_from_logits(logits, labels)
    assert m["top1"] == 0 and m["top5"] == 1 and m["n"] == 3 and m["agreement"] is None and m["kl"] is None


def test_top5_absent_for_five_classes_or_fewer():
    m = metrics_from_logits(torch.tensor([[1.0, 0, 0, 0, 0], [0.0, 2, 0, 0, 0]]), torch.tensor([0, 0]))
    assert m["top1"] == 0.5 and m["top5"] is None and "correct_top5" not in m
    assert topk_accuracy(torch.eye(3), torch.tensor([0, 1, 0]), k=1) == pytest.approx(2 / 3)


def test_agreement_by_hand():
    q = torch.tensor([[1.0, 2, 3], [3.0, 2, 1], [0.0, 5, 1], [1.0, 0, 0]])
    r = torch.tensor([[0.0, 0, 1], [0.0, 1, 0], [0.0, 5, 4], [0.0, 0, 9]])
    assert agreement(q, r) == 0.5          # rows 0 and 2 agree
    assert agreement(r, r) == 1.0


def test_kl_by_hand():
    p_logits = torch.tensor([[0.0, 0.0]], dtype=torch.float64)                 # p = (1/2, 1/2)
    q_logits = torch.tensor([[math.log(3.0), 0.0]], dtype=torch.float64)       # q = (3/4, 1/4)
    expect = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert kl_divergence(p_logits, q_logits) == pytest.approx(expect, rel=1e-12)
    reverse = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert kl_divergence(q_logits, p_logits) == pytest.approx(reverse, rel=1e-12)   # KL(reference ‖ model)
    assert expect != pytest.approx(reverse)


def test_kl_of_identical_logits_is_zero_and_shift_invariant():
    torch.manual_seed(0)
    x = torch.randn(50, 10) * 5
    assert kl_divergence(x, x) == 0.0
    assert kl_divergence(x, x + 3.0) == pytest.approx(0.0, abs=1e-12)
    assert kl_divergence(x, torch.randn(50, 10)) > 0


def test_kl_mean_over_rows():
    a = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    one = kl_divergence(a[:1], b[:1])
    assert kl_divergence(a, b) == pytest.approx(one / 2)


def test_shape_mismatch_is_an_error():
    with pytest.raises(RoundlabError, match="same images"):
        agreement(torch.zeros(3, 4), torch.zeros(2, 4))
    with pytest.raises(RoundlabError):
        metrics_from_logits(torch.zeros(3, 4), torch.zeros(2, dtype=torch.long))


class _Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(4, 7)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_evaluate_on_tensors_loader_and_dataset():
    model = _Toy()
    x = torch.randn(23, 1, 2, 2)
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(-1)
    y[:5] = (y[:5] + 1) % 7                     # 5 of 23 wrong at top-1
    ref = fp_logits(model, (x, y), batch_size=4)
    torch.testing.assert_close(ref, logits)
    m = evaluate(model, (x, y), reference_logits=ref, batch_size=4)
    assert m["top1"] == pytest.approx(18 / 23) and m["correct_top1"] == 18 and m["n"] == 23
    assert m["top5"] == pytest.approx(topk_accuracy(logits, y, 5))
    assert m["agreement"] == 1.0 and m["kl"] == pytest.approx(0.0, abs=1e-12)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=5)
    assert evaluate(model, loader)["correct_top1"] == 18

    class DS:
        def batches(self, batch_size):
            yield x[:10], y[:10]
            yield x[10:], y[10:]

    noisy = _Toy()
    with torch.no_grad():
        noisy.fc.weight.add_(0.5 * torch.randn_like(noisy.fc.weight))
    m2 = evaluate(noisy, DS(), reference_logits=ref, return_logits=True)
    assert m2["kl"] > 0 and m2["agreement"] == agreement(m2["logits"], ref)
    assert model.training  # evaluate restores the mode it found


def test_evaluate_errors():
    model = _Toy()
    with pytest.raises(RoundlabError, match="empty"):
        evaluate(model, (torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)))
    with torch.no_grad():
        model.fc.bias[0] = float("nan")
    with pytest.raises(RoundlabError, match="non-finite"):
        evaluate(model, (torch.zeros(3, 4), torch.zeros(3, dtype=torch.long)))
    with pytest.raises(RoundlabError, match="cannot evaluate"):
        evaluate(model, 42)


def test_per_image_outcomes_average_to_the_metrics():
    from roundlab.evaluate import kl_divergence, metrics_from_logits, per_image

    g = torch.Generator().manual_seed(0)
    ref = torch.randn(50, 10, generator=g)
    logits = ref + 0.8 * torch.randn(50, 10, generator=g)
    labels = torch.randint(0, 10, (50,), generator=g)
    p = per_image(logits, labels, ref)
    m = metrics_from_logits(logits, labels, ref)
    assert p["correct"].dtype == torch.bool and len(p["kl"]) == 50
    assert float(p["correct"].double().mean()) == m["top1"] and float(p["agree"].double().mean()) == m["agreement"]
    assert float(p["kl"].mean()) == kl_divergence(ref, logits) and bool((p["kl"] >= -1e-12).all())
    assert "kl" not in per_image(logits, labels)
