"""The TVO family against the study (RESEARCH.md sec. 1): statistics, inits, adaptations, rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jobs.spec import JobSpec, SpecError
from jobs.strategies.tvo_values import (
    OutputStatistics,
    PairMoments,
    d_max,
    eps_min,
    min_max_remap,
    nudge,
    scale_by_largest,
    sigma,
    sigma_half,
)
from tests.strategy_context import context, ready


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def moments(spread: list[float], seen: list[bool] | None = None) -> PairMoments:
    """Moments whose s (class std + non-class std) is `spread`, split evenly."""
    half = t(spread) / 2
    zeros = torch.zeros_like(half)
    return PairMoments(zeros, half, zeros, half,
                       torch.tensor(seen if seen is not None else [True] * len(spread)))


# -- statistics ---------------------------------------------------------------------------------

def test_pair_statistics_match_numpy_in_both_layouts():
    generator = torch.Generator().manual_seed(0)
    outputs = torch.softmax(torch.randn(200, 4, generator=generator), 1)
    labels = torch.randint(0, 4, (200,), generator=generator)
    stats = OutputStatistics(4, torch.device("cpu"))
    stats.add(outputs[:120], labels[:120])  # in two batches, as over an epoch
    stats.add(outputs[120:], labels[120:])
    p, y = outputs.double().numpy(), labels.numpy()
    by_class, by_position = stats.moments("class"), stats.moments("position")
    for j in range(4):
        own = p[y == j, j]
        others_on_class_j = np.delete(p[y == j], j, axis=1).ravel()  # the study's extract_vals
        neuron_j_elsewhere = p[y != j, j]
        assert by_class.class_mean[j].item() == pytest.approx(own.mean(), abs=1e-12)
        assert by_class.class_std[j].item() == pytest.approx(np.std(own), abs=1e-12)
        assert by_class.nonclass_mean[j].item() == pytest.approx(others_on_class_j.mean(),
                                                                 abs=1e-12)
        assert by_class.nonclass_std[j].item() == pytest.approx(np.std(others_on_class_j),
                                                                abs=1e-12)
        assert by_position.class_std[j].item() == pytest.approx(np.std(own), abs=1e-12)
        assert by_position.nonclass_mean[j].item() == pytest.approx(neuron_j_elsewhere.mean(),
                                                                    abs=1e-12)
        assert by_position.nonclass_std[j].item() == pytest.approx(np.std(neuron_j_elsewhere),
                                                                   abs=1e-12)


def test_the_studys_spread_on_a_hand_computed_batch():
    stats = OutputStatistics(2, torch.device("cpu"))
    stats.add(torch.tensor([[0.6, 0.4], [0.4, 0.6], [0.3, 0.7]]), torch.tensor([0, 0, 1]))
    m = stats.moments("class")
    # class 0: own outputs 0.6, 0.4 (std 0.1), others 0.4, 0.6 (std 0.1): s = 0.2
    assert m.spread.tolist() == pytest.approx([0.2, 0.0])
    assert m.seen.tolist() == [True, True]


# -- sigma, branch by branch (s = 0.2 unless said) ----------------------------------------------

@pytest.mark.parametrize("c, nc, m, expected", [
    (0.9, 0.1, 1.0, (0.9, 0.1)),       # |c - nc| >= s m: unchanged
    (0.75, 0.5, 1.0, (0.75, 0.5)),     # |c - nc| = 0.25 = s m (s = 0.25 below): unchanged
    (0.5, 0.4, 1.0, (0.5, 0.2)),       # nc <= c: nc = max(0, nc - s)
    (0.3, 0.15, 1.0, (0.2, 0.0)),      # nc <= c, nc clamps at 0 (< 1e-4): c = s m
    (0.4, 0.5, 1.0, (0.4, 0.7)),       # nc > c: nc = min(1, nc + s)
    (0.85, 0.9, 1.0, (0.8, 1.0)),      # nc > c, nc clamps at 1 (> 0.999): c = 1 - s m
    (0.5, 0.45, 0.5, (0.5, 0.125)),    # m scales threshold and new value: (0.45 - 0.2) * 0.5
    (0.5, 0.55, 0.5, (0.5, 0.375)),    # (0.55 + 0.2) * 0.5 (the study's multiplier "bug")
    (0.3, 0.3, 1.0, (0.3, 0.1)),       # c = nc counts as nc <= c: pushed down
])
def test_sigma_follows_the_study_branch_by_branch(c, nc, m, expected):
    spread = 0.25 if (c, nc) == (0.75, 0.5) else 0.2
    new_c, new_nc = sigma(t([c]), t([nc]), moments([spread]), m)
    assert (new_c.item(), new_nc.item()) == pytest.approx(expected, abs=1e-12)


def test_sigma_leaves_a_pair_without_outputs_alone_and_keeps_c_in_the_unit_range():
    c, nc = sigma(t([0.5, 0.5]), t([0.4, 0.4]), moments([0.2, 0.2], seen=[False, True]), 1.0)
    assert c.tolist() == pytest.approx([0.5, 0.5]) and nc.tolist() == pytest.approx([0.4, 0.2])
    c, _ = sigma(t([0.2]), t([0.1]), moments([0.8]), 2.0)  # c = s m = 1.6: our clamp to 1
    assert c.item() == 1.0


def test_the_unbuilt_adaptations_as_described():
    c, nc = sigma_half(t([0.5, 0.4, 0.9]), t([0.45, 0.5, 0.1]), moments([0.2, 0.2, 0.2]))
    assert c.tolist() == pytest.approx([0.6, 0.3, 0.9])  # apart by s/2 each; far pair untouched
    assert nc.tolist() == pytest.approx([0.35, 0.6, 0.1])
    c, nc = sigma_half(t([0.05]), t([0.0]), moments([0.4]))
    assert (c.item(), nc.item()) == pytest.approx((0.25, 0.0))  # clamped at 0
    c, nc = eps_min(t([0.5, 0.5, 0.5, 0.02]), t([0.45, 0.52, 0.1, 0.0]), 0.1)
    assert c.tolist() == [0.5, 0.5, 0.5, 0.02]
    assert nc.tolist() == pytest.approx([0.35, 0.62, 0.1, 0.0])
    c, nc = d_max(t([0.8, 0.3, 0.5]), t([0.7, 0.2, 0.5]))
    assert nc.tolist() == [0.0, 1.0, 1.0] and c.tolist() == [0.8, 0.3, 0.5]


# -- initialisations ----------------------------------------------------------------------------

def test_nudge_pushes_nc_away_from_c_and_resets_c_at_the_clamps():
    c, nc = nudge(t([0.5, 0.5, 0.05, 0.95, 0.3]), t([0.3, 0.6, 0.04, 0.97, 0.1]), 0.1)
    assert nc.tolist() == pytest.approx([0.2, 0.7, 0.0, 1.0, 0.0])
    assert c.tolist() == pytest.approx([0.5, 0.5, 0.1, 0.9, 0.1])  # min(nu, 1) / max(1 - nu, 0)
    c, nc = nudge(t([0.5]), t([0.4]), 1.0)
    assert (c.item(), nc.item()) == (1.0, 0.0)  # c = min(nu, 1)


def test_remaps_rescale_the_preferences():
    c, nc = scale_by_largest(t([0.2, 0.4]), t([0.1, 0.0]))
    assert c.tolist() == [0.5, 1.0] and nc.tolist() == [0.25, 0.0]
    c, nc = min_max_remap(t([0.2, 0.4]), t([0.1, 0.15]))
    assert c.tolist() == pytest.approx([1 / 3, 1.0]) and nc.tolist() == pytest.approx([0, 1 / 6])


def fixed_network(num_classes: int = 3):
    """Outputs that depend on the input in a known way: softmax(x W)."""
    weights = torch.tensor([[1.0, -0.5, 0.2], [0.3, 0.8, -1.0]])[:, :num_classes]

    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x @ weights, dim=1)

    x = torch.tensor([[0.1, 0.2], [1.0, -1.0], [0.5, 0.5], [-1.0, 0.3], [0.0, 2.0], [0.7, 0.1]])
    return forward, x, [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("layout", ["class", "position"])
def test_average_init_is_the_untrained_networks_mean_preference(layout):
    forward, x, labels = fixed_network()
    strategy = ready(f"tvo(init=average, adapt=none, layout={layout})",
                     context(3, labels=labels, forward=forward, x=x))
    p, y = forward(x).double().numpy(), np.array(labels)
    for j in range(3):
        assert strategy.one.target_class[0][j].item() == pytest.approx(p[y == j, j].mean())
        other = (np.delete(p[y == j], j, axis=1) if layout == "class" else p[y != j, j])
        assert strategy.one.target_nonclass[0][j].item() == pytest.approx(other.mean())
    assert strategy.values().target_class == pytest.approx(strategy.one.target_class[0].tolist())


def test_average_nudge_and_its_remap_start_from_the_network_preference():
    forward, x, labels = fixed_network()
    ctx = context(3, labels=labels, forward=forward, x=x)
    average = ready("tvo(init=average, adapt=none)", ctx)
    nudged = ready("tvo(init=average_nudge(nu=0.2), adapt=none)", ctx)
    expected_c, expected_nc = nudge(average.one.target_class[0],
                                    average.one.target_nonclass[0], 0.2)
    assert torch.equal(nudged.one.target_class[0], expected_c)
    assert torch.equal(nudged.one.target_nonclass[0], expected_nc)
    remapped = ready("tvo(init=average_nudge_remap(nu=0.2), adapt=none)", ctx)
    largest = max(expected_c.max(), expected_nc.max())
    assert torch.allclose(remapped.one.target_class[0], expected_c / largest)
    full = ready("tvo(init=remap, adapt=none)", ctx)
    values = torch.cat([full.one.target_class[0], full.one.target_nonclass[0]])
    assert (values.min().item(), values.max().item()) == pytest.approx((0.0, 1.0))


def test_uniform_and_soft_inits():
    one = ready("tvo(init=uniform, adapt=none)", context(5, seed=3))
    again = ready("tvo(init=uniform, adapt=none)", context(5, seed=3))
    other = ready("tvo(init=uniform, adapt=none)", context(5, seed=4))
    assert torch.equal(one.one.target_class[0], again.one.target_class[0])
    assert not torch.equal(one.one.target_class[0], other.one.target_class[0])
    assert 0 <= one.one.target_nonclass[0].min() and one.one.target_nonclass[0].max() <= 1
    soft = ready("tvo(init=soft(c=0.7, nc=0.1), adapt=none, normalize=false)", context(3))
    assert soft.templates()[1].tolist() == pytest.approx([0.1, 0.7, 0.1])


# -- layouts, normalisation, pairings -----------------------------------------------------------

def test_position_layout_takes_each_neurons_own_nonclass_value():
    strategy = ready("tvo(init=uniform, adapt=none, layout=position, normalize=false)",
                     context(3, output="sigmoid", loss="mse"))
    c, nc = strategy.one.target_class[0].tolist(), strategy.one.target_nonclass[0].tolist()
    assert strategy.templates()[0].tolist() == pytest.approx([c[0], nc[1], nc[2]])
    assert strategy.templates()[2].tolist() == pytest.approx([nc[0], nc[1], c[2]])


def test_normalize_auto_divides_by_the_row_sum_exactly_for_softmax_outputs():
    auto_softmax = ready("tvo(init=soft, adapt=none)", context(3))
    assert auto_softmax.templates()[0].tolist() == pytest.approx([2 / 3, 1 / 6, 1 / 6])
    auto_sigmoid = ready("tvo(init=soft, adapt=none)", context(3, output="sigmoid", loss="bce"))
    assert auto_sigmoid.templates()[0].tolist() == pytest.approx([0.8, 0.2, 0.2])
    forced = ready("tvo(init=soft, adapt=none, normalize=true)", context(3, output="sigmoid",
                                                                        loss="mse"))
    assert forced.templates().sum(1).tolist() == pytest.approx([1, 1, 1])


def test_unnormalised_targets_with_ce_are_the_studys_replay_and_only_tvos():
    replay = JobSpec.from_dict({"strategy": "tvo(init=soft, adapt=none, normalize=false)"})
    assert replay.strategy.endswith("normalize=false)")
    strategy = ready(replay.strategy, context(10))
    assert strategy.templates()[0].sum().item() == pytest.approx(0.8 + 9 * 0.2)
    with pytest.raises(SpecError) as info:
        JobSpec.from_dict({"strategy": "fixed(c=0.8, nc=0.2)"})
    assert "but loss=ce needs non-negative targets that sum to 1" in str(info.value)


def test_tvo_needs_an_output_in_the_unit_range():
    with pytest.raises(SpecError) as info:
        JobSpec.from_dict({"strategy": "tvo", "output": "tanh", "loss": "mse"})
    assert str(info.value) == ("strategy tvo learns targets in [0, 1] and needs output=softmax "
                               "or sigmoid; got output=tanh")


# -- cadence ------------------------------------------------------------------------------------

BATCH = (torch.tensor([[0.6, 0.4], [0.4, 0.6], [0.3, 0.7]]), torch.tensor([0, 0, 1]))


def test_epoch_cadence_adapts_only_at_the_end_of_the_epoch_from_all_its_batches():
    strategy = ready("tvo(init=soft(c=0.5, nc=0.4), adapt=sigma, normalize=false)",
                     context(2, loss="mse"))
    strategy.observe(*BATCH, torch.arange(3), epoch=1)
    assert strategy.one.target_nonclass[0].tolist() == [0.4, 0.4]
    strategy.end_epoch(1)
    # class 0: s = 0.2 -> nc = 0.2; class 1: one sample, s = 0 -> |0.1| >= 0, unchanged
    assert strategy.one.target_nonclass[0].tolist() == pytest.approx([0.2, 0.4])
    assert strategy.values().target_nonclass == pytest.approx([0.2, 0.4])
    assert strategy.templates()[0].tolist() == pytest.approx([0.5, 0.2])
    strategy.end_epoch(2)  # no outputs seen since: nothing to measure, nothing changes
    assert strategy.one.target_nonclass[0].tolist() == pytest.approx([0.2, 0.4])


def test_batch_cadence_adapts_after_every_batch():
    strategy = ready("tvo(init=soft(c=0.5, nc=0.4), adapt=sigma, cadence=batch, "
                     "normalize=false)", context(2, loss="mse"))
    strategy.observe(*BATCH, torch.arange(3), epoch=1)
    assert strategy.one.target_nonclass[0].tolist() == pytest.approx([0.2, 0.4])
    wide = torch.tensor([[0.9, 0.1], [0.1, 0.9]])  # class 0: s = 0.4 + 0.4 > |0.5 - 0.2|
    strategy.observe(wide, torch.tensor([0, 0]), torch.arange(2), epoch=1)
    assert strategy.one.target_nonclass[0].tolist() == pytest.approx([0.0, 0.4])
    # c = s m at the clamp
    assert strategy.one.target_class[0].tolist() == pytest.approx([0.8, 0.5])


def test_prediction_goes_to_the_nearest_template():
    strategy = ready("tvo(init=soft(c=0.3, nc=0.6), adapt=none, normalize=false)",
                     context(2, loss="mse", output="sigmoid"))
    # templates: class 0 = [0.3, 0.6], class 1 = [0.6, 0.3]; argmax would say the opposite
    assert strategy.predict(torch.tensor([[0.35, 0.65], [0.7, 0.2]])).tolist() == [0, 1]
