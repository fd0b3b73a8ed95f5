"""Cancel on a real SLURM: job ids from the SLURM backend's submission records, scancel of queued
jobs at once and of running ones after the grace, never of a job that also runs other jobs."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from cluster.slurm import records
from jobs.rundir.claims import ClaimBook
from jobs.spec import JobSpec
from runner.dispatch.cancel import request_cancel, stop
from runner.dispatch.outdir import prepare
from tests import rundir_view
from tests.backend_suite import record_dead_start

pytestmark = pytest.mark.slurm


def sbatch(partition: str, *options: str) -> str:
    done = subprocess.run(["sbatch", "--parsable", "-p", partition, "-J", "tvo-cancel-test",
                           "-o", "/dev/null", *options, "--wrap", "sleep 300"],
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip().split(";")[0]


def slurm_states(ids: list[str]) -> dict[str, str]:
    done = subprocess.run(["squeue", "-h", "-o", "%i %T", "-j", ",".join(ids)],
                          capture_output=True, text=True, timeout=60)
    return dict(line.split() for line in done.stdout.splitlines() if line.strip())


def ended_at(ids: list[str]) -> dict[str, float]:
    """When SLURM's accounting says each job ended, in seconds (SLURM keeps whole seconds)."""
    def read() -> dict[str, float]:
        done = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,End", "-j", ",".join(ids)],
                              capture_output=True, text=True, timeout=60)
        rows = dict(line.split("|") for line in done.stdout.splitlines() if "|" in line)
        return {job: datetime.fromisoformat(end).timestamp() for job, end in rows.items()
                if end[:1].isdigit()}

    wait_until(lambda: len(read()) == len(ids))
    return read()


def wait_until(condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.fixture
def slurm_jobs(slurm_cluster: str) -> Iterator[dict[str, str]]:
    """One running and one pending (held) SLURM job; scancelled at the end whatever happened."""
    ids = {"running": sbatch(slurm_cluster), "pending": sbatch(slurm_cluster, "--hold")}
    try:
        wait_until(lambda: slurm_states([ids["running"]]).get(ids["running"]) == "RUNNING")
        yield ids
    finally:
        subprocess.run(["scancel", *ids.values()], capture_output=True, timeout=60)


def write_record(grid_dir: Path, folder: str, units: list[tuple[str, int, list[str]]]) -> None:
    """What the SLURM backend writes for a run: slurm/<folder>/submission.json."""
    path = grid_dir / "slurm" / folder
    path.mkdir(parents=True)
    (path / "submission.json").write_text(json.dumps({"grid": grid_dir.name, "units": [
        {"slurm_id": slurm_id, "task": task, "job_ids": job_ids}
        for slurm_id, task, job_ids in units]}))


def test_the_newest_record_wins_and_packs_are_cancelled_only_whole(tmp_path: Path) -> None:
    write_record(tmp_path, "20260101-120000-0", [("7", 0, ["a"]), ("8_0", 0, ["b"])])
    write_record(tmp_path, "20260101-120000-1", [("9_0", 0, ["a"]), ("9_1", 0, ["c"]),
                                                 ("10", 0, ["d"]), ("10", 1, ["e"])])
    assert records.latest_slurm_ids(tmp_path) == {
        "9_0": {"a"}, "8_0": {"b"}, "9_1": {"c"}, "10": {"d", "e"}}
    assert records.slurm_ids_for(tmp_path, ["a", "b", "d"]) == ["8_0", "9_0"]
    assert records.slurm_ids_for(tmp_path, ["d", "e"]) == ["10"]
    assert records.slurm_ids_for(tmp_path / "elsewhere", ["a"]) == []


def test_queued_jobs_go_at_once_and_running_ones_after_the_grace(
        tmp_path: Path, slurm_jobs: dict[str, str]) -> None:
    running_spec, pending_spec = (JobSpec.from_dict({"seed": seed}) for seed in (0, 1))
    grid_dir = tmp_path / "grid"
    prepare(grid_dir, "name: grid\n", [running_spec, pending_spec], "grid")
    write_record(grid_dir, "20260101-120000-0", [
        (slurm_jobs["running"], 0, [running_spec.job_id]),
        (slurm_jobs["pending"], 0, [pending_spec.job_id])])
    record_dead_start(grid_dir, [running_spec])  # its stack started in a SLURM job (its
    # process is not this one: it counts as running while the driver below holds the job)

    with ClaimBook(grid_dir) as book:  # this process stands in for the driver that waits
        assert book.take([running_spec.job_id]).taken == [running_spec.job_id]

        def driver_sees_the_job_end() -> None:
            wait_until(lambda: slurm_jobs["running"] not in slurm_states([slurm_jobs["running"]]))
            book.release([running_spec.job_id])

        watcher = threading.Thread(target=driver_sees_the_job_end)
        watcher.start()
        request = request_cancel(grid_dir, [running_spec.job_id, pending_spec.job_id])
        assert request.running == [running_spec.job_id]
        started = time.monotonic()
        report = stop(request, grace_s=1.5)
        watcher.join()
    assert report.scancelled_pending == sorted(slurm_jobs.values())
    assert report.forced and report.scancelled == [slurm_jobs["running"]]
    assert report.signalled == []  # a SLURM job's process is SLURM's to stop
    assert report.marked == [running_spec.job_id]
    assert time.monotonic() - started >= 1.5
    assert slurm_states(list(slurm_jobs.values())) == {}
    assert rundir_view.state(grid_dir, running_spec.job_id) == "cancelled"
    ended = ended_at(list(slurm_jobs.values()))  # the queued one went a grace earlier
    assert ended[slurm_jobs["running"]] - ended[slurm_jobs["pending"]] >= 1
