"""Fixed and scheduled targets against their sources: lecun, label_smoothing, matrix, two_stage."""

from __future__ import annotations

import pytest
import torch

from jobs.nn.activations import activate
from jobs.nn.losses import per_sample_loss
from jobs.spec import JobSpec, SpecError
from jobs.strategies import Pairing, StrategyError, make_strategy
from jobs.strategies.params import format_value
from jobs.strategies.tables import second_derivative_peak
from tests.strategy_context import context, ready

# -- label smoothing ----------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3, 1.0])
def test_label_smoothing_with_ce_equals_torchs_label_smoothing_cross_entropy(eps):
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(64, 10, generator=generator) * 3
    labels = torch.randint(0, 10, (64,), generator=generator)
    strategy = ready(f"label_smoothing(eps={eps})", context(10))
    targets = strategy.targets(labels, torch.arange(64), epoch=1)
    ours = per_sample_loss("ce", logits, torch.softmax(logits, 1), targets, "softmax").mean()
    theirs = torch.nn.CrossEntropyLoss(label_smoothing=eps)(logits, labels)
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-6)


def test_label_smoothing_variants_put_eps_on_all_classes_or_on_the_others_only():
    uniform = ready("label_smoothing(eps=0.2)", context(4)).templates()
    others = ready("label_smoothing(eps=0.2, variant=others)", context(4)).templates()
    assert uniform[1].tolist() == pytest.approx([0.05, 0.85, 0.05, 0.05])
    assert others[1].tolist() == pytest.approx([0.2 / 3, 0.8, 0.2 / 3, 0.2 / 3])
    assert uniform.sum(1).tolist() == pytest.approx([1] * 4)
    assert others.sum(1).tolist() == pytest.approx([1] * 4)


def test_a_static_table_logs_its_matrix_and_its_class_and_nonclass_values():
    values = ready("label_smoothing(eps=0.2)", context(4)).values()
    assert values.target_class == pytest.approx([0.85] * 4)
    assert values.target_nonclass == pytest.approx([0.05] * 4)
    assert values.target_matrix[2] == pytest.approx([0.05, 0.05, 0.85, 0.05])


# -- lecun --------------------------------------------------------------------------------------


@pytest.mark.parametrize("output, expected", [
    ("sigmoid", (0.7887, 0.2113)),
    ("tanh", (0.5774, -0.5774)),
    ("lecun_tanh", (1.0, -1.0)),
])
def test_lecun_targets_for_each_output(output, expected):
    table = ready("lecun", context(3, output=output, loss="mse")).templates()
    assert table[0, 0].item() == pytest.approx(expected[0], abs=1e-4)
    assert table[0, 1].item() == pytest.approx(expected[1], abs=1e-4)
    assert table[2].tolist() == pytest.approx([expected[1], expected[1], expected[0]], abs=1e-4)


@pytest.mark.parametrize("output", ["sigmoid", "tanh"])
def test_lecun_targets_sit_where_the_outputs_second_derivative_peaks(output):
    """Independent of the closed form: differentiate the output twice on a fine grid."""
    x = torch.linspace(-4, 4, 80001, dtype=torch.float64, requires_grad=True)
    first, = torch.autograd.grad(activate(x[:, None], output).sum(), x, create_graph=True)
    second, = torch.autograd.grad(first.sum(), x)
    peak = x[second.abs()[x > 0].argmax() + (x <= 0).sum()].item()
    assert peak == pytest.approx(second_derivative_peak(output), abs=1e-3)


def test_lecun_with_softmax_needs_normalize_and_then_gives_distributions():
    with pytest.raises(StrategyError) as info:
        make_strategy("lecun").check(Pairing(10, "softmax", "ce", 5))
    assert str(info.value) == (
        "strategy lecun with output=softmax needs lecun(normalize=true): softmax outputs sum to "
        "1, so per-neuron targets must be normalised first")
    table = ready("lecun(normalize=true)", context(10)).templates()
    assert table.sum(1).tolist() == pytest.approx([1] * 10)
    assert table[0, 0].item() == pytest.approx(0.78868 / (0.78868 + 9 * 0.21132), abs=1e-4)


