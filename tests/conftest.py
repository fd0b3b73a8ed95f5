"""Shared fixtures: the dev SLURM cluster, started for the session when it is not running, and
a check that the suite leaves no process of its own behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.cli.interrupts import descendants  # every live process below a pid

REPO = Path(__file__).resolve().parents[1]
DEV_CLUSTER = REPO / "cluster" / "slurm" / "dev-cluster.sh"
START_HINT = "start it with: bash cluster/slurm/dev-cluster.sh up"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def slurm_answers() -> bool:
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "UP" in ping.stdout


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[str]:
    """A running SLURM; yields the partition name.

    Uses a running cluster as it is. When SLURM is installed but stopped (or in CI), starts the
    dev cluster and stops it again at the end: only the daemons this session started. Without
    SLURM installed the tests skip locally; in CI they fail, so CI cannot go green by skipping.
    """
    started = False
    before = os.environ.get("TVO_SLURM_DIR")
    if not slurm_answers():
        if shutil.which("sinfo") is None and not in_ci():
            pytest.skip(f"SLURM is not installed (no sinfo); {START_HINT}")
        # A state dir of the session's own, in /tmp whatever TMPDIR says: its unix sockets need
        # a short path, and the munge and mysql users must reach it. The tests that restart the
        # cluster find it through TVO_SLURM_DIR.
        os.environ["TVO_SLURM_DIR"] = tempfile.mkdtemp(prefix="tvo-slurm-tests.", dir="/tmp")
        up = subprocess.run(["bash", str(DEV_CLUSTER), "up"], capture_output=True, text=True,
                            timeout=600)
        if up.returncode != 0:
            _stop_session_cluster(before)
            pytest.fail(f"could not start the dev SLURM cluster: {up.stderr.strip()[-800:]}")
        started = True
    partition = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True,
                               timeout=30).stdout.split()[0].rstrip("*")
    yield partition
    if started:
        _stop_session_cluster(before)


def _stop_session_cluster(previous_dir: str | None) -> None:
    """down --purge: the session's daemons stop and its state dir goes."""
    subprocess.run(["bash", str(DEV_CLUSTER), "down", "--purge"], capture_output=True,
                   timeout=120)
    if previous_dir is None:
        os.environ.pop("TVO_SLURM_DIR", None)
    else:
        os.environ["TVO_SLURM_DIR"] = previous_dir


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The suite leaves nothing running: processes it started (Ray, workers, daemons started
    by tests) must be gone a few seconds after the last test. Leftovers fail the run and are
    stopped, by PID."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    deadline = time.monotonic() + 10
    while (left := descendants(os.getpid())) and time.monotonic() < deadline:
        time.sleep(0.2)
    if not left:
        return
    names = []
    for pid in left:
        try:
            names.append(f"{pid} {Path(f'/proc/{pid}/comm').read_text().strip()}")
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
    if names:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = f"processes left running by the test suite (now killed): {', '.join(names)}"
        if reporter is not None:
            reporter.write_line(message, red=True)
        else:
            print(message)
        session.exitstatus = 1
