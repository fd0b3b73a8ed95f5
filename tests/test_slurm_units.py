"""Unit tests of the SLURM backend's pure parts: the settings table, GPU pinning, requeue rule,
SLURM output parsing, the clean client environment and the submission records. No cluster."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import submitit

from cluster.base import Resources
from cluster.slurm import commands
from cluster.slurm.records import Placement, latest_placements, new_folder, write_record
from cluster.slurm.settings import (
    PARAMETERS,
    SLURM_KEYS,
    Layout,
    SlurmSettings,
    SlurmSettingsError,
    signal_delay,
)
from cluster.slurm.task import UnitTasks, pin_gpus, timed_out
from jobs.entry import RunSettings, StackRequest
from jobs.rundir.layout import OutputDir
from jobs.spec import JobSpec


def test_unknown_slurm_key_lists_the_valid_ones() -> None:
    with pytest.raises(SlurmSettingsError) as caught:
        SlurmSettings.read({"partitoin": "gpu"})
    assert str(caught.value) == (
        "slurm: unknown key 'partitoin' (did you mean 'partition'?); valid keys: "
        + ", ".join(SLURM_KEYS))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("section", "message"), [
    ({"partition": 3}, "slurm.partition got 3; expected text"),
    ({"exclusive": "yes"}, "slurm.exclusive got 'yes'; expected true or false"),
    ({"max_num_timeout": True}, "slurm.max_num_timeout got True; expected an integer"),
    ({"result_grace_s": -1}, "slurm.result_grace_s got -1; expected a number >= 0"),
    ({"state_poll_s": 0}, "slurm.state_poll_s got 0; expected a number >= 0.1"),
    ({"setup": ["module load cuda", 3]},
     'slurm.setup must be a list of strings, e.g. setup: ["module load cuda"]'),
    ({"additional_parameters": ["reservation=x"]},
     "slurm.additional_parameters got ['reservation=x']; expected a mapping"),
])
def test_bad_slurm_values(section: dict, message: str) -> None:
    with pytest.raises(SlurmSettingsError) as caught:
        SlurmSettings.read(section)
    assert str(caught.value) == message


def test_one_table_maps_every_key_to_submitit(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Every submitit name in the table is one SlurmExecutor takes: as a constructor argument,
    or through update_parameters, which rejects a name it does not know."""
    fake = tmp_path / "bin"  # SlurmExecutor only looks for srun on PATH
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    samples = {str: "x", int: 1, bool: True, list: ["x"], dict: {"x": "y"}}
    for key, (parameter, kind, _) in PARAMETERS.items():
        if parameter is None:
            continue
        assert parameter.startswith("slurm_"), key
        name = parameter.removeprefix("slurm_")
        sample = samples[kind[0] if isinstance(kind, tuple) else kind]
        if name in ("max_num_timeout", "python"):
            submitit.SlurmExecutor(tmp_path, **{name: sample})
        else:
            submitit.SlurmExecutor(tmp_path).update_parameters(**{name: sample})


def test_exclusive_false_is_left_out() -> None:
    """submitit would spell it --exclusive=False, which sbatch rejects."""
    assert SlurmSettings.read({"exclusive": False}).parameters == {}
    assert SlurmSettings.read({"exclusive": True}).parameters == {"exclusive": True}


def test_executor_parameters_for_a_plain_job() -> None:
    settings = SlurmSettings.read({"partition": "gpu", "account": "lab", "qos": "high",
                                   "constraint": "a100",
                                   "additional_parameters": {"reservation": "r1"}})
    resources = Resources(cpus=4, gpus=1, mem_gb=1.5, timeout_min=120)
    assert settings.executor_parameters(resources, 1, "sweep", array_parallelism=8) == {
        "job_name": "tvo-sweep", "nodes": 1, "signal_delay_s": 90, "cpus_per_task": 4,
        "gpus_per_node": 1, "ntasks_per_node": 1, "mem": "1536MB", "time": 120,
        "array_parallelism": 8, "partition": "gpu", "account": "lab", "qos": "high",
        "constraint": "a100", "additional_parameters": {"reservation": "r1"},
    }


