"""run_job and packs with a cancel request: stop at the epoch end, keep the checkpoint, resume
identically."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jobs.engine.train import run_job, run_stack
from jobs.rundir import results
from jobs.rundir.checkpoint import read_checkpoint
from jobs.spec import JobSpec
from tests.test_engine import close, metric_rows, requests, specs

TINY = {"dataset": "digits", "hidden": [8], "batch_size": 64, "loss": "mse", "output": "sigmoid",
        "strategy": "tvo", "lr": 0.5, "epochs": 6}
TIMINGS = ["epoch_seconds", "samples_per_second"]


def metrics(run_dir: Path) -> list[dict]:
    return pq.read_table(run_dir / results.METRICS_FILE).drop_columns(TIMINGS).to_pylist()


def cancel_at(run_dir: Path, epoch: int):
    """A progress callback that asks for a cancel when `epoch` is reported."""
    def progress(reached: int, epochs: int, row: dict) -> None:
        if reached == epoch:
            results.request_cancel(run_dir, "test")
    return progress


@pytest.mark.parametrize("eval_every", [1, 2])
def test_cancelled_after_the_epoch_then_resumed_to_the_same_metrics(tmp_path: Path,
                                                                    eval_every: int) -> None:
    spec = JobSpec.from_dict({**TINY, "eval_every": eval_every})
    run_dir = tmp_path / "job"
    # epoch 0 is reported before the first epoch trains: the job stops after epoch 1, which
    # with eval_every=2 is not an evaluated epoch and is checkpointed for the cancel alone
    result = run_job(spec, run_dir, progress=cancel_at(run_dir, 0))
    assert (result.state, result.epochs_done) == ("cancelled", 1)
    status = results.read_status(run_dir)
    assert (status["state"], status["epochs_done"], status["error"]) == ("cancelled", 1, None)
    assert not (run_dir / results.METRICS_FILE).exists()
    assert not results.is_finished(run_dir)
    saved = read_checkpoint(run_dir / results.CHECKPOINT_FILE)
    assert saved["epoch"] == 1
    assert "cancelled after epoch 1" in (run_dir / results.LOG_FILE).read_text()

    again = run_job(spec, run_dir)  # the request is still there: not started, still cancelled
    assert (again.state, results.read_status(run_dir)["attempts"]) == ("cancelled", 1)

    assert results.clear_cancel(run_dir)
    assert run_job(spec, run_dir).state == "done"
    assert results.read_status(run_dir)["attempts"] == 2
    straight = tmp_path / "straight"
    run_job(spec, straight)
    assert metrics(run_dir) == metrics(straight)


def test_a_request_at_the_last_epoch_lets_the_job_finish(tmp_path: Path) -> None:
    spec = JobSpec.from_dict({**TINY, "epochs": 2})
    run_dir = tmp_path / "job"
    assert run_job(spec, run_dir, progress=cancel_at(run_dir, 2)).state == "done"
    assert results.is_finished(run_dir)


def test_a_job_cancelled_before_it_starts_is_recorded_and_not_trained(tmp_path: Path) -> None:
    spec = JobSpec.from_dict(TINY)
    run_dir = tmp_path / "job"
    run_dir.mkdir()
    results.request_cancel(run_dir, "test")
    result = run_job(spec, run_dir)
    assert (result.state, result.epochs_done) == ("cancelled", 0)
    assert results.read_status(run_dir)["state"] == "cancelled"
    assert not (run_dir / results.CHECKPOINT_FILE).exists()
    assert results.read_spec(run_dir)[0] == spec


def test_clear_cancel_says_whether_there_was_a_request(tmp_path: Path) -> None:
    assert not results.cancel_requested(tmp_path)
    results.request_cancel(tmp_path, "me@host")
    assert results.cancel_requested(tmp_path)
    assert results.read_json(tmp_path / results.CANCEL_FILE)["requested_by"] == "me@host"
    assert results.clear_cancel(tmp_path) and not results.clear_cancel(tmp_path)


# ---------------------------------------------------------------------------------------------
# Packs: one member stops at its epoch end, the others train on


def test_a_cancelled_member_stops_at_its_epoch_end_and_resumes_like_a_job_alone(tmp_path):
    jobs = specs({"seed": 0}, {"seed": 1}, {"seed": 2}, epochs=4)
    stopping = tmp_path / "packed" / jobs[1].job_id

    def cancel_second_at_epoch_1(job_id: str, epoch: int, epochs: int, row: dict) -> None:
        if job_id == jobs[1].job_id and epoch == 1:
            results.request_cancel(stopping, "test")

    packed = run_stack(requests(jobs, tmp_path / "packed"), progress=cancel_second_at_epoch_1)
    assert [(r.state, r.epochs_done) for r in packed] == [("done", 4), ("cancelled", 1),
                                                           ("done", 4)]
    assert not (stopping / results.METRICS_FILE).exists()
    assert read_checkpoint(stopping / results.CHECKPOINT_FILE)["epoch"] == 1
    assert "cancelled after epoch 1" in (stopping / results.LOG_FILE).read_text()
    assert results.read_status(stopping)["epochs_done"] == 1

    assert results.clear_cancel(stopping)
    assert run_job(jobs[1], stopping, grid="g").state == "done"  # resumed alone, after epoch 1
    assert "resumed after epoch 1" in (stopping / results.LOG_FILE).read_text()
    for spec in jobs:
        run_job(spec, tmp_path / "alone" / spec.job_id, grid="g")
        rows_alone = metric_rows(tmp_path / "alone" / spec.job_id)
        rows_packed = metric_rows(tmp_path / "packed" / spec.job_id)
        assert all(close(a[k], b[k]) for a, b in zip(rows_packed, rows_alone, strict=True)
                   for k in b), spec.job_id


def test_a_member_cancelled_before_the_pack_starts_is_not_trained(tmp_path):
    jobs = specs({"seed": 0}, {"seed": 1}, {"seed": 2}, epochs=2)
    waiting = tmp_path / jobs[2].job_id
    waiting.mkdir()
    results.request_cancel(waiting, "test")
    outcome = run_stack(requests(jobs, tmp_path))
    assert [(r.state, r.epochs_done) for r in outcome] == [("done", 2), ("done", 2),
                                                            ("cancelled", 0)]
    assert not (waiting / results.CHECKPOINT_FILE).exists()
    assert "in a stack of 2 jobs" in (tmp_path / jobs[0].job_id / results.LOG_FILE
                                              ).read_text()
