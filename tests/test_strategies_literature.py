"""OLS, PS-KD, SAT and bootstrapping against their papers' formulas (RESEARCH.md sec. 3)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from jobs.nn.losses import per_sample_loss, reduce_loss
from jobs.spec import JobSpec, SpecError
from tests.strategy_context import context, ready

# -- OLS ----------------------------------------------------------------------------------------

# label 0 twice predicted right, label 1 predicted as 0 (wrong), label 2 right
OLS_OUTPUTS = torch.tensor([[0.7, 0.2, 0.1], [0.5, 0.3, 0.2], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7]])
OLS_LABELS = torch.tensor([0, 0, 1, 2])


def test_ols_starts_uniform_and_then_uses_last_epochs_correct_predictions():
    strategy = ready("ols(alpha=0.5)", context(3))
    first = strategy.targets(torch.tensor([1]), torch.tensor([0]), epoch=1)
    assert first[0].tolist() == pytest.approx([0.5 / 3, 0.5 + 0.5 / 3, 0.5 / 3])
    strategy.observe(OLS_OUTPUTS[:2], OLS_LABELS[:2], torch.arange(2), epoch=1)  # two batches
    strategy.observe(OLS_OUTPUTS[2:], OLS_LABELS[2:], torch.arange(2, 4), epoch=1)
    assert strategy.targets(torch.tensor([1]), torch.tensor([0]), 1)[0].tolist() == \
        pytest.approx(first[0].tolist())  # S changes only at the end of the epoch
    strategy.end_epoch(1)
    soft = strategy.one.soft[0]
    assert soft[0].tolist() == pytest.approx([0.6, 0.25, 0.15])  # mean of the two correct ones
    assert soft[1].tolist() == pytest.approx([1 / 3] * 3)  # no correct sample: uniform
    assert soft[2].tolist() == pytest.approx([0.1, 0.2, 0.7])
    targets = strategy.targets(OLS_LABELS, torch.arange(4), epoch=2)
    assert targets[0].tolist() == pytest.approx([0.8, 0.125, 0.075])
    assert strategy.values().target_matrix[2] == pytest.approx([0.05, 0.1, 0.85])
    strategy.end_epoch(2)  # an epoch with no correct predictions at all: every row uniform
    assert strategy.one.soft[0].tolist() == [[pytest.approx(1 / 3)] * 3] * 3


def test_ols_loss_is_alpha_ce_of_the_label_plus_one_minus_alpha_ce_of_the_soft_row():
    strategy = ready("ols(alpha=0.3)", context(3))
    strategy.observe(OLS_OUTPUTS, OLS_LABELS, torch.arange(4), epoch=1)
    strategy.end_epoch(1)
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    targets = strategy.targets(OLS_LABELS, torch.arange(4), epoch=2)
    ours = per_sample_loss("ce", logits, logits.softmax(1), targets, "softmax")
    log_p = logits.log_softmax(1)
    paper = (0.3 * F.cross_entropy(logits, OLS_LABELS, reduction="none")
             + 0.7 * -(strategy.one.soft[0][OLS_LABELS] * log_p).sum(1))
    assert torch.allclose(ours, paper, atol=1e-6)


# -- PS-KD --------------------------------------------------------------------------------------

def test_pskd_alpha_grows_linearly_to_alpha_T_in_the_last_epoch():
    strategy = ready("pskd(alpha_T=0.8)", context(3, epochs=4))
    alphas = [float(strategy.one.alpha(epoch)) for epoch in (1, 2, 3, 4)]
    assert alphas == pytest.approx([0.2, 0.4, 0.6, 0.8])
    # the source: alpha_T * (epoch + 1) / E with 0-based epochs
    assert [float(strategy.one.alpha(e + 1)) for e in range(4)] == pytest.approx(
        [0.8 * (e + 1) / 4 for e in range(4)])


def test_pskd_mixes_the_label_with_each_samples_prediction_from_the_previous_epoch():
    strategy = ready("pskd(alpha_T=0.8)", context(3, labels=[0, 1, 2, 0], epochs=4))
    indices = torch.tensor([3, 1])
    labels = torch.tensor([0, 1])
    assert strategy.targets(labels, indices, epoch=1).tolist() == [[1, 0, 0], [0, 1, 0]]
    predictions = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]])
    strategy.observe(predictions, labels, indices, epoch=1)
    targets = strategy.targets(labels, indices, epoch=2)  # alpha = 0.4
    assert targets[0].tolist() == pytest.approx([0.6 + 0.2, 0.12, 0.08])
    assert targets[1].tolist() == pytest.approx([0.04, 0.6 + 0.24, 0.12])
    untouched = strategy.targets(torch.tensor([0]), torch.tensor([0]), epoch=2)
    assert untouched.tolist() == [[1, 0, 0]]  # memory is per sample, not per batch position


# -- SAT ----------------------------------------------------------------------------------------

def test_sat_is_plain_one_hot_until_its_start_epoch():
    strategy = ready("sat(m=0.9, start_epoch=2)", context(3, epochs=4))
    outputs = torch.tensor([[0.2, 0.5, 0.3]])
    for epoch in (1, 2):
        targets = strategy.batch_targets(outputs, torch.tensor([0]), torch.tensor([0]), epoch)
        assert targets.tolist() == [[1, 0, 0]]
        assert strategy.sample_weights(torch.tensor([0]), torch.tensor([0]), epoch).tolist() == [1]
    assert strategy.one.memory[0][0].tolist() == [1, 0, 0]


def test_sat_moves_each_samples_target_towards_its_prediction_and_weights_its_loss():
    strategy = ready("sat(m=0.9, start_epoch=1)", context(3, labels=[0, 1, 2], epochs=4))
    outputs = torch.tensor([[0.2, 0.5, 0.3], [0.1, 0.8, 0.1]], requires_grad=True)
    labels, indices = torch.tensor([0, 1]), torch.tensor([0, 1])
    targets = strategy.batch_targets(outputs, labels, indices, epoch=2)
    assert not targets.requires_grad  # the running target is data, not part of the graph
    assert targets[0].tolist() == pytest.approx([0.92, 0.05, 0.03])
    assert targets[1].tolist() == pytest.approx([0.01, 0.98, 0.01])
    weights = strategy.sample_weights(labels, indices, epoch=2)
    assert weights.tolist() == pytest.approx([0.92, 0.98])
    again = strategy.batch_targets(outputs.detach(), labels, indices, epoch=3)
    assert again[0].tolist() == pytest.approx([0.9 * 0.92 + 0.02, 0.9 * 0.05 + 0.05,
                                               0.9 * 0.03 + 0.03])
    # the source: weights *= B / sum(weights); loss = mean(loss * weights)
    values = torch.tensor([1.0, 3.0])
    source = (values * weights * 2 / weights.sum()).mean()
    assert reduce_loss(values, weights).item() == pytest.approx(source.item())


def test_sat_refuses_a_start_epoch_the_job_never_passes():
    with pytest.raises(SpecError) as info:
        JobSpec.from_dict({"strategy": "sat(start_epoch=5)", "epochs": 5})
    assert str(info.value) == ("strategy sat(m=0.9, start_epoch=5) adapts only after epoch 5, "
                               "but the job trains 5 epochs; use start_epoch < epochs")


# -- bootstrapping ------------------------------------------------------------------------------

def test_soft_bootstrap_is_beta_ce_plus_the_predictions_entropy():
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(2), requires_grad=True)
    labels = torch.tensor([0, 1, 2, 0, 1])
    strategy = ready("bootstrap_soft(beta=0.95)", context(3))
    p = logits.softmax(1)
    targets = strategy.batch_targets(p, labels, torch.arange(5), epoch=1)
    assert torch.allclose(targets, 0.95 * F.one_hot(labels, 3) + 0.05 * p)
    ours = per_sample_loss("ce", logits, p, targets, "softmax").mean()
    reed = (0.95 * F.cross_entropy(logits, labels, reduction="none")
            - 0.05 * (p * p.log()).sum(1)).mean()
    assert ours.item() == pytest.approx(reed.item(), abs=1e-6)
    ours_grad, = torch.autograd.grad(ours, logits, retain_graph=True)
    reed_grad, = torch.autograd.grad(reed, logits)
    assert torch.allclose(ours_grad, reed_grad, atol=1e-6)


def test_hard_bootstrap_mixes_the_label_with_the_predicted_class():
    strategy = ready("bootstrap_hard(beta=0.8)", context(3))
    outputs = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
    targets = strategy.batch_targets(outputs, torch.tensor([0, 0]), torch.arange(2), epoch=1)
    assert torch.allclose(targets, torch.tensor([[0.8, 0.2, 0.0], [1.0, 0.0, 0.0]]))


@pytest.mark.parametrize("name", ["ols", "pskd", "sat(start_epoch=1)", "bootstrap_soft",
                                  "bootstrap_hard"])
def test_strategies_built_on_softmax_predictions_need_a_softmax_output(name):
    with pytest.raises(SpecError) as info:
        JobSpec.from_dict({"strategy": name, "output": "sigmoid", "loss": "bce"})
    assert str(info.value) == (f"strategy {name.split('(')[0]} mixes labels with softmax "
                               "predictions and needs output=softmax; got output=sigmoid")
