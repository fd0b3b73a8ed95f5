"""A cancelled SLURM array task (issue 23), on the real dev cluster: `scancel <array>_<task>`
of one job of a running array, while it stalls after its checkpoint of epoch 2
(tests.faults.stalling_entry: its mates train at full speed, nothing races). That job fails with
SLURM's word and what to do, its mates in the array finish, and the rerun trains it to the same
metrics as a clean run."""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from cluster.backends import BackendSettings
from cluster.base import Resources
from cluster.slurm.backend import SlurmBackend
from cluster.slurm.records import latest_placements
from runner.cli.run import print_report
from runner.dispatch.driver import RunOptions, RunReport, run_grid
from tests import rundir_view
from tests.faults import clean_metrics, grid_specs, metrics, stalled, stalling_entry, wait_for
from tests.slurm_cluster import QUICK_DEATH, run

pytestmark = pytest.mark.slurm

RESOURCES = Resources(cpus=1, timeout_min=5)


@pytest.fixture(autouse=True, scope="module")
def _slurm_is_up(slurm_cluster: str) -> None:
    """A running SLURM (conftest starts the dev cluster when it is installed but stopped)."""


def grid_run(grid_dir: Path, reports: list[RunReport],
             marker: Path | None = None) -> threading.Thread:
    """The grid on SLURM, a job per array task (pack off), in a thread; with a `marker`, the
    first task to reach epoch 3 stalls there (tests.faults.stalling_entry)."""
    entry = None if marker is None else functools.partial(stalling_entry, marker=str(marker))
    backend = SlurmBackend(BackendSettings(grid_dir=grid_dir, resources=RESOURCES,
                                           slurm=QUICK_DEATH, entry=entry))

    def go() -> None:
        try:
            reports.append(run_grid(grid_specs(), grid_dir.name, grid_dir, backend, RESOURCES,
                                    RunOptions(pack=1)))
        finally:
            backend.close()

    thread = threading.Thread(target=go)
    thread.start()
    return thread


def test_a_cancelled_array_task_fails_its_job_alone_and_the_rerun_trains_it(
        tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    clean: dict[str, Any] = clean_metrics(tmp_path_factory)
    grid_dir = tmp_path / "cancelled"
    reports: list[RunReport] = []
    thread = grid_run(grid_dir, reports, tmp_path / "stall")
    try:
        victim = stalled(tmp_path / "stall", thread)["job"]
        placements = wait_for(lambda: len(found := latest_placements(grid_dir)) == 3 and found,
                              thread)
        slurm_id = placements[victim].slurm_id
        array_id, _, task = slurm_id.partition("_")
        assert task.isdigit(), f"{slurm_id} is no array task"
        assert {placement.slurm_id.partition("_")[0]
                for placement in placements.values()} == {array_id}  # one array: its tasks
        assert run("scancel", slurm_id).returncode == 0
    finally:
        thread.join(timeout=180)
    assert not thread.is_alive(), "the driver kept waiting for a cancelled task"

    [report] = reports
    assert (report.exit_code, report.counts.done, report.counts.failed) == (1, 2, 1)
    [problem] = report.problems
    assert (problem.job_id, problem.state) == (victim, "failed")
    assert problem.error.startswith(f"worker crashed: SLURM job {slurm_id} ended CANCELLED")
    console = Console(record=True, width=400)
    print_report(report, console)
    text = console.export_text()
    assert f"failed {victim}: worker crashed: SLURM job {slurm_id} ended CANCELLED" in text
    assert ("1 jobs lost their worker (killed, cancelled by the cluster, or out of memory): run "
            "the same command again to resume them from their last checkpoint, or add "
            "--retries N to retry them within the run") in text
    assert rundir_view.state(grid_dir, victim) == "failed"

    reports.clear()
    grid_run(grid_dir, reports).join(timeout=180)
    [report] = reports
    assert (report.exit_code, report.counts.done, report.counts.skipped) == (0, 3, 2)
    assert metrics(grid_dir) == clean
