"""The SLURM backend against the real dev cluster (cluster/slurm/dev-cluster.sh up).

Each test submits a few tiny jobs (digits, hidden [8], 1-3 epochs). Tests that need fake GPUs or
a small MaxArraySize restart the cluster: see test_slurm_cluster_shapes.py.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cluster import backends
from cluster.backends import BackendError, BackendSettings
from cluster.base import Resources
from cluster.slurm import commands
from cluster.slurm.backend import SlurmBackend
from cluster.slurm.records import latest_placements
from cluster.slurm.settings import SLURM_KEYS
from jobs.entry import StackRequest
from jobs.spec import JobSpec
from runner.cli.app import app
from runner.dispatch.driver import RunOptions, RunReport, run_grid
from tests import rundir_view
from tests.backend_suite import (
    BackendSuite,
    MakeBackend,
    metrics_without_timing,
    reference_metrics,
)
from tests.slurm_cluster import QUICK_DEATH, current_shape, run, sacct_states, write_grid
from tests.slurm_entries import raising_entry, slow_entry

pytestmark = pytest.mark.slurm


@pytest.fixture(autouse=True, scope="module")
def _slurm_is_up(slurm_cluster: str) -> None:
    """A running SLURM (conftest starts the dev cluster when it is installed but stopped)."""


@pytest.fixture
def make_backend() -> MakeBackend:
    def quick(settings: BackendSettings) -> SlurmBackend:
        return SlurmBackend(dataclasses.replace(settings, slurm={**QUICK_DEATH, **settings.slurm}))
    return quick


class TestSlurmBackend(BackendSuite):
    pass


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


# -- bad settings: SLURM's reason, exit 2, nothing written ---------------------------------------


def test_unknown_partition_fails_before_anything_is_written(tmp_path: Path) -> None:
    grid = write_grid(tmp_path / "g.yaml", "bad", slurm={"partition": "nope"})
    code, out, err = cli("run", str(grid), "--backend", "slurm", "--out", str(tmp_path / "out"))
    assert code == 2
    assert err == ("Error: SLURM rejects this grid's resources and slurm settings: Invalid "
                   "partition name specified (asked for partition=nope, ntasks_per_node=1, "
                   "cpus_per_task=1, time=5)\n")
    assert not (tmp_path / "out").exists()


def test_more_gpus_than_the_cluster_has(tmp_path: Path) -> None:
    too_many = current_shape().gpus + 1
    grid = write_grid(tmp_path / "g.yaml", "bad", resources={"gpus": too_many})
    code, _, err = cli("run", str(grid), "--backend", "slurm", "--out", str(tmp_path / "out"))
    assert code == 2
    assert err == ("Error: SLURM rejects this grid's resources and slurm settings: Requested "
                   f"node configuration is not available (asked for gpus_per_node={too_many}, "
                   "ntasks_per_node=1, cpus_per_task=1, time=5)\n")
    assert not (tmp_path / "out").exists()


def test_unknown_slurm_key(tmp_path: Path) -> None:
    grid = write_grid(tmp_path / "g.yaml", "bad", slurm={"partitoin": "debug"})
    code, _, err = cli("run", str(grid), "--backend", "slurm", "--out", str(tmp_path / "out"))
    assert code == 2
    assert err == (f"Error: {grid}: slurm: unknown key 'partitoin' (did you mean "
                   f"'partition'?); valid keys: {', '.join(SLURM_KEYS)}\n")
    assert not (tmp_path / "out").exists()


def test_the_test_only_script_asks_for_what_submitit_submits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sbatch --test-only runs on a script of tvo's own: its #SBATCH lines must be among those
    of the batch script submitit then writes for the grid's jobs."""
    checked: list[dict] = []
    test_submission = commands.test_submission

    def recorded(parameters: dict) -> None:
        checked.append(dict(parameters))
        test_submission(parameters)

    monkeypatch.setattr(commands, "test_submission", recorded)
    grid = write_grid(tmp_path / "g.yaml", "asked", seeds=1, resources={"mem_gb": 0.5},
                      slurm={"comment": "tvo test", "exclusive": False,
                             "additional_parameters": {"nice": 5}})
    code, out, err = cli("run", str(grid), "--backend", "slurm", "--out", str(tmp_path / "out"))
    assert (code, err) == (0, ""), out
    [parameters] = checked
    [script] = (tmp_path / "out" / "asked" / "slurm").glob("*/*_submission.sh")
    asked = commands.sbatch_lines(parameters)
    assert "#SBATCH --comment='tvo test'" in asked and "#SBATCH --nice=5" in asked
    assert "#SBATCH --mem=512MB" in asked
    assert set(asked) <= set(script.read_text().splitlines())


