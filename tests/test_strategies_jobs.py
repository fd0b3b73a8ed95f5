"""Every strategy trains in a real job, and every stateful one resumes to the same metrics."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
import yaml

from jobs.engine.train import run_job
from jobs.rundir.checkpoint import decode_state, encode_state
from jobs.spec import JobSpec
from tests import rundir_view
from tests.strategy_context import context, ready

TINY = {"dataset": "digits", "hidden": [16], "batch_size": 128, "lr": 0.2}
NOT_COMPARED = ["epoch_seconds", "samples_per_second", "grid"]  # timings, and where it was run
SIGMOID_MSE = {"output": "sigmoid", "loss": "mse"}
DIAGONAL = [[0.91 if i == j else 0.01 for j in range(10)] for i in range(10)]

EVERY_STRATEGY = [
    ("onehot", {}),
    ("fixed(c=0.9, nc=0.1)", SIGMOID_MSE),
    ("lecun", {"output": "tanh", "loss": "mse"}),
    ("lecun(normalize=true)", {}),
    ("label_smoothing(eps=0.1, variant=others)", {}),
    (f"matrix(rows={DIAGONAL})", {}),
    ("two_stage(switch_epoch=2)", {}),
    ("tvo", {}),
    ("tvo(init=average_nudge, adapt=sigma, normalize=false)", {}),
    ("tvo(init=uniform, adapt=sigma_half, cadence=batch, layout=position)",
     {"output": "sigmoid", "loss": "bce"}),
    ("tvo(init=remap, adapt=eps_min)", {}),
    ("tvo(init=average_nudge_remap, adapt=d_max)", SIGMOID_MSE),
    ("tvo(init=soft, adapt=none)", {}),
    ("ols", {}),
    ("pskd", {}),
    ("sat(start_epoch=1)", {}),
    ("bootstrap_soft", {}),
    ("bootstrap_hard", {}),
]


class Interrupt(BaseException):
    """Stands for a kill: not an Exception, so run_job does not record it as a failure."""


def metrics(grid_dir: Path) -> list[dict]:
    return rundir_view.all_rows(grid_dir, drop=tuple(NOT_COMPARED))


@pytest.mark.parametrize("strategy, settings", EVERY_STRATEGY,
                         ids=[text.split("(")[0] + str(i) for i, (text, _) in
                              enumerate(EVERY_STRATEGY)])
def test_every_strategy_trains_a_real_job(tmp_path, strategy, settings):
    spec = JobSpec.from_dict({**TINY, "epochs": 2, "strategy": strategy, **settings})
    result = run_job(spec, tmp_path)
    assert result.state == "done", result.error
    rows = metrics(tmp_path)
    assert [row["epoch"] for row in rows] == [0, 1, 2]
    assert rows[-1]["strategy"] == spec.strategy
    assert 0 <= rows[-1]["test_acc"] <= 1
    if strategy.startswith("tvo"):
        assert len(rows[-1]["target_class"]) == 10 and len(rows[-1]["target_nonclass"]) == 10


STATEFUL = [
    "tvo(init=average_nudge, adapt=sigma)",
    "tvo(init=uniform, adapt=sigma, cadence=batch, layout=position, normalize=false)",
    "ols",
    "pskd",
    "sat(start_epoch=1)",
]


@pytest.mark.parametrize("strategy", STATEFUL, ids=lambda text: text.split("(")[0])
def test_an_interrupted_job_resumes_to_the_same_metrics(tmp_path, strategy):
    spec = JobSpec.from_dict({**TINY, "epochs": 4, "strategy": strategy})

    def stop_in_epoch_three(epoch, epochs, row):
        if epoch == 3:  # measured, never checkpointed: the rerun resumes after epoch 2
            raise Interrupt

    with pytest.raises(Interrupt):
        run_job(spec, tmp_path / "resumed", progress=stop_in_epoch_three, checkpoint_seconds=0)
    assert run_job(spec, tmp_path / "resumed").state == "done"
    assert "resumed after epoch 2" in rundir_view.all_logs(tmp_path / "resumed")
    run_job(spec, tmp_path / "straight")
    assert metrics(tmp_path / "resumed") == metrics(tmp_path / "straight")


def round_trip(state: dict) -> dict:
    """Through the bytes a checkpoint holds."""
    return decode_state(encode_state(state))


@pytest.mark.parametrize("strategy", [
    "tvo(init=uniform, adapt=sigma)", "ols", "pskd",
    "sat(start_epoch=0)",
])
def test_a_strategys_state_survives_a_checkpoint(strategy):
    generator = torch.Generator().manual_seed(5)
    labels = torch.randint(0, 3, (12,), generator=generator)
    outputs = torch.softmax(torch.randn(12, 3, generator=generator) * 3, 1)
    indices = torch.arange(12)
    trained = ready(strategy, context(3, labels=labels.tolist(), seed=1))
    trained.batch_targets(outputs, labels, indices, epoch=1)
    trained.observe(outputs, labels, indices, epoch=1)
    trained.end_epoch(1)
    restored = ready(strategy, context(3, labels=labels.tolist(), seed=2))  # other start values
    restored.load_state_dict(round_trip(trained.state_dict()))
    for epoch in (2, 3):
        assert torch.equal(restored.batch_targets(outputs, labels, indices, epoch),
                           trained.batch_targets(outputs, labels, indices, epoch))
        restored.observe(outputs, labels, indices, epoch)
        trained.observe(outputs, labels, indices, epoch)
        restored.end_epoch(epoch)
        trained.end_epoch(epoch)
        assert torch.equal(restored.templates(), trained.templates())
        assert restored.values() == trained.values()


def test_stateless_strategies_have_nothing_to_save():
    for text in ("onehot", "label_smoothing", "two_stage", "bootstrap_soft"):
        assert ready(text, context(epochs=20)).state_dict() == {}


def test_the_shipped_study_grid_expands_to_seventy_valid_distinct_jobs():
    grid = yaml.safe_load((Path(__file__).parents[1] / "runner/grids/study.yaml").read_text())
    assert set(grid) == {"name", "description", "base", "grid", "resources"}
    keys = list(grid["grid"])
    specs = [JobSpec.from_dict({**grid["base"], **dict(zip(keys, values, strict=True))})
             for values in itertools.product(*(grid["grid"][key] for key in keys))]
    assert len({spec.job_id for spec in specs}) == len(specs) == 70
    assert {spec.strategy_name for spec in specs} == {"onehot", "tvo"}