def test_packing_takes_gpus_and_memory_for_every_task() -> None:
    resources = Resources(cpus=2, mem_gb=4, timeout_min=30, gpus_per_node=4, jobs_per_node=4)
    assert Layout.of(resources) == Layout(units_per_job=4, gpus_per_task=1)
    parameters = SlurmSettings().executor_parameters(resources, 4, "g")
    assert (parameters["gpus_per_node"], parameters["ntasks_per_node"], parameters["mem"],
            parameters["cpus_per_task"]) == (4, 4, "16384MB", 2)
    partial = SlurmSettings().executor_parameters(resources, 3, "g")
    assert (partial["gpus_per_node"], partial["ntasks_per_node"]) == (3, 3)


def test_packing_rules() -> None:
    assert Layout.of(Resources(gpus_per_node=8, jobs_per_node=4)).gpus_per_task == 2
    assert Layout.of(Resources(jobs_per_node=3)) == Layout(3, 0)  # CPU packs
    with pytest.raises(SlurmSettingsError, match="^resources.gpus_per_node=3 does not split "
                                                 "evenly into resources.jobs_per_node=2 tasks"):
        Layout.of(Resources(gpus_per_node=3, jobs_per_node=2))
    with pytest.raises(SlurmSettingsError, match="^resources.gpus=2 per job, but "
                                                 "gpus_per_node/jobs_per_node gives each job 1"):
        Layout.of(Resources(gpus=2, gpus_per_node=2, jobs_per_node=2))


def test_signal_delay_fits_short_time_limits() -> None:
    assert signal_delay(120, None) == 90  # submitit's default where it fits
    assert signal_delay(1, None) == 15  # a quarter of a 1-minute limit, not 90 s
    assert signal_delay(4, None) == 60
    assert signal_delay(1, 20) == 20
    with pytest.raises(SlurmSettingsError, match=r"^slurm.signal_delay_s=60 is not below the "
                                                 r"time limit \(resources.timeout_min=1 = 60 s\)"):
        signal_delay(1, 60)


def test_timed_out_tells_time_limits_from_preemption() -> None:
    # a 5-minute job signalled 75 s before its end: a time-out; early on: a preemption
    assert timed_out(225, 300, 75)
    assert timed_out(200, 300, 75)  # within the slack of SLURM's timer
    assert not timed_out(60, 300, 75)
    assert not timed_out(10_000, 0, 0)  # no limit known


def tiny_request(tmp_path: Path, seed: int = 0) -> StackRequest:
    spec = JobSpec.from_dict({"dataset": "digits", "hidden": [8], "epochs": 1, "seed": seed})
    return StackRequest(str(tmp_path), (spec,), RunSettings("g"))


def test_checkpoint_requeues_unless_a_time_limit_passed_without_progress(tmp_path: Path) -> None:
    import submitit

    request = tiny_request(tmp_path)
    tasks = UnitTasks((request,), threads=1, time_limit_s=60, signal_delay_s=15)
    tasks.started = time.time() - 50  # signalled 50 s into a 60 s limit: the time-out warning
    with pytest.raises(RuntimeError, match="^no epoch checkpoint was saved within the time "
                                           "limit of 1 min, so a requeue would start from"):
        tasks.checkpoint()
    checkpoint = OutputDir(tmp_path).checkpoint_file(request.key)
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"saved during this attempt")
    requeued = tasks.checkpoint()
    assert isinstance(requeued, submitit.helpers.DelayedSubmission)
    assert requeued.function is tasks
    os.utime(checkpoint, (time.time() - 100, time.time() - 100))
    tasks.started = time.time() - 5  # a preemption early on: requeued, progress or not
    assert isinstance(tasks.checkpoint(), submitit.helpers.DelayedSubmission)