def test_make_backend_checks_settings(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="^resources.gpus_per_node=3 does not split evenly"):
        backends.make_backend("slurm", BackendSettings(grid_dir=tmp_path, resources=Resources(
            gpus_per_node=3, jobs_per_node=2)))


# -- jobs that die, jobs that are requeued --------------------------------------------------------


def slow_run(grid_dir: Path, specs: list[JobSpec], seconds_per_epoch: float,
             reports: list[RunReport]) -> threading.Thread:
    resources = Resources(cpus=1, timeout_min=5)
    backend = SlurmBackend(BackendSettings(
        grid_dir=grid_dir, resources=resources, slurm=QUICK_DEATH,
        entry=functools.partial(slow_entry, seconds_per_epoch=seconds_per_epoch)))

    def go() -> None:
        reports.append(run_grid(specs, grid_dir.name, grid_dir, backend, resources,
                                RunOptions()))

    thread = threading.Thread(target=go)
    thread.start()
    return thread


def slurm_id_once_training(grid_dir: Path, spec: JobSpec, timeout: float = 60) -> str:
    """The SLURM job of `spec`, as soon as the job has started training."""
    deadline = time.monotonic() + timeout
    while rundir_view.state(grid_dir, spec.job_id) != "running":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    return latest_placements(grid_dir)[spec.job_id].slurm_id


def tiny(seed: int, epochs: int) -> JobSpec:
    return JobSpec.from_dict({"dataset": "digits", "hidden": [8], "epochs": epochs,
                              "seed": seed, "output": "sigmoid", "loss": "mse", "lr": 0.5})


def test_scancel_is_reported_failed_with_state_and_log(tmp_path: Path) -> None:
    grid_dir = tmp_path / "killed"
    spec = tiny(0, epochs=3)
    reports: list[RunReport] = []
    thread = slow_run(grid_dir, [spec], 30.0, reports)
    slurm_id = slurm_id_once_training(grid_dir, spec)
    assert run("scancel", slurm_id).returncode == 0
    thread.join(timeout=60)
    assert not thread.is_alive(), "the driver kept waiting for a cancelled job"
    [report] = reports
    assert report.exit_code == 1
    [problem] = report.problems
    placement = latest_placements(grid_dir)[spec.job_id]
    assert (problem.job_id, problem.state) == (spec.job_id, "failed")
    # with the last line of the task's stderr, here srun's: "srun: error: vm: task 0: Killed"
    assert re.fullmatch(re.escape(f"worker crashed: SLURM job {slurm_id} ended CANCELLED by 0 "
                                  "without a result (srun: error: ") + r".*: task 0: \w+"
                        + re.escape(f"); log {placement.log}"), problem.error), problem.error
    assert placement.log.exists()
    assert rundir_view.state(grid_dir, spec.job_id) == "failed"


def test_a_task_that_raises_is_a_crash_with_its_traceback(tmp_path: Path) -> None:
    """The task's exception comes back through submitit's job.result(): its last line, where it
    ran, and the whole traceback in the outcome's info."""
    resources = Resources(cpus=1, timeout_min=5)
    backend = SlurmBackend(BackendSettings(grid_dir=tmp_path / "raises", resources=resources,
                                           entry=raising_entry))
    spec = tiny(0, epochs=1)
    backend.submit([StackRequest(str(tmp_path / "raises"), (spec,))], resources)
    [outcome] = list(backend.outcomes())
    placement = latest_placements(tmp_path / "raises")[spec.job_id]
    assert outcome.results == ()
    assert outcome.crash == (f"RuntimeError: the unit of {spec.job_id} broke before training "
                             f"(SLURM job {placement.slurm_id}, log {placement.log})")
    assert outcome.info["traceback"].startswith("Traceback (most recent call last)")
    assert "raising_entry" in outcome.info["traceback"]


