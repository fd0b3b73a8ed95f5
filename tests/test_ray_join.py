"""`tvo run` joins an existing Ray cluster (RAY_ADDRESS) with token authentication on."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.ray import private_temp_dir

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, str]]:
    """A real Ray head started with `ray start`, in its own process group, with its own token."""
    temp_dir = private_temp_dir()  # short: Ray's sockets live here
    env = {**os.environ, "HOME": str(temp_dir), "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        ["ray", "start", "--head", "--block", "--num-cpus", "2", "--port", str(free_port()),
         "--temp-dir", str(temp_dir), "--include-dashboard=false", "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address_file = temp_dir / "ray_current_cluster"
    deadline = time.monotonic() + 60
    while not address_file.exists():
        assert head.poll() is None and time.monotonic() < deadline, "ray start failed"
        time.sleep(0.2)
    yield {**env, "RAY_ADDRESS": address_file.read_text().strip()}
    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()
    shutil.rmtree(temp_dir, ignore_errors=True)


def tvo(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, text=True,
                          env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, timeout=300)


def test_run_joins_the_cluster_at_ray_address(cluster: dict[str, str], tmp_path: Path) -> None:
    done = tvo(cluster, tmp_path, "run", "smoke", "--out", "out")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("smoke: 4 jobs on Ray cluster: 2 CPUs, 0 GPUs")
    status = tvo(cluster, tmp_path, "status", "out/smoke")
    assert status.stdout.splitlines()[1].startswith("done 4 · running 0 · failed 0")
    assert not (tmp_path / ".ray").exists()


def test_joining_without_the_token_mode_says_what_to_set(cluster: dict[str, str],
                                                         tmp_path: Path) -> None:
    env = {key: value for key, value in cluster.items() if key != "RAY_AUTH_MODE"}
    env["RAY_gcs_server_port_wait_time_s"] = "2"  # Ray retries for 20 s by default
    refused = tvo(env, tmp_path, "run", "smoke", "--out", "out")
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1] == (
        f"Error: cannot join Ray at {cluster['RAY_ADDRESS']}: ConnectionError: Failed to connect "
        f"to Ray cluster at {cluster['RAY_ADDRESS']}; if the cluster uses token authentication "
        "(Ray's default), set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN")
    assert not (tmp_path / "out").exists()
