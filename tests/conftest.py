"""Shared fixtures: a dev SLURM cluster of the session's own, started when SLURM_CONF names no
running one, a dir of the session's own for embedded Rays, and a check that the suite leaves no
process of its own behind."""

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

    The SLURM that SLURM_CONF names, when it answers (CI starts the dev cluster and exports
    it). Otherwise, with SLURM installed (or in CI), a dev cluster of this session's own: its
    state dir in TMPDIR (in /tmp when TMPDIR is too long for its sockets), its own ports,
    config and munge socket, found by every test and tvo process through SLURM_CONF, which is
    set for the session; at the end it is stopped and its dir deleted. A cluster that only
    /etc/slurm/slurm.conf names is never used: it may be another suite's. Without SLURM
    installed the tests skip locally; in CI they fail, so CI cannot go green by skipping.
    """
    if os.environ.get("SLURM_CONF") and slurm_answers():
        yield _partition()
        return
    if shutil.which("sinfo") is None and not in_ci():
        pytest.skip(f"SLURM is not installed (no sinfo); {START_HINT}")
    before = {name: os.environ.get(name) for name in ("SLURM_CONF", "TVO_SLURM_DIR")}
    made = subprocess.run(["bash", str(DEV_CLUSTER), "newdir"], capture_output=True,
                          text=True, timeout=30)
    if made.returncode != 0:
        pytest.fail(f"could not make a state dir for the dev SLURM cluster: {made.stderr}")
    state_dir = made.stdout.strip()
    # The tests that restart the cluster find it through TVO_SLURM_DIR.
    os.environ["TVO_SLURM_DIR"] = state_dir
    os.environ["SLURM_CONF"] = f"{state_dir}/etc/slurm.conf"
    try:
        up = subprocess.run(["bash", str(DEV_CLUSTER), "up", "--dir", state_dir],
                            capture_output=True, text=True, timeout=600)
        if up.returncode != 0:
            pytest.fail(f"could not start the dev SLURM cluster: {up.stderr.strip()[-800:]}")
        yield _partition()
    finally:
        subprocess.run(["bash", str(DEV_CLUSTER), "down", "--purge", "--dir", state_dir],
                       capture_output=True, timeout=120)
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _partition() -> str:
    return subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True,
                          timeout=30).stdout.split()[0].rstrip("*")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests on SLURM run on one xdist worker, one after another: some restart or reshape the
    one dev cluster they share, which would pull it from under another worker's jobs."""
    for item in items:
        if "slurm_cluster" in item.fixturenames:
            item.add_marker(pytest.mark.xdist_group("slurm"))


LEFT_BY_WORKERS = pytest.StashKey[list[str]]()
SESSION_DIR = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    """Every embedded Ray of the session's tests, and of the tvo processes they start, makes its
    dir in one dir of the session's own (TVO_RAY_TMPDIR; short, in /tmp, for Ray's sockets),
    removed at the end: a test that SIGKILLs a runner, or whose worker crashes (the dir is kept
    for its logs, by design), leaves nothing behind. torch's compile cache dir, which any
    optimizer makes ($TMPDIR/torchinductor_<user>), goes there too (TORCHINDUCTOR_CACHE_DIR).
    The controller makes the dir; xdist workers inherit it. What the user set is the user's:
    used, never removed."""
    if os.environ.get("TVO_RAY_TMPDIR"):
        return
    own = Path(tempfile.mkdtemp(prefix="tvo-t-", dir="/tmp"))
    os.environ["TVO_RAY_TMPDIR"] = str(own)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(own / "torchinductor"))
    config.stash[SESSION_DIR] = own


def pytest_unconfigure(config: pytest.Config) -> None:
    own = config.stash.get(SESSION_DIR, None)
    if own is not None:
        os.environ.pop("TVO_RAY_TMPDIR", None)
        if os.environ.get("TORCHINDUCTOR_CACHE_DIR") == str(own / "torchinductor"):
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR")
        shutil.rmtree(own, ignore_errors=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The suite leaves nothing running: processes it started (Ray, workers, daemons started
    by tests) must be gone a few seconds after the last test. Leftovers fail the run and are
    stopped, by PID. Each xdist worker checks below itself (a worker's orphans would escape
    its controller) and hands what it found to the controller, which reports."""
    left = _stop_leftovers()
    worker_output = getattr(session.config, "workeroutput", None)
    if worker_output is not None:
        worker_output["tvo_left_running"] = left
        return
    left += session.config.stash.get(LEFT_BY_WORKERS, [])
    if not left:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = f"processes left running by the test suite (now killed): {', '.join(left)}"
    if reporter is not None:
        reporter.write_line(message, red=True)
    else:
        print(message)
    session.exitstatus = 1


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """An xdist worker ended: keep what it found left running, for the controller's report."""
    left = getattr(node, "workeroutput", {}).get("tvo_left_running") or []
    config: pytest.Config = node.config  # type: ignore[attr-defined]
    config.stash.setdefault(LEFT_BY_WORKERS, []).extend(left)


def _stop_leftovers() -> list[str]:
    """Processes still running below this one after a grace of 10 s (TVO_LEFTOVER_GRACE_S), each
    killed and named."""
    deadline = time.monotonic() + float(os.environ.get("TVO_LEFTOVER_GRACE_S", "10"))
    while (left := descendants(os.getpid())) and time.monotonic() < deadline:
        time.sleep(0.2)
    names = []
    for pid in left:
        try:
            names.append(f"{pid} {Path(f'/proc/{pid}/comm').read_text().strip()}")
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
    return names
