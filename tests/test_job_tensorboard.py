"""run_job(tensorboard=True): event files TensorBoard reads, one step per evaluated epoch."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from jobs.engine.train import run_job
from jobs.rundir.layout import TENSORBOARD_DIR
from jobs.rundir.tensorboard import scalar_tags
from jobs.spec import JobSpec
from tests import rundir_view

TVO = {"dataset": "digits", "hidden": [8], "batch_size": 64, "loss": "mse", "output": "sigmoid",
       "strategy": "tvo", "lr": 0.5}


def events(grid_dir: Path, spec: JobSpec) -> EventAccumulator:
    accumulator = EventAccumulator(str(grid_dir / TENSORBOARD_DIR / spec.job_id))
    accumulator.Reload()
    return accumulator


def steps(accumulator: EventAccumulator, tag: str) -> list[int]:
    return [event.step for event in accumulator.Scalars(tag)]


def interrupt_at(epoch: int):
    def progress(reached: int, epochs: int, row: dict) -> None:
        if reached == epoch:
            raise KeyboardInterrupt  # after the epoch's events, before its checkpoint
    return progress


def test_every_measurement_and_each_class_targets_per_evaluated_epoch(tmp_path: Path) -> None:
    spec = JobSpec.from_dict({**TVO, "epochs": 4, "eval_every": 2})
    result = run_job(spec, tmp_path / "job", tensorboard=True, swept_keys=["lr", "seed"])
    assert result.state == "done"
    board = events(tmp_path / "job", spec)
    scalars = set(board.Tags()["scalars"])
    classes = {f"targets/class_{i}/{kind}" for i in range(10) for kind in ("c", "nc")}
    assert set(scalar_tags().values()) - {"target_space/residual"} | classes == scalars
    assert steps(board, "test/acc") == [0, 2, 4]
    assert steps(board, "speed/samples_per_second") == [2, 4]  # none before training
    written = [event.value for event in board.Scalars("test/acc")]  # metrics.parquet's numbers
    table = rundir_view.rows(tmp_path / "job", spec.job_id)
    assert written == pytest.approx([row["test_acc"] for row in table])
    c_of_class_3 = [event.value for event in board.Scalars("targets/class_3/c")]
    assert c_of_class_3 == pytest.approx([row["target_class"][3] for row in table])


def test_settings_as_text_and_the_swept_ones_as_hparams(tmp_path: Path) -> None:
    spec = JobSpec.from_dict({**TVO, "epochs": 1, "seed": 3})
    run_job(spec, tmp_path / "job", grid="g", tensorboard=True, swept_keys=["lr", "seed"])
    board = events(tmp_path / "job", spec)
    text = board.Tensors("settings/text_summary")[0].tensor_proto.string_val[0].decode()
    assert f"| job_id | {spec.job_id} |" in text
    for line in ("| grid | g |", f"| strategy | {spec.strategy} |", "| hidden | [8] |"):
        assert line in text
    content = board.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert {key: value.number_value for key, value in hparams.items()} == {"lr": 0.5, "seed": 3}


def test_a_lone_job_has_every_setting_as_hparams(tmp_path: Path) -> None:
    spec = JobSpec.from_dict({**TVO, "epochs": 0})
    run_job(spec, tmp_path / "job", tensorboard=True)
    board = events(tmp_path / "job", spec)
    content = board.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert set(hparams) == set(spec.to_dict())
    assert hparams["hidden"].string_value == "[8]"


def test_without_the_option_no_events_are_written(tmp_path: Path) -> None:
    run_job(JobSpec.from_dict({**TVO, "epochs": 1}), tmp_path / "job")
    assert not (tmp_path / "job" / TENSORBOARD_DIR).exists()


def test_a_resumed_job_replaces_the_steps_past_its_checkpoint(tmp_path: Path) -> None:
    spec = JobSpec.from_dict({**TVO, "epochs": 5})
    grid_dir = tmp_path / "job"
    with pytest.raises(KeyboardInterrupt):  # epoch 3's events are written, its checkpoint not
        run_job(spec, grid_dir, tensorboard=True, progress=interrupt_at(3),
                checkpoint_seconds=0)
    assert steps(events(grid_dir, spec), "test/acc") == [0, 1, 2, 3]
    assert run_job(spec, grid_dir, tensorboard=True).state == "done"
    resumed = events(grid_dir, spec)
    assert len(list((grid_dir / TENSORBOARD_DIR / spec.job_id).glob("events.out.tfevents.*"))) \
        == 2
    for tag in ("test/acc", "train/loss", "targets/class_0/nc"):
        assert steps(resumed, tag) == [0, 1, 2, 3, 4, 5]

    straight = tmp_path / "straight"
    run_job(spec, straight, tensorboard=True)
    expected = [event.value for event in events(straight, spec).Scalars("train/loss")]
    assert [event.value for event in resumed.Scalars("train/loss")] == expected
