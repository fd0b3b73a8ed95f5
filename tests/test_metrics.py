"""Per-epoch measurements, checked against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from jobs.engine.metrics import (
    calibration,
    calibration_error,
    confidence,
    expected_calibration_error,
    margin,
    nll,
    one_vs_rest_bins,
    top_label_bins,
)
from jobs.nn.losses import per_sample_loss


def test_confidence_is_the_cosine_to_the_closest_template():
    templates = torch.eye(2)
    outputs = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    # sample 1: cos to (1,0) = 0.6, to (0,1) = 0.8 -> 0.8; sample 2: 1.0
    assert confidence(outputs, templates).item() == pytest.approx(0.9)


def test_margin_is_top1_minus_top2():
    outputs = torch.tensor([[0.7, 0.2, 0.1], [0.4, 0.5, 0.1]])
    assert margin(outputs).item() == pytest.approx(((0.7 - 0.2) + (0.5 - 0.4)) / 2)


def test_margin_of_a_tie_at_the_top_is_zero_and_members_come_at_once():
    outputs = torch.tensor([[[0.4, 0.4, 0.2]], [[0.1, 0.3, 0.6]]])  # [members, samples, K]
    assert margin(outputs).tolist() == pytest.approx([0.0, 0.3])


def test_ece_by_hand():
    probs = torch.tensor([[0.95, 0.05], [0.85, 0.15], [0.35, 0.65], [0.55, 0.45]])
    labels = torch.tensor([0, 1, 1, 0])
    # bins: 0.95 -> (0.9,1] correct; 0.85 -> (0.8,0.9] wrong; 0.65 -> (0.6,0.7] correct;
    # 0.55 -> (0.5,0.6] correct. ECE = (|1-.95| + |0-.85| + |1-.65| + |1-.55|) / 4
    expected = (0.05 + 0.85 + 0.35 + 0.45) / 4
    assert expected_calibration_error(probs, labels).item() == pytest.approx(expected)


def test_a_confidence_of_one_lands_in_the_last_bin():
    probs = torch.tensor([[1.0, 0.0]])
    assert expected_calibration_error(probs, torch.tensor([0])).item() == pytest.approx(0.0)


def test_reliability_bins_by_hand():
    probs = torch.tensor([[0.95, 0.05], [0.85, 0.15], [0.35, 0.65], [0.55, 0.45], [0.58, 0.42]])
    labels = torch.tensor([0, 1, 1, 0, 1])
    bins = top_label_bins(probs, labels)
    assert bins.shape == (10, 3)
    # (0.5,0.6]: 0.55 right, 0.58 wrong; (0.6,0.7]: 0.65 right; (0.8,0.9]: 0.85 wrong;
    # (0.9,1]: 0.95 right; the other bins are empty: [0, 0, 0]
    expected = torch.zeros(10, 3)
    expected[5] = torch.tensor([2, (0.55 + 0.58) / 2, 0.5])
    expected[6] = torch.tensor([1, 0.65, 1.0])
    expected[8] = torch.tensor([1, 0.85, 0.0])
    expected[9] = torch.tensor([1, 0.95, 1.0])
    assert torch.allclose(bins, expected)
    from_bins = sum(n / 5 * abs(acc - conf) for n, conf, acc in expected.tolist())
    assert calibration_error(bins).item() == pytest.approx(from_bins)
    assert expected_calibration_error(probs, labels).item() == pytest.approx(from_bins)


def test_one_vs_rest_bins_take_every_probability_against_its_class():
    probs = torch.tensor([[0.95, 0.25], [0.15, 0.75]])
    labels = torch.tensor([0, 0])
    bins = one_vs_rest_bins(probs, labels)
    # pairs (p, 1[y = k]): (0.95, 1), (0.25, 0), (0.15, 1), (0.75, 0)
    expected = torch.zeros(10, 3)
    expected[1] = torch.tensor([1, 0.15, 1.0])
    expected[2] = torch.tensor([1, 0.25, 0.0])
    expected[7] = torch.tensor([1, 0.75, 0.0])
    expected[9] = torch.tensor([1, 0.95, 1.0])
    assert torch.allclose(bins, expected)
    assert calibration_error(bins).item() == pytest.approx((0.05 + 0.25 + 0.85 + 0.75) / 4)


def test_calibration_bins_members_at_once_and_none_without_probabilities():
    logits = torch.randn(3, 20, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(20) % 4
    for output, activation in (("softmax", lambda x: x.softmax(-1)), ("sigmoid", torch.sigmoid)):
        stacked = calibration(logits, activation(logits), labels.expand(3, -1), output)
        assert stacked.bins is not None and stacked.bins.shape == (3, 10, 3)
        for member in range(3):
            alone = calibration(logits[member], activation(logits[member]), labels, output)
            assert torch.allclose(stacked.bins[member], alone.bins, atol=1e-6)
            assert stacked.ece[member].item() == pytest.approx(alone.ece.item(), abs=1e-6)
        assert torch.allclose(stacked.ece, calibration_error(stacked.bins))
    assert calibration(logits, torch.tanh(logits), labels.expand(3, -1), "tanh").bins is None


def test_nll():
    probs = torch.tensor([[0.5, 0.5], [0.25, 0.75]])
    assert nll(probs, torch.tensor([0, 1])).item() == pytest.approx(
        -(math.log(0.5) + math.log(0.75)) / 2)


def test_cross_entropy_on_onehot_targets_equals_torchs():
    logits = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(8) % 5
    ours = per_sample_loss("ce", logits, torch.softmax(logits, 1), torch.eye(5)[labels], "softmax")
    assert torch.allclose(ours.mean(), torch.nn.functional.cross_entropy(logits, labels))


def test_cross_entropy_takes_class_indices_and_any_leading_member_dimensions():
    logits = torch.randn(3, 8, 5, generator=torch.Generator().manual_seed(3))
    labels = torch.arange(24).view(3, 8) % 5
    ours = per_sample_loss("ce", logits, logits.softmax(-1), labels, "softmax")
    assert ours.shape == (3, 8)
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 5), labels.reshape(-1),
                                                 reduction="none").view(3, 8)
    assert torch.allclose(ours, expected, atol=1e-6)


def test_bce_from_sigmoid_logits_equals_torchs_bce_on_probabilities():
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    targets = torch.rand(4, 3, generator=torch.Generator().manual_seed(2))
    outputs = torch.sigmoid(logits)
    ours = per_sample_loss("bce", logits, outputs, targets, "sigmoid").mean()
    assert torch.allclose(ours, torch.nn.functional.binary_cross_entropy(outputs, targets))
    ours_softmax_path = per_sample_loss("bce", logits, outputs, targets, "softmax").mean()
    assert torch.allclose(ours_softmax_path, ours, atol=1e-6)
