"""The comparison protocol: its section is checked; selection is on validation, never on test."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.grid.protocol import CompareError, read_compare, select, stage_one, stage_two
from runner.grid.spaces import Space
from tests.fake_grid import write_run

SECTION = {"by": "strategy", "tune": {"lr": "loguniform(0.05, 5)"}, "budget": 4,
           "select": "val_acc", "final_seeds": "range(10, 13)"}
BASE = {"dataset": "moons", "hidden": [8], "epochs": 2}
SWEEPS = {"strategy": ["onehot", "label_smoothing(eps=0.1)"]}


def test_the_section_reads_into_spaces_budget_and_seeds():
    compare = read_compare("g.yaml", SECTION)
    assert compare.tune == {"lr": Space("loguniform", (0.05, 5.0))}
    assert (compare.budget, compare.select, compare.final_seeds) == (4, "val_acc", (10, 11, 12))


@pytest.mark.parametrize(("change", "message"), [
    ({"select": "test_acc"}, "g.yaml: compare.select: got 'test_acc'; expected val_acc or "
                             "val_loss (selection is on validation, never on test)"),
    ({"budget": 0}, "g.yaml: compare.budget: got '0'; expected a whole number from 1 to 10000 "
                    "(configurations per method)"),
    ({"tune": {"lr": "0.5"}}, "g.yaml: compare.tune.lr: got '0.5'; expected a search space: "
                              "loguniform(a, b), uniform(a, b), intuniform(a, b) or "
                              "choice(a, b, ...)"),
    ({"tune": {"seed": "intuniform(0, 9)"}}, "g.yaml: compare.tune: 'seed' cannot be tuned; "
                                             "tune settings other than the compared one and the "
                                             "seed"),
    ({"by": "colour"}, "g.yaml: compare.by: got 'colour'; expected a setting, e.g. strategy"),
    ({"extra": 1}, "g.yaml: compare: unknown key 'extra'; valid keys: by, tune, budget, select, "
                   "final_seeds"),
])
def test_a_bad_section_is_one_line(change, message):
    with pytest.raises(CompareError) as caught:
        read_compare("g.yaml", {**SECTION, **change})
    assert str(caught.value) == message


def finished(grid_dir: Path, spec, val_acc: float, test_acc: float) -> None:
    write_run(grid_dir, spec, [{"epoch": 1, "val_acc": val_acc, "test_acc": test_acc}], grid="g")


def test_selection_follows_validation_where_test_disagrees(tmp_path):
    compare = read_compare("g.yaml", SECTION)
    first = stage_one(BASE, SWEEPS, compare)
    assert len(first) == 2 * 4  # every method tries the same 4 drawn configurations
    for index, spec in enumerate(first):
        position = index % 4
        # validation prefers configuration 1, test prefers configuration 3
        finished(tmp_path, spec, val_acc=0.9 if position == 1 else 0.5,
                 test_acc=0.99 if position == 3 else 0.6)
    chosen = select(tmp_path, BASE, SWEEPS, compare)
    assert [s.context["strategy"] for s in chosen] == SWEEPS["strategy"]
    for method, selection in enumerate(chosen):
        picked = first[4 * method + 1]  # the contexts in order, each with the 4 draws
        assert selection.settings == {"lr": picked.lr} and selection.score == 0.9
        assert sorted(selection.tried) == [0.5, 0.5, 0.5, 0.9] and selection.missing == 0
    final = stage_two(chosen, compare)
    assert sorted(spec.seed for spec in final) == [10, 10, 11, 11, 12, 12]


def test_unfinished_configurations_are_left_out_of_the_selection(tmp_path):
    compare = read_compare("g.yaml", {**SECTION, "select": "val_loss"})
    first = stage_one(BASE, {"strategy": ["onehot"]}, compare)
    for spec, loss in zip(first[:2], (0.7, 0.3), strict=True):
        write_run(tmp_path, spec, [{"epoch": 1, "val_loss": loss}], grid="g")
    [selection] = select(tmp_path, BASE, {"strategy": ["onehot"]}, compare)
    assert selection.score == 0.3 and selection.missing == 2


@pytest.mark.parametrize(("grid_part", "message"), [
    ("base: {dataset: moons, seed: 3}\ngrid: {strategy: [onehot]}\n",
     "g.yaml: compare.final_seeds: 3 is the tuning stage's seed (base.seed); final seeds must "
     "be fresh, e.g. range(100, 110)"),
    ("base: {dataset: moons}\ngrid: {strategy: [onehot], seed: [0, 1]}\n",
     "g.yaml: compare: seed is swept in grid; the tuning stage trains one seed (base.seed) and "
     "the final seeds are compare.final_seeds: remove seed from grid"),
])
def test_the_stages_never_share_a_run(tmp_path, monkeypatch, grid_part, message):
    """A final seed equal to the tuning seed would report a run that was selected on."""
    from runner.grid.expand import GridError, expand, load_grid

    monkeypatch.chdir(tmp_path)
    Path("g.yaml").write_text(grid_part + "compare: {by: strategy, tune: {lr: "
                              "'loguniform(0.1, 1)'}, budget: 2, select: val_acc, "
                              "final_seeds: [3, 4]}\n")
    with pytest.raises(GridError) as caught:
        expand(load_grid("g.yaml"))
    assert str(caught.value) == message
