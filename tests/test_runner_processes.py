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

from jobs.rundir import results
from jobs.rundir.claims import current_holder
from runner.cli.interrupts import descendants
from runner.grid.expand import expand, load_grid
from tests.backend_suite import metrics_without_timing, reference_run
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
    runs = grid_dir / "runs"
    if not runs.is_dir():
        return {}
    return {run.name: results.read_status(run)["state"] for run in runs.iterdir()}


def mid_job(grid_dir: Path) -> bool:
    """At least one job finished and another has a checkpoint but no final metrics yet."""
    states = job_states(grid_dir)
    finished = sum(state == "done" for state in states.values())
    resumable = any(state == "running" and (grid_dir / "runs" / job / "checkpoint.pt").exists()
                    for job, state in states.items())
    return finished >= 1 and resumable


def last_write(grid_dir: Path) -> float:
    return max(path.stat().st_mtime for path in (grid_dir / "runs").rglob("*") if path.is_file())


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
    interrupted = {job for job, state in before.items()  # and a checkpoint to resume from
                   if state == "running" and (grid_dir / "runs" / job / "checkpoint.pt").exists()}
    assert done_before

    rerun = start_runner(tmp_path, "inline")
    output = rerun.communicate(timeout=300)[0].decode()
    assert rerun.returncode == 0, output
    assert f"{len(done_before)} already done before this run" in output

    specs = expand(load_grid(str(tmp_path / "grid.yaml")))
    for spec in specs:
        run_dir = grid_dir / "runs" / spec.job_id
        status = results.read_status(run_dir)
        assert status["state"] == "done"
        if spec.job_id in done_before:
            assert status["attempts"] == 1  # finished jobs were not run again
        if spec.job_id in interrupted:
            assert "resumed after epoch" in (run_dir / "log.txt").read_text()
        clean = tmp_path / "killme" / spec.job_id
        assert reference_run(spec, clean).state == "done"
        assert metrics_without_timing(run_dir) == metrics_without_timing(clean)
    assert not list(grid_dir.rglob("*.tmp"))  # no partial files left behind


def test_sigkill_mid_grid_then_rerun_inline(tmp_path: Path) -> None:
    (tmp_path / "grid.yaml").write_text(GRID)
    kill_mid_grid(tmp_path, "inline")
    assert "running" in job_states(tmp_path / "out" / "killme").values()  # one to resume
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
    while not any((run / "checkpoint.pt").exists() for run in (grid_dir / "runs").glob("*")
                  if (grid_dir / "runs").is_dir()):
        assert process.poll() is None, process.communicate()[0].decode()
        assert time.monotonic() < deadline, "no member ever checkpointed"
        time.sleep(0.005)
    time.sleep(0.05)  # into the next epoch
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert "running" in job_states(grid_dir).values()
    rerun = start_runner(tmp_path, "inline", pack="3")
    output = rerun.communicate(timeout=300)[0].decode()
    assert rerun.returncode == 0, output
    resumed = 0
    for spec in expand(load_grid(str(tmp_path / "grid.yaml"))):
        run_dir = grid_dir / "runs" / spec.job_id
        assert results.read_status(run_dir)["state"] == "done"
        log = (run_dir / "log.txt").read_text()
        assert "in a stack of 3 jobs" in log
        resumed += "resumed after epoch" in log
        clean = tmp_path / "killme" / spec.job_id  # alone, in a dir of the grid's name
        assert reference_run(spec, clean).state == "done"
        assert close(metrics_without_timing(run_dir), metrics_without_timing(clean))
    assert resumed >= 1


def test_two_runner_processes_on_one_dir_run_each_job_once(tmp_path: Path) -> None:
    (tmp_path / "grid.yaml").write_text(GRID.replace("epochs: 6", "epochs: 3"))
    runners = [start_runner(tmp_path, "inline") for _ in range(2)]
    outputs = [runner.communicate(timeout=300)[0].decode() for runner in runners]
    assert [runner.returncode for runner in runners] == [0, 0], outputs
    states = job_states(tmp_path / "out" / "killme")
    assert len(states) == 6 and set(states.values()) == {"done"}
    attempts = [results.read_status(tmp_path / "out" / "killme" / "runs" / job)["attempts"]
                for job in states]
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
    for run in (grid_dir / "runs").iterdir():
        assert not current_holder(run).is_live()  # released: the next runner starts at once
    status = subprocess.run([sys.executable, "-m", "runner", "status", "out/killme"], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                            text=True, check=True).stdout
    assert "interrupted: their runner is gone" in status


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
    process = subprocess.Popen(
        [sys.executable, "-m", "runner", "run", "grid.yaml", "--out", "out", "--pack", "off"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(long_tmp)},
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
