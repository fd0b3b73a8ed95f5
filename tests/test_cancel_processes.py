"""`tvo cancel` against real runner processes (inline and embedded Ray): the jobs end cancelled
with their checkpoint, the runner exits 1, and `tvo run` resumes them to the same metrics."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jobs.rundir.run_dir import RunDir
from runner.cli.app import app
from runner.dispatch.outdir import OutDirError, job_ids
from runner.grid.expand import expand, load_grid
from tests import rundir_view
from tests.backend_suite import metrics_without_timing, reference_metrics
from tests.test_engine import close

ROOT = Path(__file__).resolve().parents[1]
HOST = socket.gethostname()
# about 30 ms an epoch: a cancel request lands mid-job and is seen within an epoch
QUICK_EPOCHS = """\
name: quick
base: {dataset: digits, hidden: [32], epochs: 40, batch_size: 8, lr: 0.5, output: sigmoid,
       loss: mse}
grid: {seed: "range(2)"}
"""
# over a second an epoch: a request made just after an epoch ended is not seen for a second,
# so only the force (--grace 0) can stop the job before that
SLOW_EPOCHS = """\
name: slow
base: {dataset: digits, model: cnn, epochs: EPOCHS, batch_size: 2, lr: 0.05, output: sigmoid,
       loss: mse}
grid: {seed: "range(SEEDS)"}
"""


def slow_grid(seeds: int, epochs: int = 3) -> str:
    return SLOW_EPOCHS.replace("SEEDS", str(seeds)).replace("EPOCHS", str(epochs))


def start_runner(tmp_path: Path, grid: str, backend: str, *args: str) -> subprocess.Popen[str]:
    (tmp_path / "grid.yaml").write_text(grid)
    return subprocess.Popen(
        [sys.executable, "-m", "runner", "run", "grid.yaml", "--backend", backend, "--out", "out",
         "--pack", "off", *args], cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TVO_CHECKPOINT_SECONDS": "0"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(condition: Callable[[], bool], runner: subprocess.Popen[str],
             seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert runner.poll() is None, runner.communicate()[0]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def invoke(tmp_path: Path, *args: str) -> tuple[int, str]:
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        result = CliRunner().invoke(app, list(args))
    finally:
        os.chdir(cwd)
    return result.exit_code, result.stdout + result.stderr


def jobs_of(grid_dir: Path) -> list[str]:
    try:
        return job_ids(grid_dir)
    except OutDirError:
        return []


def state(grid_dir: Path, job_id: str) -> str:
    return rundir_view.state(grid_dir, job_id)


def mid_job(grid_dir: Path) -> list[str]:
    return [job for job in jobs_of(grid_dir) if state(grid_dir, job) == "running"
            and rundir_view.checkpointed_epoch(grid_dir, job) is not None]


def epoch_done(grid_dir: Path, job_id: str, epoch: int) -> bool:
    """The job's stack has ended `epoch` (and checkpointed it, every epoch here)."""
    return (rundir_view.checkpointed_epoch(grid_dir, job_id) or 0) >= epoch


def rerun_matches_uninterrupted(tmp_path: Path, grid_dir: Path, resumed: list[str]) -> None:
    code, output = invoke(tmp_path, "run", "grid.yaml", "--backend", "inline", "--out", "out")
    assert code == 0, output
    specs = {spec.job_id: spec for spec in expand(load_grid(str(tmp_path / "grid.yaml")))}
    for job in jobs_of(grid_dir):
        assert state(grid_dir, job) == "done"
        assert not RunDir(grid_dir).cancel_requested(job)
    for job in resumed:
        assert "resumed after epoch" in rundir_view.log(grid_dir, job)
        # the rerun may resume it in a stack with other jobs: equal to float tolerance
        assert close(metrics_without_timing(grid_dir, specs[job]),
                     reference_metrics(specs[job], tmp_path / "clean"))
    assert not RunDir(grid_dir).cancel_requested()


def test_cancel_an_inline_run_then_resume(tmp_path: Path) -> None:
    runner = start_runner(tmp_path, QUICK_EPOCHS, "inline")
    grid_dir = tmp_path / "out" / "quick"
    wait_for(lambda: bool(mid_job(grid_dir)), runner)
    [running] = mid_job(grid_dir)
    code, output = invoke(tmp_path, "cancel", "out/quick")
    assert code == 0, output
    assert re.search(rf"cancel requested for [12] unfinished jobs of out/quick; 1 running by "
                     rf"{HOST}:{runner.pid}\n", output)
    assert "`tvo run` on the same grid resumes the cancelled jobs" in output
    driver_output = runner.communicate(timeout=60)[0]
    assert runner.returncode == 1, driver_output
    assert re.search(r"cancelled \(`tvo cancel`\): 1 jobs stopped and keep their last checkpoint, "
                     r"[01] were not started", driver_output)
    assert f"cancelled {running}: `tvo run` resumes it" in driver_output
    assert state(grid_dir, running) == "cancelled"
    assert "cancelled after epoch" in rundir_view.log(grid_dir, running)
    assert rundir_view.rows(grid_dir, running) == []
    assert RunDir(grid_dir).cancel_requested()
    code, output = invoke(tmp_path, "status", "out/quick")
    assert re.search(r"cancelled 1 · pending [01]\n", output)
    rerun_matches_uninterrupted(tmp_path, grid_dir, [running])


