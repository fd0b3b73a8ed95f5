"""A worker killed mid-stack (issue 23), on a real Ray: SIGKILL to the process that trains a
stack, found by the pid its stack's start records, while it stalls after its checkpoint of
epoch 2 (tests.faults.stalling_entry: no race with training). Without --retries its job fails
with a line saying what to do and the rerun resumes it; with --retries the run resumes it
itself. Either way the metrics equal a clean run's.

One local Ray serves the module (started here, as test_backend_ray does; a RayBackend uses a
Ray its process already runs), so each run costs its jobs, not a Ray start."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from cluster.backends import BackendSettings
from cluster.base import Resources
from cluster.ray import RayBackend, private_temp_dir, start_ray
from jobs.rundir.index import StateIndex
from runner.cli.interrupts import descendants
from runner.cli.run import print_report
from runner.dispatch.driver import RunOptions, run_grid
from tests import rundir_view
from tests.faults import (
    ROOT,
    STALL_EPOCH,
    clean_metrics,
    grid_specs,
    metrics,
    stalled,
    stalling_entry,
    start_event,
    wait_for,
)

RESOURCES = Resources(cpus=1)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return clean_metrics(tmp_path_factory)


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    """A local Ray of 2 CPUs for the module; its workers import this checkout."""
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), path]))
    temp_dir = private_temp_dir()  # short: Ray's sockets live here
    try:
        assert start_ray(num_cpus=2, temp_dir=temp_dir)
        import ray  # (after start_ray, which sets what Ray reads when first imported)

        yield
        ray_processes = descendants(os.getpid())  # raylet, GCS, workers: gone before the rmtree
        ray.shutdown()
        wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in ray_processes),
                 seconds=60)  # (a straggling worker would write its log dir again)
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
        if path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = path


def run(grid_dir: Path, retries: int = 0, marker: Path | None = None) -> tuple[int, str]:
    """The grid on Ray, a stack per job, one at a time (`--pack off --max-parallel 1`); with a
    `marker`, a stack stalls once for a test to kill it. Returns (exit code, what tvo run
    prints)."""
    entry = None if marker is None else functools.partial(stalling_entry, marker=str(marker))
    backend = RayBackend(BackendSettings(grid_dir=grid_dir, resources=RESOURCES, max_parallel=1,
                                         entry=entry))
    try:
        report = run_grid(grid_specs(), "faulty", grid_dir, backend, RESOURCES,
                          RunOptions(max_parallel=1, retries=retries, pack=1))
    finally:
        backend.close()
    console = Console(record=True, width=400)
    print_report(report, console)
    return report.exit_code, console.export_text()


def kill_a_worker(grid_dir: Path, retries: int = 0) -> tuple[str, int, str]:
    """Run the grid, SIGKILL the worker of the stack that stalls; returns (the job it trained,
    the run's exit code, what it printed)."""
    marker = grid_dir.parent / "stall"
    ended: list[tuple[int, str]] = []
    thread = threading.Thread(target=lambda: ended.append(run(grid_dir, retries, marker)))
    thread.start()
    try:
        note = stalled(marker, thread)
        start = start_event(grid_dir, note["job"])
        assert start["pid"] == note["pid"] != os.getpid()  # a Ray worker, not the runner
        os.kill(start["pid"], signal.SIGKILL)
    finally:
        thread.join(timeout=240)
    assert not thread.is_alive(), "the run kept waiting for a killed worker"
    [(code, text)] = ended
    return note["job"], code, text


def test_a_killed_worker_without_retries_fails_its_job_and_the_rerun_resumes_it(
        tmp_path: Path, clean: dict[str, Any]) -> None:
    grid_dir = tmp_path / "out" / "faulty"
    job_id, code, out = kill_a_worker(grid_dir)
    assert code == 1, out
    assert "3 jobs: done 2 · running 0 · failed 1" in out
    assert f"failed {job_id}: worker crashed: " in out
    assert ("1 jobs lost their worker (killed, cancelled by the cluster, or out of memory): run "
            "the same command again to resume them from their last checkpoint, or add "
            "--retries N to retry them within the run") in out
    assert rundir_view.state(grid_dir, job_id) == "failed"
    assert StateIndex(grid_dir).refresh().broken_files() == []
    assert rundir_view.checkpointed_epoch(grid_dir, job_id) == STALL_EPOCH  # kept for the rerun

    code, out = run(grid_dir)
    assert code == 0, out
    assert "2 already done before this run" in out
    assert f"resumed after epoch {STALL_EPOCH}" in rundir_view.log(grid_dir, job_id)
    assert metrics(grid_dir) == clean


def test_a_killed_worker_with_retries_is_resumed_within_the_run(
        tmp_path: Path, clean: dict[str, Any]) -> None:
    grid_dir = tmp_path / "out" / "faulty"
    job_id, code, out = kill_a_worker(grid_dir, retries=1)
    assert code == 0, out
    assert "3 jobs: done 3" in out and "lost their worker" not in out
    record = rundir_view.record(grid_dir, job_id)
    assert (record.state.value, record.attempts) == ("done", 2)
    assert f"resumed after epoch {STALL_EPOCH}" in rundir_view.log(grid_dir, job_id)
    assert metrics(grid_dir) == clean
