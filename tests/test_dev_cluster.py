"""Checks of the dev SLURM cluster started by ``cluster/slurm/dev-cluster.sh up``.

The session fixture in conftest.py uses a running cluster or starts the dev cluster; without SLURM
installed (no ``sinfo``) these tests skip locally, and with ``CI`` set they fail instead, so a CI
run cannot go green by skipping. The script finds the running cluster's state dir itself (through
the /etc/slurm/slurm.conf link), or from ``TVO_SLURM_DIR`` (the session fixture sets it when it
starts a cluster of its own).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "cluster" / "slurm" / "dev-cluster.sh"
START_HINT = "start it with: bash cluster/slurm/dev-cluster.sh up"


@pytest.fixture(autouse=True, scope="module")
def _require_slurm(slurm_cluster: str) -> None:
    """Every test here runs against the session's SLURM (see tests/conftest.py)."""


def run(*cmd: str, timeout: float = 30, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(cmd), capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False
    )


def sacct_state(job_id: str) -> str:
    out = run("sacct", "-j", job_id, "-n", "-X", "-P", "-o", "State").stdout
    return out.strip().splitlines()[0].strip() if out.strip() else ""


def wait_sacct_state(job_id: str, timeout: float = 15) -> str:
    # slurmctld hands the job record to slurmdbd asynchronously: right after `sbatch --wait`
    # returns, sacct may not know the final state for a fraction of a second.
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = sacct_state(job_id)
        if state and state not in ("PENDING", "RUNNING", "COMPLETING"):
            return state
        time.sleep(0.2)
    return state


def submit(workdir: Path, *args: str) -> str:
    """sbatch without --wait; returns the job id. Output goes to workdir/out.txt."""
    base = ["sbatch", "--parsable", f"--chdir={workdir}", "--output=out.txt", "--time=1"]
    res = run(*base, *args)
    job_id = res.stdout.strip().split(";")[0]
    assert res.returncode == 0 and job_id.isdigit(), (res.stdout, res.stderr)
    return job_id


def node_gpus() -> int:
    out = run("sinfo", "-h", "-o", "%G").stdout
    m = re.search(r"gpu:(?:[^:,\s]+:)?(\d+)", out)
    return int(m.group(1)) if m else 0


def test_node_is_idle_or_mixed() -> None:
    res = run("sinfo", "-h", "-o", "%T")
    assert res.returncode == 0, f"sinfo failed: {res.stderr}; {START_HINT}"
    states = res.stdout.split()
    assert states, f"sinfo lists no node; {START_HINT}"
    assert states[0] in ("idle", "mixed"), f"node state {states[0]!r}"


def test_sbatch_wait_completes_and_sacct_says_completed(tmp_path: Path) -> None:
    res = run(
        "sbatch",
        "--wait",
        "--parsable",
        "--job-name=tvo-devcheck",
        f"--chdir={tmp_path}",
        "--output=out.txt",
        "--time=1",
        "--wrap",
        "echo hello-from-slurm",
        timeout=60,
    )
    assert res.returncode == 0, f"sbatch failed: {res.stderr}"
    job_id = res.stdout.strip().split(";")[0]
    assert job_id.isdigit(), res.stdout
    assert (tmp_path / "out.txt").read_text().strip() == "hello-from-slurm"
    assert wait_sacct_state(job_id) == "COMPLETED"


def test_failed_job_is_visible_in_sacct(tmp_path: Path) -> None:
    # submitit relies on sacct to notice a job that died without writing a result.
    # (No --wait here: sbatch --wait polls every ~2 s; sacct polling is quicker.)
    job_id = submit(tmp_path, "--wrap", "exit 3")
    assert wait_sacct_state(job_id, timeout=30) == "FAILED"


def test_status_exits_zero() -> None:
    res = run("bash", str(SCRIPT), "status")
    assert res.returncode == 0, res.stdout + res.stderr
    for daemon in ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd"):
        assert re.search(rf"^{daemon}\s+running", res.stdout, re.M), res.stdout


def test_max_array_size_matches_config() -> None:
    conf = Path(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf"))
    m = re.search(r"^MaxArraySize=(\d+)", conf.read_text(), re.M)
    assert m, f"no MaxArraySize in {conf}"
    out = run("scontrol", "show", "config").stdout
    live = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.M)
    assert live and live.group(1) == m.group(1), out


def test_gpu_tasks_get_their_own_device(tmp_path: Path) -> None:
    if node_gpus() < 2:
        pytest.skip("node has fewer than 2 fake GPUs (start with: dev-cluster.sh up --gpus 2)")
    job_id = submit(
        tmp_path,
        "--ntasks=2",
        "--gpus-per-task=1",
        "--wrap",
        "srun bash -c 'echo $SLURM_LOCALID=$CUDA_VISIBLE_DEVICES'",
    )
    assert wait_sacct_state(job_id, timeout=30) == "COMPLETED"
    seen = dict(line.split("=", 1) for line in (tmp_path / "out.txt").read_text().split())
    # Observed on SLURM 22.05 with TaskPlugin=task/none: --gpus-per-task binds each task to
    # its own GPU anyway (the gres plugin does it, not the task plugin).
    assert seen == {"0": "0", "1": "1"}, seen


def state_dir() -> Path:
    """The running cluster's state dir, as the script finds it."""
    status = run("bash", str(SCRIPT), "status").stdout
    found = re.search(r"cluster is up \(state dir (.+)\)", status)
    assert found, status
    return Path(found.group(1))


def test_the_cluster_keeps_its_state_and_temp_files_in_its_own_dir() -> None:
    directory = state_dir()
    assert directory != Path("/tmp/tvo-slurm")
    for part in ("db", "munge", "state/slurmctld", "log", "tmp", "run"):
        assert (directory / part).is_dir(), part
    conf = (directory / "etc" / "slurm.conf").read_text()
    assert f"StateSaveLocation={directory}/state/slurmctld" in conf
    mariadbd = (directory / "run" / "mariadbd.pid").read_text().strip()
    command = Path(f"/proc/{mariadbd}/cmdline").read_bytes().split(b"\0")
    assert f"--tmpdir={directory}/tmp".encode() in command  # never the caller's TMPDIR


def test_a_failed_up_stops_every_daemon_it_started() -> None:
    """With slurmdbd's port taken, `up` fails after starting munged and mariadbd: it must stop
    both before it exits. The cluster is restarted afterwards (state kept)."""
    directory = state_dir()
    down = run("bash", str(SCRIPT), "down", timeout=120)
    assert down.returncode == 0, down.stderr
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        blocker.bind(("127.0.0.1", 6819))
        blocker.listen()
        up = run("bash", str(SCRIPT), "up", "--dir", str(directory), timeout=300)
        assert up.returncode == 1, up.stderr
        assert "up failed: stopping the daemons it started (munged mariadbd)" in up.stderr
        for daemon in ("munged", "mariadbd"):
            assert not (directory / "run" / f"{daemon}.pid").exists(), daemon
        status = run("bash", str(SCRIPT), "status", "--dir", str(directory)).stdout
        assert re.search(r"^munged\s+not running", status, re.M), status
        assert re.search(r"^mariadbd\s+not running", status, re.M), status
    finally:
        blocker.close()
        up = run("bash", str(SCRIPT), "up", "--dir", str(directory), timeout=300)
        assert up.returncode == 0, up.stderr