def test_cancel_with_no_grace_stops_an_inline_job_mid_epoch(tmp_path: Path) -> None:
    runner = start_runner(tmp_path, slow_grid(1), "inline")
    grid_dir = tmp_path / "out" / "slow"
    wait_for(lambda: any(epoch_done(grid_dir, job, 1) for job in jobs_of(grid_dir)), runner)
    [job] = jobs_of(grid_dir)
    code, output = invoke(tmp_path, "cancel", "out/slow", "--grace", "0")
    assert code == 0, output
    assert (f"still running after the grace, stopped at once (back to their last checkpoint): "
            f"driver {HOST}:{runner.pid}") in output
    driver_output = runner.communicate(timeout=60)[0]
    assert runner.returncode == 1, driver_output
    assert state(grid_dir, job) == "cancelled"
    # Usually stopped mid-epoch 2, back to epoch 1's checkpoint; on a loaded machine epoch 2 may
    # end (and see the request) before the signal lands: then it stopped there, checkpointed.
    stopped_at = 2 if "cancelled after epoch 2" in rundir_view.log(grid_dir, job) else 1
    assert rundir_view.checkpointed_epoch(grid_dir, job) == stopped_at


@pytest.mark.ray
def test_cancel_one_job_of_a_ray_run_then_the_grid_then_resume(tmp_path: Path) -> None:
    runner = start_runner(tmp_path, slow_grid(2), "ray", "--max-parallel",
                          "2")
    grid_dir = tmp_path / "out" / "slow"
    wait_for(lambda: any(epoch_done(grid_dir, job, 1) for job in jobs_of(grid_dir)), runner)
    # both have started (on a loaded machine the second worker may start late)
    wait_for(lambda: len(jobs_of(grid_dir)) == 2
             and all(state(grid_dir, job) == "running" for job in jobs_of(grid_dir)), runner)
    # the job ahead: the other one is at most one epoch further when the grid's request comes,
    # so it still stops before its last epoch
    first = next(job for job in jobs_of(grid_dir) if epoch_done(grid_dir, job, 1))
    [other] = [job for job in jobs_of(grid_dir) if job != first]
    code, output = invoke(tmp_path, "cancel", "out/slow", "--job", first, "--grace", "0")
    assert code == 0, output
    assert f"cancel requested for 1 unfinished jobs of out/slow ({first}); 1 running" in output
    assert re.search(rf"stopped at once \(back to their last checkpoint\): worker {HOST}:\d+ "
                     rf"\(job {first}\)", output)
    assert state(grid_dir, first) == "cancelled"
    assert "cancelled after epoch" not in rundir_view.log(grid_dir, first)  # by force
    assert state(grid_dir, other) == "running" and not RunDir(grid_dir).cancel_requested(other)
    assert runner.poll() is None  # the rest of the grid goes on

    code, output = invoke(tmp_path, "cancel", "out/slow")
    assert code == 0, output
    driver_output = runner.communicate(timeout=60)[0]
    assert runner.returncode == 1, driver_output
    for job in (first, other):
        assert f"cancelled {job}: `tvo run` resumes it" in driver_output
    assert "cancelled after epoch" in rundir_view.log(grid_dir, other)  # at its epoch end
    rerun_matches_uninterrupted(tmp_path, grid_dir, [first, other])


@pytest.mark.ray
def test_cancel_with_no_grace_stops_a_ray_run_through_its_driver(tmp_path: Path) -> None:
    # ray.init installs a SIGTERM handler of its own; the run puts its own back after it
    runner = start_runner(tmp_path, slow_grid(1), "ray")
    grid_dir = tmp_path / "out" / "slow"
    wait_for(lambda: any(epoch_done(grid_dir, job, 1) for job in jobs_of(grid_dir)), runner)
    [job] = jobs_of(grid_dir)
    code, output = invoke(tmp_path, "cancel", "out/slow", "--grace", "0")
    assert code == 0, output
    assert f"stopped at once (back to their last checkpoint): driver {HOST}:{runner.pid}" in output
    driver_output = runner.communicate(timeout=60)[0]
    assert runner.returncode == 1, driver_output
    # Ray's own processes, stopped with the driver, may print to the same pipe mid-line, so the
    # summary line is not matched whole here; the job's line and its state say what happened.
    assert f"cancelled {job}" in driver_output
    assert state(grid_dir, job) == "cancelled"
    # Usually stopped mid-epoch 2, back to epoch 1's checkpoint; on a loaded machine epoch 2 may
    # end (and see the request) before the signal lands: then it stopped there, checkpointed.
    stopped_at = 2 if "cancelled after epoch 2" in rundir_view.log(grid_dir, job) else 1
    assert rundir_view.checkpointed_epoch(grid_dir, job) == stopped_at
