"""run_job and packs with a cancel request: stop at the epoch end, keep the checkpoint, resume
identically."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.engine.train import run_job
from jobs.rundir.layout import CANCEL_FILE
from jobs.rundir.results import read_json
from jobs.rundir.run_dir import RunDir
from jobs.spec import JobSpec
from tests import rundir_view
from tests.test_engine import close, metric_rows, specs, train_stack

TINY = {"dataset": "digits", "hidden": [8], "batch_size": 64, "loss": "mse", "output": "sigmoid",
        "strategy": "tvo", "lr": 0.5, "epochs": 6}
TIMINGS = ["epoch_seconds", "samples_per_second"]


def metrics(grid_dir: Path, spec: JobSpec) -> list[dict]:
    return rundir_view.rows(grid_dir, spec.job_id, timing=False)


def cancel_at(grid_dir: Path, spec: JobSpec, epoch: int):
    """A progress callback that asks for the job's cancel when `epoch` is reported."""
    def progress(reached: int, epochs: int, row: dict) -> None:
        if reached == epoch:
            RunDir(grid_dir).request_cancel([spec.job_id], "test")
    return progress


@pytest.mark.parametrize("eval_every", [1, 2])
def test_cancelled_after_the_epoch_then_resumed_to_the_same_metrics(tmp_path: Path,
                                                                    eval_every: int) -> None:
    spec = JobSpec.from_dict({**TINY, "eval_every": eval_every})
    grid_dir = tmp_path / "job"
    # epoch 0 is reported before the first epoch trains: the job stops after epoch 1, which
    # with eval_every=2 is not an evaluated epoch and is checkpointed for the cancel alone
    result = run_job(spec, grid_dir, progress=cancel_at(grid_dir, spec, 0))
    assert (result.state, result.epochs_done) == ("cancelled", 1)
    record = rundir_view.record(grid_dir, spec.job_id)
    assert (record.state, record.epochs_done, record.error) == ("cancelled", 1, None)
    assert rundir_view.rows(grid_dir, spec.job_id) == [] and not record.finished
    assert rundir_view.checkpointed_epoch(grid_dir, spec.job_id) == 1
    assert "cancelled after epoch 1" in rundir_view.log(grid_dir, spec.job_id)

    again = run_job(spec, grid_dir)  # the request is still there: not started, still cancelled
    assert (again.state, rundir_view.record(grid_dir, spec.job_id).attempts) == ("cancelled", 1)

    assert RunDir(grid_dir).clear_cancel([spec.job_id])
    assert run_job(spec, grid_dir).state == "done"
    assert rundir_view.record(grid_dir, spec.job_id).attempts == 2
    assert not (grid_dir / "checkpoints").exists() or not list((grid_dir / "checkpoints").iterdir())
    straight = tmp_path / "straight"
    run_job(spec, straight)
    assert metrics(grid_dir, spec) == metrics(straight, spec)


def test_a_request_at_the_last_epoch_lets_the_job_finish(tmp_path: Path) -> None:
    spec = JobSpec.from_dict({**TINY, "epochs": 2})
    grid_dir = tmp_path / "job"
    assert run_job(spec, grid_dir, progress=cancel_at(grid_dir, spec, 2)).state == "done"
    assert rundir_view.record(grid_dir, spec.job_id).finished


def test_a_job_cancelled_before_it_starts_is_recorded_and_not_trained(tmp_path: Path) -> None:
    spec = JobSpec.from_dict(TINY)
    grid_dir = tmp_path / "job"
    RunDir(grid_dir).request_cancel([spec.job_id], "test")
    result = run_job(spec, grid_dir)
    assert (result.state, result.epochs_done) == ("cancelled", 0)
    record = rundir_view.record(grid_dir, spec.job_id)
    assert (record.state, record.attempts) == ("cancelled", 0)
    assert not (grid_dir / "checkpoints").exists()


def test_cancel_requests_name_the_grid_or_jobs_and_clear_says_whether_there_was_one(
        tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path)
    assert not run_dir.cancel_requested() and not run_dir.cancel_requested("a")
    run_dir.request_cancel(["a"], "me@host")
    assert run_dir.cancel_requested("a") and not run_dir.cancel_requested("b")
    assert not run_dir.cancel_requested()
    assert read_json(tmp_path / CANCEL_FILE)["jobs"]["a"]["requested_by"] == "me@host"
    run_dir.request_cancel(None, "me@host")
    assert run_dir.cancel_requested() and run_dir.cancel_requested("b")
    assert run_dir.clear_cancel(["a"]) and not run_dir.clear_cancel(["a"])
    assert not (tmp_path / CANCEL_FILE).exists()


# ---------------------------------------------------------------------------------------------
# Packs: one member stops at its epoch end, the others train on


def test_a_cancelled_member_stops_at_its_epoch_end_and_resumes_like_a_job_alone(tmp_path):
    jobs = specs({"seed": 0}, {"seed": 1}, {"seed": 2}, epochs=4)
    packed_dir = tmp_path / "packed"
    stopping = jobs[1].job_id

    def cancel_second_at_epoch_1(job_id: str, epoch: int, epochs: int, row: dict) -> None:
        if job_id == stopping and epoch == 1:
            RunDir(packed_dir).request_cancel([stopping], "test")

    packed = train_stack(jobs, packed_dir, progress=cancel_second_at_epoch_1)
    assert [(r.state, r.epochs_done) for r in packed] == [("done", 4), ("cancelled", 1),
                                                           ("done", 4)]
    assert rundir_view.rows(packed_dir, stopping) == []
    assert rundir_view.checkpointed_epoch(packed_dir, stopping) == 1  # kept past the commit
    assert "cancelled after epoch 1" in rundir_view.log(packed_dir, stopping)
    assert rundir_view.record(packed_dir, stopping).epochs_done == 1

    assert RunDir(packed_dir).clear_cancel([stopping])
    assert run_job(jobs[1], packed_dir, grid="g").state == "done"  # resumed alone, after 1
    assert "resumed after epoch 1" in rundir_view.log(packed_dir, stopping)
    for spec in jobs:
        run_job(spec, tmp_path / "alone", grid="g")
        rows_alone = metric_rows(tmp_path / "alone", spec.job_id)
        rows_packed = metric_rows(packed_dir, spec.job_id)
        assert all(close(a[k], b[k]) for a, b in zip(rows_packed, rows_alone, strict=True)
                   for k in b), spec.job_id


def test_a_member_cancelled_before_the_pack_starts_is_not_trained(tmp_path):
    jobs = specs({"seed": 0}, {"seed": 1}, {"seed": 2}, epochs=2)
    RunDir(tmp_path).request_cancel([jobs[2].job_id], "test")
    outcome = train_stack(jobs, tmp_path)
    assert [(r.state, r.epochs_done) for r in outcome] == [("done", 2), ("done", 2),
                                                            ("cancelled", 0)]
    assert rundir_view.checkpointed_epoch(tmp_path, jobs[2].job_id) is None
    assert "] 2 jobs on " in rundir_view.log(tmp_path, jobs[0].job_id)
