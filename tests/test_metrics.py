"""Per-epoch measurements, checked against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from jobs.losses import per_sample_loss
from jobs.metrics import confidence, expected_calibration_error, margin, nll


def test_confidence_is_the_cosine_to_the_closest_template():
    templates = torch.eye(2)
    outputs = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    # sample 1: cos to (1,0) = 0.6, to (0,1) = 0.8 -> 0.8; sample 2: 1.0
    assert confidence(outputs, templates).item() == pytest.approx(0.9)


def test_margin_is_top1_minus_top2():
    outputs = torch.tensor([[0.7, 0.2, 0.1], [0.4, 0.5, 0.1]])
    assert margin(outputs).item() == pytest.approx(((0.7 - 0.2) + (0.5 - 0.4)) / 2)


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


def test_nll():
    probs = torch.tensor([[0.5, 0.5], [0.25, 0.75]])
    assert nll(probs, torch.tensor([0, 1])).item() == pytest.approx(
        -(math.log(0.5) + math.log(0.75)) / 2)


def test_cross_entropy_on_onehot_targets_equals_torchs():
    logits = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(8) % 5
    ours = per_sample_loss("ce", logits, torch.softmax(logits, 1), torch.eye(5)[labels], "softmax")
    assert torch.allclose(ours.mean(), torch.nn.functional.cross_entropy(logits, labels))


def test_bce_from_sigmoid_logits_equals_torchs_bce_on_probabilities():
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    targets = torch.rand(4, 3, generator=torch.Generator().manual_seed(2))
    outputs = torch.sigmoid(logits)
    ours = per_sample_loss("bce", logits, outputs, targets, "sigmoid").mean()
    assert torch.allclose(ours, torch.nn.functional.binary_cross_entropy(outputs, targets))
    ours_softmax_path = per_sample_loss("bce", logits, outputs, targets, "softmax").mean()
    assert torch.allclose(ours_softmax_path, ours, atol=1e-6)
