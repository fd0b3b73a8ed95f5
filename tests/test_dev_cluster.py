"""Checks of the dev SLURM cluster started by ``cluster/slurm/dev-cluster.sh up``.

The session fixture in conftest.py uses a running cluster or starts the dev cluster; without SLURM
installed (no ``sinfo``) these tests skip locally, and with ``CI`` set they fail instead, so a CI
run cannot go green by skipping. A cluster started with ``--dir DIR`` needs ``TVO_SLURM_DIR=DIR``
here too (the status test calls the script).
"""

from __future__ import annotations

import os
import re
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
