"""The validation split: stratified, seeded, disjoint from test; what tvo chooses, it chooses on
validation (early stopping), and every epoch reports validation next to test."""

from __future__ import annotations

import pytest
import torch

from jobs.data.datasets import load_dataset
from jobs.data.validation import stratified_split
from jobs.engine.train import run_job
from jobs.spec import JobSpec, SpecError
from tests import rundir_view


def test_the_split_is_stratified_seeded_and_disjoint():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    kept, held = stratified_split(labels, 0.1, seed=3)
    assert torch.bincount(labels[held]).tolist() == [5, 3, 2]  # 10 % of every class
    assert set(kept.tolist()).isdisjoint(held.tolist())
    assert sorted(kept.tolist() + held.tolist()) == list(range(100))
    again, _ = stratified_split(labels, 0.1, seed=3)
    other, _ = stratified_split(labels, 0.1, seed=4)
    assert torch.equal(kept, again) and not torch.equal(kept, other)


def test_a_class_of_two_keeps_one_to_train_and_gives_one_to_validate():
    kept, held = stratified_split(torch.tensor([0, 0, 1, 1, 1, 1, 1, 1, 1, 1]), 0.01, seed=0)
    assert torch.bincount(torch.tensor([0, 0, 1, 1, 1, 1, 1, 1, 1, 1])[held]).tolist() == [1, 1]
    assert len(kept) == 8


def test_the_validation_part_comes_from_training_and_leaves_test_alone():
    whole = load_dataset("digits", normalize="none")
    split = load_dataset("digits", normalize="none", val_fraction=0.2, val_seed=1)
    assert torch.equal(split.x_test, whole.x_test) and torch.equal(split.y_test, whole.y_test)
    assert len(split.y_train) + len(split.y_val) == len(whole.y_train)
    rows = {tuple(row) for row in whole.x_train.flatten(1).tolist()}
    assert all(tuple(row) in rows for row in split.x_val.flatten(1).tolist())
    counts = torch.bincount(split.y_val, minlength=10).float() / torch.bincount(whole.y_train)
    assert counts.min() > 0.15 and counts.max() < 0.25


def test_normalisation_statistics_come_from_the_training_part_alone():
    split = load_dataset("moons", normalize="zscore", val_fraction=0.3)
    assert split.x_train.mean(dim=0).abs().max() < 1e-5
    assert split.x_val.mean(dim=0).abs().max() > 1e-4


def test_every_epoch_reports_validation_next_to_test(tmp_path):
    spec = JobSpec.from_dict({"dataset": "moons", "hidden": [8], "epochs": 2})
    assert spec.val_fraction == 0.1
    assert run_job(spec, tmp_path / "job").state == "done"
    rows = rundir_view.all_rows(tmp_path / "job")
    assert all(0 <= row["val_acc"] <= 1 and row["val_loss"] > 0 and row["val_nll"] > 0
               and row["val_ece"] is not None for row in rows)
    none = JobSpec.from_dict({"dataset": "moons", "hidden": [8], "epochs": 1, "val_fraction": 0})
    assert run_job(none, tmp_path / "none").state == "done"
    rows = rundir_view.all_rows(tmp_path / "none")
    assert [row["val_acc"] for row in rows] == [None, None]


def test_early_stopping_chooses_on_validation_and_resumes(tmp_path):
    spec = JobSpec.from_dict({"dataset": "moons", "hidden": [8], "epochs": 60, "lr": 1.0,
                              "stop_patience": 2, "val_fraction": 0.2})
    result = run_job(spec, tmp_path / "job", checkpoint_seconds=0)
    assert result.state == "done"
    rows = rundir_view.all_rows(tmp_path / "job")
    val = [row["val_acc"] for row in rows[1:]]
    best = max(range(len(val)), key=lambda i: (val[i], -i))  # the first best epoch
    assert len(val) < 60 and len(val) == best + 1 + 2  # two evaluated epochs without better
    assert "stopped early after epoch" in rundir_view.all_logs(tmp_path / "job")
    assert result.epochs_done == len(val)


def test_early_stopping_needs_a_validation_part():
    with pytest.raises(SpecError, match="stop_patience stops on the validation accuracy"):
        JobSpec.from_dict({"stop_patience": 3, "val_fraction": 0})