def test_requeued_jobs_resume_to_identical_metrics(tmp_path: Path) -> None:
    """One job is preempted (USR2, as SLURM and submitit's job._interrupt() send it), the other
    requeued by an admin (scontrol requeue); both resume from their last epoch checkpoint."""
    grid_dir = tmp_path / "requeued"
    # 4 s asleep after epochs 1-3: after the first checkpoint 8 s of work are left, more than
    # the 5 s SLURM waits (KillWait) between the SIGTERM submitit ignores and the SIGKILL.
    preempted, requeued = tiny(0, epochs=4), tiny(1, epochs=4)
    reports: list[RunReport] = []
    thread = slow_run(grid_dir, [preempted, requeued], 4.0, reports)
    interrupt = {preempted.job_id: ["scancel", "--signal", "USR2"],
                 requeued.job_id: ["scontrol", "requeue"]}
    deadline = time.monotonic() + 60
    while interrupt:  # each as soon as it saved its first checkpoint
        assert time.monotonic() < deadline, "the jobs never saved a checkpoint"
        for job_id in list(interrupt):
            if rundir_view.checkpointed_epoch(grid_dir, job_id) is not None:
                slurm_id = latest_placements(grid_dir)[job_id].slurm_id
                assert run(*interrupt.pop(job_id), slurm_id).returncode == 0
        time.sleep(0.05)
    thread.join(timeout=120)
    [report] = reports
    assert (report.exit_code, report.counts.done) == (0, 2)
    for spec in (preempted, requeued):
        assert "resumed after epoch" in rundir_view.log(grid_dir, spec.job_id)
        assert rundir_view.record(grid_dir, spec.job_id).attempts == 2
        # trained on one thread, like a 1-cpu job
        assert metrics_without_timing(grid_dir, spec) == reference_metrics(spec,
                                                                           tmp_path / "clean")
    placement = latest_placements(grid_dir)[preempted.job_id]
    paths = placement.job.paths
    log = paths.stdout.read_text() + paths.stderr.read_text()
    assert "Caught signal SIGUSR2" in log and "Requeued job" in log


# -- detach, then status ---------------------------------------------------------------------------


def test_detach_then_status_with_sacct(tmp_path: Path) -> None:
    grid = write_grid(tmp_path / "g.yaml", "away", seeds=2)
    started = time.monotonic()
    code, out, err = cli("run", str(grid), "--backend", "slurm", "--detach",
                         "--out", str(tmp_path / "out"))
    grid_dir = tmp_path / "out" / "away"
    assert (code, err) == (0, "")
    assert time.monotonic() - started < 15  # it did not wait for the jobs
    assert str(grid_dir) in out
    placements = latest_placements(grid_dir)
    assert len(placements) == 2
    deadline = time.monotonic() + 90
    while True:
        code, out, err = cli("status", str(grid_dir))
        assert (code, err) == (0, "")
        if "SLURM: COMPLETED 2" in out or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert "done 2" in out
    slurm_ids = sorted(placement.slurm_id for placement in placements.values())
    assert len({slurm_id.split("_")[0] for slurm_id in slurm_ids}) == 1  # one array
    assert set(sacct_states(slurm_ids).values()) == {"COMPLETED"}
    for job_id, placement in placements.items():
        assert f"{job_id}  {placement.slurm_id}  COMPLETED  {placement.log}" in out
        assert "Job completed successfully" in placement.log.read_text()


def test_a_rerun_waits_for_jobs_a_detached_run_left_queued(tmp_path: Path) -> None:
    grid_dir = tmp_path / "again"
    spec = tiny(0, epochs=3)
    resources = Resources(cpus=1, timeout_min=5)

    def run_once(detach: bool) -> RunReport:
        backend = SlurmBackend(BackendSettings(
            grid_dir=grid_dir, resources=resources, slurm=QUICK_DEATH,
            entry=functools.partial(slow_entry, seconds_per_epoch=2.0)))
        return run_grid([spec], "again", grid_dir, backend, resources, RunOptions(detach=detach))

    detached = run_once(detach=True)
    assert (detached.exit_code, detached.detached) == (0, 1)
    waited = run_once(detach=False)  # at once: the job is still queued or running in SLURM
    assert (waited.exit_code, waited.counts.done) == (0, 1)
    assert len(list((grid_dir / "slurm").iterdir())) == 1  # nothing was submitted again
    assert rundir_view.record(grid_dir, spec.job_id).attempts == 1


# -- submitting from inside a SLURM job ------------------------------------------------------------


def test_nested_submission_does_not_inherit_the_parent_job(tmp_path: Path) -> None:
    """The parent asks for --mem-per-cpu; the grid's jobs ask for --mem. Inherited, the
    parent's SLURM_MEM_PER_CPU would stop the child's srun ("mutually exclusive")."""
    grid = write_grid(tmp_path / "g.yaml", "nested", seeds=1, resources={"mem_gb": 0.5})
    # not `sbatch --wait`: it polls with a growing interval, up to half a minute late
    submitted = run("sbatch", "--parsable", "--time=5", "--mem-per-cpu=400",
                    f"--output={tmp_path / 'parent.out'}", f"--chdir={Path.cwd()}",
                    f"--wrap=python -m runner run {grid} --backend slurm --out {tmp_path / 'out'}")
    assert submitted.returncode == 0, submitted.stderr
    parent = submitted.stdout.strip().split(";")[0]
    assert sacct_states([parent], timeout=120) == {parent: "COMPLETED"}, (
        tmp_path / "parent.out").read_text()
    assert "1 jobs: done 1" in (tmp_path / "parent.out").read_text()