def test_lecun_refuses_a_linear_output_naming_the_outputs_that_work():
    with pytest.raises(SpecError) as info:
        JobSpec.from_dict({"strategy": "lecun", "output": "linear", "loss": "mse"})
    assert str(info.value) == (
        "strategy lecun needs a saturating output: output=sigmoid, tanh, lecun_tanh, or softmax "
        "with lecun(normalize=true); got output=linear")


def test_targets_the_output_cannot_reach_are_refused():
    with pytest.raises(SpecError) as info:
        JobSpec.from_dict({"strategy": "fixed(c=1.5, nc=0)", "output": "sigmoid", "loss": "mse"})
    assert str(info.value) == ("strategy fixed(c=1.5, nc=0.0, normalize=false) gives targets in "
                               "[0, 1.5], but output=sigmoid only reaches [0, 1]")


# -- matrix -------------------------------------------------------------------------------------

ROWS = [[0.9, 0.1, 0.0], [0.0, 1.0, 0.0], [0.2, 0.8, 0.0]]


def test_an_inline_matrix_gives_row_y_as_the_target_of_class_y():
    strategy = ready(f"matrix(rows={ROWS})", context(3))
    targets = strategy.targets(torch.tensor([2, 0]), torch.tensor([0, 1]), epoch=1)
    assert torch.allclose(targets, torch.tensor([ROWS[2], ROWS[0]]))
    assert torch.allclose(torch.tensor(strategy.values().target_matrix), torch.tensor(ROWS))
    assert strategy.values().target_nonclass is None  # rows are not of the c/nc form


@pytest.mark.parametrize("suffix, content", [
    (".csv", "# one row per class\n0.9, 0.1, 0.0\n0.0,1.0,0.0\n\n0.2,0.8,0\n"),
    (".yaml", "- [0.9, 0.1, 0.0]\n- [0.0, 1.0, 0.0]\n- [0.2, 0.8, 0.0]\n"),
])
def test_a_matrix_file_is_read_and_its_content_hash_joins_the_canonical_string(
        tmp_path, suffix, content):
    path = tmp_path / f"targets{suffix}"
    path.write_text(content)
    strategy = ready(f'matrix(file="{path}")', context(3))
    assert torch.allclose(strategy.templates(), torch.tensor(ROWS))
    sha = strategy.args["sha"]
    assert len(sha) == 16
    assert strategy.canonical() == f'matrix(rows=[], file="{path}", sha={format_value(sha)})'
    assert make_strategy(strategy.canonical()).canonical() == strategy.canonical()


def test_editing_the_matrix_file_makes_a_new_job_and_stops_the_old_one(tmp_path):
    path = tmp_path / "targets.csv"
    path.write_text("0.9,0.1\n0.1,0.9\n")
    before = JobSpec.from_dict({"strategy": f'matrix(file="{path}")', "dataset": "moons",
                                "loss": "mse"})
    path.write_text("0.8,0.2\n0.2,0.8\n")
    after = JobSpec.from_dict({"strategy": f'matrix(file="{path}")', "dataset": "moons",
                               "loss": "mse"})
    assert before.job_id != after.job_id
    with pytest.raises(StrategyError) as info:
        make_strategy(before.strategy)
    assert str(info.value).startswith(f"strategy matrix file '{path}' changed since this job was "
                                      "made (sha ")
    assert str(info.value).endswith("; restore the file or make a new job")