def test_pin_gpus_gives_each_task_its_own() -> None:
    environ = {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}
    assert pin_gpus(1, 1, environ) == "1"
    assert pin_gpus(1, 2, {"CUDA_VISIBLE_DEVICES": "4,5,6,7"}) == "6,7"
    assert pin_gpus(0, 1, {"CUDA_VISIBLE_DEVICES": "3"}) == "3"  # bound per task already
    with pytest.raises(RuntimeError, match="^task 0 needs 1 GPUs, but the job sees "
                                           "CUDA_VISIBLE_DEVICES=''"):
        pin_gpus(0, 1, {})


def test_sbatch_lines_spell_options_as_submitit_does() -> None:
    """The --test-only script's lines: sbatch options only (not setup, signal delay, ...),
    additional_parameters merged in, dashes for underscores, values quoted for the shell."""
    assert commands.sbatch_lines({
        "partition": "gpu", "gpus_per_node": 2, "exclusive": True, "mem": "1536MB",
        "constraint": "a100|v100", "comment": None, "setup": ["module load cuda"],
        "signal_delay_s": 90, "array_parallelism": 4, "srun_args": ["-v"],
        "additional_parameters": {"reservation": "r1", "mail_type": "END"}}) == [
        "#SBATCH --constraint='a100|v100'", "#SBATCH --exclusive", "#SBATCH --gpus-per-node=2",
        "#SBATCH --mail-type=END", "#SBATCH --mem=1536MB", "#SBATCH --partition=gpu",
        "#SBATCH --reservation=r1"]


def test_reason() -> None:
    assert commands.reason("sbatch: error: invalid partition specified: x\n"
                           "sbatch: error: Batch job submission failed: Invalid partition name "
                           "specified\n") == "Invalid partition name specified"
    assert commands.reason("allocation failure: Requested node configuration is not "
                           "available\n") == "Requested node configuration is not available"


def test_client_environment_drops_the_surrounding_job() -> None:
    inside = {"PATH": "/bin", "SLURM_JOB_ID": "7", "SLURM_MEM_PER_CPU": "500",
              "SLURM_CONF": "/etc/slurm/slurm.conf", "SBATCH_PARTITION": "x", "SRUN_CPUS": "2"}
    assert commands.client_environment(inside) == {"PATH": "/bin",
                                                   "SLURM_CONF": "/etc/slurm/slurm.conf"}
    outside = {"PATH": "/bin", "SBATCH_ACCOUNT": "lab"}  # the user's own choice: kept
    assert commands.client_environment(outside) == outside


def test_records_newest_run_wins(tmp_path: Path) -> None:
    first, second = new_folder(tmp_path), new_folder(tmp_path)
    assert first != second and first.parent == second.parent == tmp_path / "slurm"
    write_record(first, [Placement(first, "5_0", 0, ("a",)), Placement(first, "5_1", 0, ("b",))],
                 {})
    write_record(second, [Placement(second, "9", 1, ("b",))], {})
    placements = latest_placements(tmp_path)
    assert placements["a"] == Placement(first, "5_0", 0, ("a",))
    assert placements["b"].slurm_id == "9"
    assert placements["b"].log == second / "9_1_log.out"
    job = placements["b"].job  # re-attached: submitit's own handle on SLURM job 9, task 1
    assert isinstance(job, submitit.SlurmJob) and (job.job_id, job.task_id) == ("9", 1)
    assert job.paths.result_pickle == second / "9_1_result.pkl"
    assert latest_placements(tmp_path / "nothing") == {}


