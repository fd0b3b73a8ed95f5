"""A cancelled SLURM array task (issue 23), on the real dev cluster: `scancel <array>_<task>`
of one job of a running array. That job fails with SLURM's word and what to do, its mates in the
array finish, and the rerun trains it to the same metrics as a clean run."""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import pytest
from rich.console import Console

from cluster.backends import BackendSettings
from cluster.base import Resources
from cluster.slurm.backend import SlurmBackend
from cluster.slurm.records import latest_placements
from jobs.spec import JobSpec
from runner.cli.run import print_report
from runner.dispatch.driver import RunOptions, RunReport, run_grid
from tests import rundir_view
from tests.backend_suite import metrics_without_timing, reference_run
from tests.slurm_cluster import run
from tests.slurm_entries import slow_entry
from tests.test_backend_slurm import slurm_id_once_training

pytestmark = pytest.mark.slurm

RESOURCES = Resources(cpus=1, timeout_min=5)


@pytest.fixture(autouse=True, scope="module")
def _slurm_is_up(slurm_cluster: str) -> None:
    """A running SLURM (conftest starts the dev cluster when it is installed but stopped)."""


def tiny(seed: int) -> JobSpec:
    return JobSpec.from_dict({"dataset": "digits", "hidden": [8], "epochs": 3, "seed": seed,
                              "output": "sigmoid", "loss": "mse", "lr": 0.5})


def grid_run(grid_dir: Path, specs: list[JobSpec], seconds_per_epoch: float | None,
             reports: list[RunReport]) -> threading.Thread:
    """The grid on SLURM, a job per array task (pack off), in a thread; `seconds_per_epoch`
    slows the first attempts down so that a test can cancel one while it trains."""
    entry = (None if seconds_per_epoch is None
             else functools.partial(slow_entry, seconds_per_epoch=seconds_per_epoch))
    backend = SlurmBackend(BackendSettings(grid_dir=grid_dir, resources=RESOURCES,
                                           slurm={"result_grace_s": 1}, entry=entry))

    def go() -> None:
        try:
            reports.append(run_grid(specs, grid_dir.name, grid_dir, backend, RESOURCES,
                                    RunOptions(pack=1)))
        finally:
            backend.close()

    thread = threading.Thread(target=go)
    thread.start()
    return thread


def test_a_cancelled_array_task_fails_its_job_alone_and_the_rerun_trains_it(
        tmp_path: Path) -> None:
    grid_dir = tmp_path / "cancelled"
    specs = [tiny(seed) for seed in range(3)]
    reports: list[RunReport] = []
    thread = grid_run(grid_dir, specs, 4.0, reports)
    victim = specs[0]
    slurm_id = slurm_id_once_training(grid_dir, victim)
    array_id, _, task = slurm_id.partition("_")
    assert task.isdigit(), f"{slurm_id} is no array task"
    assert {latest_placements(grid_dir)[spec.job_id].slurm_id.partition("_")[0]
            for spec in specs} == {array_id}  # one array: the others are its tasks
    assert run("scancel", slurm_id).returncode == 0
    thread.join(timeout=180)
    assert not thread.is_alive(), "the driver kept waiting for a cancelled task"

    [report] = reports
    assert (report.exit_code, report.counts.done, report.counts.failed) == (1, 2, 1)
    [problem] = report.problems
    assert (problem.job_id, problem.state) == (victim.job_id, "failed")
    assert problem.error.startswith(f"worker crashed: SLURM job {slurm_id} ended CANCELLED")
    console = Console(record=True, width=400)
    print_report(report, console)
    text = console.export_text()
    assert f"failed {victim.job_id}: worker crashed: SLURM job {slurm_id} ended CANCELLED" in text
    assert ("1 jobs lost their worker (killed, cancelled by the cluster, or out of memory): run "
            "the same command again to resume them from their last checkpoint, or add "
            "--retries N to retry them within the run") in text
    assert rundir_view.state(grid_dir, victim.job_id) == "failed"

    reports.clear()
    grid_run(grid_dir, specs, None, reports).join(timeout=180)
    [report] = reports
    assert (report.exit_code, report.counts.done, report.counts.skipped) == (0, 3, 2)
    for spec in specs:
        clean = tmp_path / "clean"
        assert reference_run(spec, clean).state == "done"  # one thread, like a 1-cpu task
        assert metrics_without_timing(grid_dir, spec) == metrics_without_timing(clean, spec)
