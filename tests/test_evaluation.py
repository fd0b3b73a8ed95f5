"""A stack's evaluation (jobs.engine.evaluation): members measured in chunks give what they give
measured all at once, and each split measures only what its rows keep."""

from __future__ import annotations

import gc

import pytest
import torch

from jobs import metric_catalogue
from jobs.engine import evaluation
from jobs.engine.stack import Stack
from jobs.engine.train import shared_dataset
from jobs.spec import JobSpec
from tests.engine_members import fresh_members

CPU = torch.device("cpu")
STRATEGIES = ("onehot", "fixed(c=0.9, nc=0.1)", "tvo(init=average_nudge, adapt=sigma)")


@pytest.fixture(scope="module")
def stack() -> Stack:
    """Sigmoid outputs (bins over every output), argmax and nearest-template decisions."""
    specs = [JobSpec.from_dict({"dataset": "digits", "hidden": [8], "activation": "sigmoid",
                                "output": "sigmoid", "loss": "mse", "lr": 0.5, "epochs": 1,
                                "strategy": strategy, "seed": seed})
             for seed in range(3) for strategy in STRATEGIES]
    data = shared_dataset(specs[0], CPU)
    trained = Stack(fresh_members(specs, data), data, CPU)
    losses, _, _ = trained.train_epoch(1)
    trained.end_epoch(1, losses)
    return trained


@pytest.mark.parametrize("per_chunk", [1, 2, 5])
def test_members_measured_in_chunks_measure_as_all_at_once(stack, monkeypatch, per_chunk):
    whole = evaluation.measure(stack, stack.x_test, stack.y_test)
    floats = stack.x_test.shape[0] * stack.num_classes * per_chunk
    monkeypatch.setitem(evaluation.CHUNK_FLOATS, "cpu", floats)
    chunked = [chunk for chunk in evaluation._chunks(stack, stack.x_test.shape[0])]
    assert len(chunked) == sum(-(-group.size // per_chunk) for _, group in stack.groups)
    assert evaluation.measure(stack, stack.x_test, stack.y_test) == whole


def test_each_split_measures_what_its_rows_keep(stack):
    train = evaluation.measure(stack, stack.x_train, stack.y_train,
                               evaluation.split_measures("train"))
    assert set(train) == {"loss", "acc"}
    val = evaluation.measure(stack, stack.x_val, stack.y_val, evaluation.split_measures("val"))
    assert set(val) == {"loss", "acc", "nll", "ece"}
    test = evaluation.measure(stack, stack.x_test, stack.y_test,
                              evaluation.split_measures("test"))
    assert set(test) == {*evaluation.MEASURES, "reliability"}
    assert val["loss"] == evaluation.measure(stack, stack.x_val, stack.y_val)["loss"]
    assert all(len(bins) == 10 for bins in test["reliability"])
    rows = stack.evaluation_rows(epoch=1)  # the final epoch: its rows keep the bins
    assert [row["reliability"] for row in rows] == test["reliability"]
    assert [row["val_ece"] for row in rows] == val["ece"]


def test_rows_are_made_with_the_collector_held_off_and_it_is_back_after(stack, monkeypatch):
    seen = []
    monkeypatch.setattr(evaluation, "_rows", lambda *args: seen.append(gc.isenabled()) or [])
    assert gc.isenabled()
    assert stack.evaluation_rows(epoch=1) == [] and seen == [False]
    assert gc.isenabled()

    def failing(*args):
        raise RuntimeError("broken")

    monkeypatch.setattr(evaluation, "_rows", failing)
    with pytest.raises(RuntimeError, match="broken"):
        stack.evaluation_rows(epoch=1)
    assert gc.isenabled()


def test_every_declared_split_metric_is_a_measure_this_engine_computes():
    for metric in metric_catalogue.METRICS:
        if metric.measure is not None:
            assert metric.split in ("train", "val", "test"), metric.name
            assert metric.measure in evaluation.TEST_MEASURES, metric.name


def test_rows_hold_declared_columns_only(stack):
    declared = set(metric_catalogue.names())
    for epoch in (0, 1):
        rows = stack.evaluation_rows(epoch=epoch)
        assert all(set(row) <= declared for row in rows), set(rows[0]) - declared
    assert {"train_loss", "val_acc"} <= set(stack.evaluation_rows(epoch=0)[0])
    assert "reliability" in stack.evaluation_rows(epoch=1)[0]  # the final epoch keeps its bins


def test_a_metric_declared_on_a_split_is_measured_without_engine_changes(stack, monkeypatch):
    added = metric_catalogue.Metric("val_margin", metric_catalogue.FLOAT, "validation margin",
                                    split="val", measure="margin")
    monkeypatch.setattr(metric_catalogue, "METRICS", (*metric_catalogue.METRICS, added))
    assert evaluation.split_measures("val") == ("loss", "acc", "nll", "ece", "margin")
    margins = evaluation.measure(stack, stack.x_val, stack.y_val, ("margin",))["margin"]
    assert [row["val_margin"] for row in stack.evaluation_rows(epoch=1)] == margins