@pytest.mark.parametrize("text, settings, message", [
    ("matrix(rows=[[1, 0], [0, 1]])", {},
     "strategy matrix has a 2 x 2 table, but the dataset has 10 classes; give 10 rows of 10 "
     "numbers"),
    ("matrix(rows=[[1, 0], [0]])", {"dataset": "moons"},
     "strategy matrix has rows of different lengths [1, 2], but the dataset has 2 classes; give "
     "2 rows of 2 numbers"),
    ("matrix(rows=[[0.9, 0.2], [0.1, 0.9]])", {"dataset": "moons"},
     "strategy matrix(rows=[[0.9, 0.2], [0.1, 0.9]], file=\"\", sha=\"\") gives targets summing "
     "to 1.1 per row, but loss=ce needs non-negative targets that sum to 1; use normalize=true "
     "where the strategy has it, or loss=mse/bce"),
    ("matrix(rows=[[2, 0], [0, 1]])", {"dataset": "moons", "loss": "mse", "output": "tanh"},
     "strategy matrix(rows=[[2.0, 0.0], [0.0, 1.0]], file=\"\", sha=\"\") gives targets in "
     "[0, 2], but output=tanh only reaches [-1, 1]"),
    ("matrix", {}, "strategy matrix needs its table: rows=[[...], ...] or file=PATH (.csv or "
                   ".yaml)"),
    ("matrix(rows=[[1]], file=a.csv)", {}, "strategy matrix takes rows= or file=, not both"),
    ("matrix(file=missing.csv)", {},
     "strategy matrix cannot read file 'missing.csv': No such file or directory"),
    ("matrix(file=targets.txt)", {},
     "strategy matrix cannot read file 'targets.txt': No such file or directory"),
])
def test_matrix_validation_says_what_is_wrong_in_one_line(text, settings, message):
    with pytest.raises(SpecError) as info:
        JobSpec.from_dict({"strategy": text, **settings})
    assert str(info.value) == message


@pytest.mark.parametrize("name, content, message", [
    ("t.txt", "1,0\n0,1\n", "must end in .csv, .yaml or .yml"),
    ("t.csv", "1,0\n0,nan\n", "does not hold a table of finite numbers like [[0.9, 0.1], "
                              "[0.2, 0.8]] (CSV: one row per line)"),
    ("t.csv", "1,zero\n0,1\n", "does not hold a table of finite numbers like [[0.9, 0.1], "
                               "[0.2, 0.8]] (CSV: one row per line)"),
    ("t.yaml", "rows: 3\n", "does not hold a table of finite numbers like [[0.9, 0.1], "
                            "[0.2, 0.8]] (CSV: one row per line)"),
])
def test_a_bad_matrix_file_is_named_in_the_error(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(StrategyError) as info:
        make_strategy(f'matrix(file="{path}")')
    assert str(info.value) == f"strategy matrix file '{path}' {message}"


# -- two_stage ----------------------------------------------------------------------------------


def test_two_stage_smooths_before_the_switch_epoch_and_is_one_hot_from_it_on():
    strategy = ready("two_stage(eps=0.3, switch_epoch=3)", context(3, epochs=5))
    labels, indices = torch.tensor([0, 2]), torch.tensor([0, 1])
    smoothed = torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])
    for epoch in (1, 2):
        assert torch.allclose(strategy.targets(labels, indices, epoch), smoothed)
    for epoch in (3, 4, 5):
        assert strategy.targets(labels, indices, epoch).tolist() == [[1, 0, 0], [0, 0, 1]]
    assert torch.allclose(strategy.templates()[0], smoothed[0])  # before training
    strategy.end_epoch(2)
    assert torch.allclose(strategy.templates()[0], smoothed[0])
    strategy.end_epoch(3)
    assert strategy.templates()[0].tolist() == [1, 0, 0]


def test_two_stage_refuses_a_switch_after_the_last_epoch():
    with pytest.raises(SpecError) as info:
        JobSpec.from_dict({"strategy": "two_stage(switch_epoch=6)", "epochs": 5})
    assert str(info.value) == (
        "strategy two_stage(eps=0.1, switch_epoch=6) switches to one-hot at epoch 6, but the job "
        "trains 5 epochs; use switch_epoch <= epochs, or label_smoothing")
    assert JobSpec.from_dict({"strategy": "two_stage(switch_epoch=5)", "epochs": 5})