def test_status_reads_slurm_where_the_files_cannot_tell(tmp_path: Path) -> None:
    from cluster.slurm.status import SlurmJobState
    from runner.dispatch.status import JobStatus, with_slurm

    def slurm(state: str) -> SlurmJobState:
        return SlurmJobState("a", "7_1", 0, state, tmp_path / "7_1_0_log.out")

    # a detached run: the runner is gone, so the files alone say pending (interrupted)
    orphan = JobStatus("a", "pending", tmp_path, interrupted=True)
    assert with_slurm(orphan, slurm("RUNNING")).state == "running"
    queued = with_slurm(JobStatus("a", "pending", tmp_path), slurm("PENDING"))
    assert (queued.state, queued.interrupted) == ("pending", False)
    died = with_slurm(orphan, slurm("CANCELLED by 0"))
    assert (died.state, died.error) == ("failed", "SLURM job 7_1 ended CANCELLED by 0 without "
                                                  f"a result; log {tmp_path / '7_1_0_log.out'}")
    done = JobStatus("a", "done", tmp_path)
    assert with_slurm(done, slurm("COMPLETED")).state == "done"
    assert with_slurm(orphan, slurm("UNKNOWN")).state == "pending"  # no SLURM to ask
    assert with_slurm(orphan, None) == orphan


def slurm_faked(tmp_path: Path, sacct_body: str) -> dict[str, str]:
    """An environment whose squeue lists nothing and whose sacct runs `sacct_body` (sh) after
    noting its call in calls.txt: SLURM's answers without a cluster."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "squeue").write_text("#!/bin/sh\nexit 0\n")
    (fake / "sacct").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/calls.txt\n{sacct_body}\n")
    for script in fake.iterdir():
        script.chmod(0o755)
    repo = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "PYTHONPATH": repo}


def detached_grid(tmp_path: Path) -> tuple[Path, list[JobSpec]]:
    """A grid of two jobs a detached run left as elements 0 and 1 of SLURM array 70."""
    from runner.dispatch.outdir import prepare

    specs = [JobSpec.from_dict({"seed": seed}) for seed in (0, 1)]
    grid_dir = tmp_path / "grid"
    prepare(grid_dir, "name: grid\n", specs, "grid")
    folder = new_folder(grid_dir)
    write_record(folder, [Placement(folder, f"70_{index}", 0, (spec.job_id,))
                          for index, spec in enumerate(specs)], {})
    return grid_dir, specs


def status_run(grid_dir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", "status", str(grid_dir)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_status_reads_how_slurm_jobs_ended_through_submitits_watcher(tmp_path: Path) -> None:
    grid_dir, specs = detached_grid(tmp_path)
    env = slurm_faked(tmp_path, "printf 'JobID|State|NodeList\\n70_0|CANCELLED by 0|vm\\n"
                                "70_0.batch|CANCELLED|vm\\n70_1|TIMEOUT|vm\\n'")
    shown = status_run(grid_dir, env)
    assert (shown.returncode, shown.stderr) == (0, ""), shown.stderr
    assert "failed 2" in shown.stdout and "SLURM: CANCELLED 1 · TIMEOUT 1" in shown.stdout
    log = grid_dir / "slurm" / next((grid_dir / "slurm").iterdir()).name / "70_0_0_log.out"
    assert f"SLURM job 70_0 ended CANCELLED by 0 without a result; log {log}" in shown.stdout
    assert (tmp_path / "calls.txt").read_text().splitlines() == [
        "-o JobID,State,NodeList --parsable2 -j 70"]  # one call for both jobs


def test_status_without_sacct_keeps_its_output_clean(tmp_path: Path) -> None:
    """sacct failing (slurmdbd down): UNKNOWN, and submitit's warning on stderr only."""
    grid_dir, specs = detached_grid(tmp_path)
    env = slurm_faked(tmp_path, "echo 'sacct: error: Problem talking to the database' >&2\n"
                                "exit 1")
    shown = status_run(grid_dir, env)
    assert shown.returncode == 0
    assert "SLURM: UNKNOWN 2" in shown.stdout and "submitit" not in shown.stdout
    assert "Bypassing sacct error" in shown.stderr
