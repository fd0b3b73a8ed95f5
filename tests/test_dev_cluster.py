"""Checks of the dev SLURM cluster started by ``cluster/slurm/dev-cluster.sh up``.

The session fixture in conftest.py uses the cluster SLURM_CONF names or starts a dev cluster of
its own; without SLURM installed (no ``sinfo``) these tests skip locally, and with ``CI`` set they
fail instead, so a CI run cannot go green by skipping. The script finds the cluster's state dir
from ``TVO_SLURM_DIR`` or from the config SLURM_CONF names.
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


def run(*cmd: str, timeout: float = 30, cwd: Path | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          check=False, env=None if env is None else {**os.environ, **env})


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
    conf = Path(os.environ["SLURM_CONF"])
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


def daemon_command(directory: Path, daemon: str) -> list[str]:
    pid = (directory / "run" / f"{daemon}.pid").read_text().strip()
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def test_the_cluster_keeps_its_state_config_and_sockets_in_its_own_dir() -> None:
    directory = state_dir()
    assert os.environ["SLURM_CONF"] == f"{directory}/etc/slurm.conf"  # how clients find it
    for part in ("db", "munge", "state/slurmctld", "log", "tmp", "run"):
        assert (directory / part).is_dir(), part
    conf = (directory / "etc" / "slurm.conf").read_text()
    assert f"StateSaveLocation={directory}/state/slurmctld" in conf
    assert f"AuthInfo=cred_expire=10,socket={directory}/munge/munge.socket.2" in conf
    assert f"PlugStackConfig={directory}/etc/plugstack.conf" in conf
    assert f"--socket={directory}/munge/munge.socket.2" in daemon_command(directory, "munged")
    mariadbd = daemon_command(directory, "mariadbd")
    assert f"--tmpdir={directory}/tmp" in mariadbd  # never the caller's TMPDIR
    assert f"--datadir={directory}/db" in mariadbd
    ports = [int(port) for port in re.findall(r"^Slurm(?:ctld|d)Port=(\d+)$", conf, re.M)]
    assert len(ports) == 2 and not set(ports) & {6817, 6818}  # ports of its own, not SLURM's


def port_of(conf: Path, key: str) -> int:
    found = re.search(rf"^{key}=(\d+)$", conf.read_text(), re.M)
    assert found, key
    return int(found.group(1))


def accounted(env: dict[str, str], line: str, timeout: float = 30) -> str:
    """sacct's jobs (JobID|JobName|State) once `line` is among them (a job's record reaches
    slurmdbd a moment after it ends)."""
    deadline = time.monotonic() + timeout
    while True:
        listed = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,JobName,State", "-S",
                                 "now-1hour"], env=env, capture_output=True, text=True,
                                timeout=60).stdout
        if line in listed.splitlines() or time.monotonic() > deadline:
            assert line in listed.splitlines(), listed
            return listed
        time.sleep(0.2)


def test_a_second_cluster_runs_beside_the_first_and_each_runs_its_own_jobs(
        tmp_path: Path) -> None:
    """Two suites at once each start a cluster: they share nothing, and a job submitted to one
    (through its SLURM_CONF) runs there and is in its accounting only."""
    first = dict(os.environ)
    second_dir = Path(run("bash", str(SCRIPT), "newdir").stdout.strip())
    second = {**first, "TVO_SLURM_DIR": str(second_dir),
              "SLURM_CONF": str(second_dir / "etc" / "slurm.conf")}
    try:
        up = subprocess.run(["bash", str(SCRIPT), "up", "--dir", str(second_dir)], env=second,
                            capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stderr
        assert up.stderr.splitlines()[-1].startswith(f"[dev-cluster] export SLURM_CONF="
                                                     f"{second['SLURM_CONF']} ")
        for key in ("SlurmctldPort", "SlurmdPort", "AccountingStoragePort"):
            assert port_of(Path(first["SLURM_CONF"]), key) != port_of(
                Path(second["SLURM_CONF"]), key), key
        clusters = {"first": first, "second": second}
        ids = {}
        for name, env in clusters.items():
            done = subprocess.run(
                ["sbatch", "--parsable", f"--job-name=tvo-{name}", f"--chdir={tmp_path}",
                 f"--output={name}.txt", "--time=1", "--wrap", "echo $SLURM_CONF"],
                env=env, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            ids[name] = done.stdout.strip().split(";")[0]
        for name, env in clusters.items():
            listed = accounted(env, f"{ids[name]}|tvo-{name}|COMPLETED")
            assert (tmp_path / f"{name}.txt").read_text().strip() == env["SLURM_CONF"]
            assert "tvo-second" not in listed if name == "first" else "tvo-first" not in listed
    finally:
        down = subprocess.run(["bash", str(SCRIPT), "down", "--purge", "--dir", str(second_dir)],
                              env=second, capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert not second_dir.exists()
    assert run("bash", str(SCRIPT), "status").returncode == 0  # the first is still up


def test_a_failed_up_stops_every_daemon_it_started() -> None:
    """With slurmdbd's port taken, `up` fails after starting munged and mariadbd: it must stop
    both before it exits. The cluster is restarted afterwards (state kept)."""
    directory = state_dir()
    down = run("bash", str(SCRIPT), "down", timeout=120)
    assert down.returncode == 0, down.stderr
    blocker = socket.socket()
    try:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = str(blocker.getsockname()[1])
        up = run("bash", str(SCRIPT), "up", "--dir", str(directory), timeout=300,
                 env={"TVO_SLURM_DBD_PORT": taken})
        assert f"port {taken} (for slurmdbd) is already in use" in up.stderr
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
