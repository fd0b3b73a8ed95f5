"""Real runner processes: SIGKILL mid-grid then rerun, two runners on one dir at once, and what
an embedded Ray leaves open and behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs.rundir.claims import live_held
from jobs.rundir.index import StateIndex
from runner.cli.interrupts import descendants
from runner.dispatch.outdir import OutDirError, job_ids
from runner.grid.expand import expand, load_grid
from tests import rundir_view
from tests.backend_suite import metrics_without_timing, reference_metrics
from tests.listeners import Listener, listeners
from tests.test_engine import close

ROOT = Path(__file__).resolve().parents[1]
GRID = """\
name: killme
base: {dataset: digits, hidden: [32], epochs: 6, batch_size: 32, lr: 0.5, output: sigmoid,
       loss: mse}
grid: {seed: "range(6)"}
"""


def start_runner(tmp_path: Path, backend: str, pack: str = "off") -> subprocess.Popen[bytes]:
    """A runner process; its jobs checkpoint after every epoch, so a kill finds some half done.
    Jobs alone (pack off) unless asked: these tests follow single jobs through kills."""
    env = {**os.environ, "PYTHONPATH": str(ROOT),  # this checkout, not an installed tvo
           "TVO_CHECKPOINT_SECONDS": "0"}
    return subprocess.Popen(
        [sys.executable, "-m", "runner", "run", "grid.yaml", "--backend", backend, "--out", "out",
         "--max-parallel", "2", "--pack", pack],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def job_states(grid_dir: Path) -> dict[str, str]:
    try:
        listed = job_ids(grid_dir)
    except OutDirError:
        return {}
    index = StateIndex(grid_dir).refresh()
    return {job_id: index.record(job_id).state.value for job_id in listed}


def resumable(grid_dir: Path, states: dict[str, str]) -> set[str]:
    """Jobs that were running and have a checkpoint to resume from."""
    return {job for job, state in states.items() if state in ("running", "pending")
            and rundir_view.checkpointed_epoch(grid_dir, job) is not None}


def mid_job(grid_dir: Path) -> bool:
    """At least one job finished and another has a checkpoint but no final metrics yet."""
    states = job_states(grid_dir)
    finished = sum(state == "done" for state in states.values())
    return finished >= 1 and bool(resumable(grid_dir, states))


def last_write(grid_dir: Path) -> float:
    """When a file of the run was last written (claims aside: a dead runner's stays)."""
    return max(path.stat().st_mtime for path in grid_dir.rglob("*")
               if path.is_file() and "claims" not in path.parts)


def kill_mid_grid(tmp_path: Path, backend: str) -> None:
    """SIGKILL the runner while a job is half trained; nothing it started may write on."""
    grid_dir = tmp_path / "out" / "killme"
    process = start_runner(tmp_path, backend)
    deadline = time.monotonic() + 120
    while not mid_job(grid_dir):
        assert process.poll() is None, process.communicate()[0].decode()
        assert time.monotonic() < deadline, "the runner never got mid-grid"
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    killed_at = time.time()
    process.wait()
    time.sleep(1.5)
    # Left alone, an embedded Ray's workers train on for about 2 s after their driver dies.
    assert last_write(grid_dir) - killed_at < 1.0


def check_rerun_finishes_every_job_once(tmp_path: Path) -> None:
    grid_dir = tmp_path / "out" / "killme"
    before = job_states(grid_dir)
    done_before = {job for job, state in before.items() if state == "done"}
    interrupted = resumable(grid_dir, before)
    assert done_before

    rerun = start_runner(tmp_path, "inline")
    output = rerun.communicate(timeout=300)[0].decode()
    assert rerun.returncode == 0, output
    assert f"{len(done_before)} already done before this run" in output

    specs = expand(load_grid(str(tmp_path / "grid.yaml")))
    for spec in specs:
        record = rundir_view.record(grid_dir, spec.job_id)
        assert record.state == "done"
        if spec.job_id in done_before:
            assert record.attempts == 1  # finished jobs were not run again
        if spec.job_id in interrupted:
            assert "resumed after epoch" in rundir_view.log(grid_dir, spec.job_id)
        assert metrics_without_timing(grid_dir, spec) == reference_metrics(spec,
                                                                           tmp_path / "clean")
    assert not list(grid_dir.rglob("*.tmp"))  # no partial files left behind
    assert not list(grid_dir.glob("checkpoints/*"))  # every job finished: none kept


def test_sigkill_mid_grid_then_rerun_inline(tmp_path: Path) -> None:
    (tmp_path / "grid.yaml").write_text(GRID)
    kill_mid_grid(tmp_path, "inline")
    states = job_states(tmp_path / "out" / "killme")  # its runner is gone: pending, to resume
    assert resumable(tmp_path / "out" / "killme", states)
    check_rerun_finishes_every_job_once(tmp_path)


@pytest.mark.ray
def test_sigkill_of_a_ray_runner_stops_its_workers_then_rerun(tmp_path: Path) -> None:
    (tmp_path / "grid.yaml").write_text(GRID)
    kill_mid_grid(tmp_path, "ray")
    check_rerun_finishes_every_job_once(tmp_path)


def test_sigkill_of_a_packed_grid_mid_epoch_then_rerun(tmp_path: Path) -> None:
    """Two stacks of 3, killed while their members are mid-epoch: the rerun resumes every
    member from its own checkpoint to the metrics of the job trained alone, uninterrupted."""
    (tmp_path / "grid.yaml").write_text(GRID)
    grid_dir = tmp_path / "out" / "killme"
    process = start_runner(tmp_path, "inline", pack="3")
    deadline = time.monotonic() + 120
    while not list(grid_dir.glob("checkpoints/*.ckpt")):
        assert process.poll() is None, process.communicate()[0].decode()
        assert time.monotonic() < deadline, "no stack ever checkpointed"
        time.sleep(0.005)
    time.sleep(0.05)  # into the next epoch
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert resumable(grid_dir, job_states(grid_dir))
    rerun = start_runner(tmp_path, "inline", pack="3")
    output = rerun.communicate(timeout=300)[0].decode()
    assert rerun.returncode == 0, output
    resumed = 0
    for spec in expand(load_grid(str(tmp_path / "grid.yaml"))):
        assert rundir_view.state(grid_dir, spec.job_id) == "done"
        log = rundir_view.log(grid_dir, spec.job_id)
        assert "] 3 jobs on " in log
        resumed += "resumed after epoch" in log
        alone = reference_metrics(spec, tmp_path / "clean")
        assert close(metrics_without_timing(grid_dir, spec), alone)
    assert resumed >= 1


def test_two_runner_processes_on_one_dir_run_each_job_once(tmp_path: Path) -> None:
    (tmp_path / "grid.yaml").write_text(GRID.replace("epochs: 6", "epochs: 3"))
    runners = [start_runner(tmp_path, "inline") for _ in range(2)]
    outputs = [runner.communicate(timeout=300)[0].decode() for runner in runners]
    assert [runner.returncode for runner in runners] == [0, 0], outputs
    states = job_states(tmp_path / "out" / "killme")
    assert len(states) == 6 and set(states.values()) == {"done"}
    attempts = [rundir_view.record(tmp_path / "out" / "killme", job).attempts for job in states]
    assert attempts == [1] * 6


def test_sigterm_stops_the_run_releases_its_claims_and_says_how_to_resume(tmp_path: Path) -> None:
    (tmp_path / "grid.yaml").write_text(GRID)
    grid_dir = tmp_path / "out" / "killme"
    process = start_runner(tmp_path, "inline")
    deadline = time.monotonic() + 120
    while not mid_job(grid_dir):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    process.terminate()
    output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 130, output
    assert ("interrupted: unfinished jobs keep their last checkpoint; run the same command "
            "again to resume, or see `tvo status out/killme`") in output
    assert live_held(grid_dir) == set()  # released: the next runner starts at once
    status = subprocess.run([sys.executable, "-m", "runner", "status", "out/killme"], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                            text=True, check=True).stdout
    assert "interrupted: their runner is gone" in status


def test_sigkill_at_random_moments_then_rerun_trains_each_job_once(tmp_path: Path) -> None:
    """The runner killed three times at random moments (seeded: a failure here replays), in
    stacks of 2 that checkpoint after every epoch; the last run finishes the grid. Every job's
    rows are committed exactly once, and equal those of the job trained straight through."""
    import random

    import pyarrow.parquet as pq

    (tmp_path / "grid.yaml").write_text(GRID.replace("epochs: 6", "epochs: 4"))
    grid_dir = tmp_path / "out" / "killme"
    moments = random.Random(20261205).sample(range(5, 60), 3)  # tenths of a second
    for moment in moments:
        process = start_runner(tmp_path, "inline", pack="2")
        time.sleep(moment / 10)
        process.kill()
        process.wait()
    rerun = start_runner(tmp_path, "inline", pack="2")
    output = rerun.communicate(timeout=300)[0].decode()
    assert rerun.returncode == 0, output
    committed: dict[str, int] = {}
    for path in grid_dir.glob("results/*.parquet"):
        for job_id in set(pq.read_table(path, columns=["job_id"]).column(0).to_pylist()):
            committed[job_id] = committed.get(job_id, 0) + 1
    specs = expand(load_grid(str(tmp_path / "grid.yaml")))
    assert committed == {spec.job_id: 1 for spec in specs}  # no job's rows twice
    for spec in specs:
        assert close(metrics_without_timing(grid_dir, spec),
                     reference_metrics(spec, tmp_path / "clean"))


def ray_dir_of(pids: list[int]) -> Path | None:
    """The embedded Ray's temp dir, from its raylet's socket path (<dir>/session_*/sockets/...)."""
    for pid in pids:
        try:
            arguments = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        for argument in arguments:
            if argument.startswith("--raylet_socket_name="):
                return Path(argument.split("=", 1)[1]).parents[2]
    return None


@pytest.mark.ray
def test_an_embedded_ray_listens_on_loopback_only_and_leaves_no_dir(tmp_path: Path) -> None:
    """With a TMPDIR too long for Ray's socket paths the run makes a private dir in /tmp (never
    the shared /tmp/tvo-ray-<uid>); no process of the run listens beyond this machine; the dir
    is gone when the run ends."""
    (tmp_path / "grid.yaml").write_text(GRID.replace("epochs: 6", "epochs: 3"))
    long_tmp = tmp_path / ("t" * 40)
    long_tmp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(long_tmp)}
    env.pop("TVO_RAY_TMPDIR", None)  # the default choice (the suite sets one: conftest)
    process = subprocess.Popen(
        [sys.executable, "-m", "runner", "run", "grid.yaml", "--out", "out", "--pack", "off"],
        cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen: set[Listener] = set()
    ray_dir, ray_dir_mode = None, 0
    while process.poll() is None:
        pids = [process.pid, *descendants(process.pid)]
        seen.update(listeners(pids))
        ray_dir = ray_dir or ray_dir_of(pids)
        if ray_dir is not None and any(listener.name.startswith("ray::_run_unit")
                                       for listener in seen):
            with contextlib.suppress(OSError):  # the mode while the jobs train
                ray_dir_mode = ray_dir.stat().st_mode & 0o777
        time.sleep(0.1)
    output = process.communicate()[0].decode()
    assert process.returncode == 0, output
    names = {listener.name for listener in seen}
    assert {"gcs_server", "raylet"} <= names and any(n.startswith("ray::") for n in names), seen
    assert [listener for listener in seen if not listener.loopback] == []
    assert ray_dir is not None and ray_dir.parent == Path("/tmp"), ray_dir
    assert ray_dir.name.startswith("tvo-ray-") and ray_dir.name != f"tvo-ray-{os.getuid()}"
    assert ray_dir_mode == 0o700
    assert not ray_dir.exists()
    assert list(long_tmp.iterdir()) == []


def test_a_second_run_on_jobs_another_runner_holds_starts_no_backend(tmp_path: Path) -> None:
    """The first runner holds every job (one stack of 6); a second `tvo run --backend ray`
    waits for it without starting a Ray of its own, then reports the grid done; a third, on the
    finished grid, starts nothing either."""
    (tmp_path / "grid.yaml").write_text(GRID.replace("epochs: 6", "epochs: 30"))
    grid_dir = tmp_path / "out" / "killme"
    first = start_runner(tmp_path, "inline", pack="6")
    deadline = time.monotonic() + 120
    while len(live_held(grid_dir)) < 6:
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    second = subprocess.Popen([sys.executable, "-m", "runner", "run", "grid.yaml", "--out", "out"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    started_ray = False
    while second.poll() is None:
        names = set()
        for pid in descendants(second.pid):
            with contextlib.suppress(OSError):
                names.add(Path(f"/proc/{pid}/comm").read_text().strip())
        started_ray = started_ray or bool(names & {"raylet", "gcs_server"})
        time.sleep(0.1)
    output = second.communicate()[0].decode()
    assert second.returncode == 0, output
    assert not started_ray, output
    assert "killme: 6 jobs, none to start here -> out/killme" in output
    assert "6 jobs: done 6" in output
    assert first.wait(timeout=120) == 0
    third = subprocess.run([sys.executable, "-m", "runner", "run", "grid.yaml", "--out", "out"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert third.returncode == 0, third.stdout + third.stderr
    assert "none to start here" in third.stdout and "6 already done" in third.stdout
