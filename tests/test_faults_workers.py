"""A worker killed mid-stack (issue 23), on a real embedded Ray: SIGKILL to the process that
trains a stack, found by the pid its stack's start records. Without --retries its jobs fail
with a line saying what to do and the rerun resumes them; with --retries the run resumes them
itself. Either way the metrics equal a clean run's."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from jobs.rundir.index import StateIndex
from tests import rundir_view
from tests.faults import metrics, reached_epoch, start_tvo, tvo, wait_for, write_grid

RUN = ("--pack", "off", "--max-parallel", "1")  # the embedded Ray (the default backend)
SHAPE = {"epochs": 30, "seeds": 2}


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("clean")
    grid = write_grid(folder, **SHAPE)
    code, out, err = tvo("run", str(grid), *RUN, "--out", "out", cwd=folder)
    assert code == 0, out + err
    return metrics(folder / "out" / "faulty")


def kill_a_worker(tmp_path: Path, *extra: str) -> tuple[str, int, str, str]:
    """Run the grid, SIGKILL the worker of the first stack once it saved a checkpoint after
    epoch 3; returns (the job it trained, the run's exit code, stdout, stderr)."""
    write_grid(tmp_path, **SHAPE)
    grid_dir = tmp_path / "out" / "faulty"
    process = start_tvo("run", "faulty.yaml", *RUN, *extra, "--out", "out", cwd=tmp_path,
                        TVO_CHECKPOINT_SECONDS="0")
    try:
        start = wait_for(reached_epoch(grid_dir, 3), process)
        assert start["pid"] != process.pid  # a Ray worker, not the runner
        os.kill(start["pid"], signal.SIGKILL)
        out, err = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    [job_id] = start["jobs"]
    return job_id, process.returncode, out, err


def test_a_killed_worker_without_retries_fails_its_job_and_the_rerun_resumes_it(
        tmp_path: Path, clean: dict[str, Any]) -> None:
    job_id, code, out, err = kill_a_worker(tmp_path)
    grid_dir = tmp_path / "out" / "faulty"
    assert code == 1, out + err
    assert "2 jobs: done 1 · running 0 · failed 1" in out
    assert f"failed {job_id}: worker crashed: " in out
    assert ("1 jobs lost their worker (killed, cancelled by the cluster, or out of memory): run "
            "the same command again to resume them from their last checkpoint, or add "
            "--retries N to retry them within the run") in out
    assert rundir_view.state(grid_dir, job_id) == "failed"
    assert StateIndex(grid_dir).refresh().broken_files() == []
    assert rundir_view.checkpointed_epoch(grid_dir, job_id)  # kept for the rerun

    code, out, err = tvo("run", "faulty.yaml", *RUN, "--out", "out", cwd=tmp_path)
    assert code == 0, out + err
    assert "1 already done before this run" in out
    assert "resumed after epoch" in rundir_view.log(grid_dir, job_id)
    assert metrics(grid_dir) == clean


def test_a_killed_worker_with_retries_is_resumed_within_the_run(
        tmp_path: Path, clean: dict[str, Any]) -> None:
    job_id, code, out, err = kill_a_worker(tmp_path, "--retries", "1")
    grid_dir = tmp_path / "out" / "faulty"
    assert code == 0, out + err
    assert "2 jobs: done 2" in out and "lost their worker" not in out
    record = rundir_view.record(grid_dir, job_id)
    assert (record.state.value, record.attempts) == ("done", 2)
    assert "resumed after epoch" in rundir_view.log(grid_dir, job_id)
    assert metrics(grid_dir) == clean
