"""The suite fails when it leaves a process of its own running, in one process (-n 0) and when
xdist spreads it over workers (a worker's orphans would escape a check in the controller only)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from runner.cli.interrupts import alive

REPO = Path(__file__).resolve().parents[1]

LEAKY_TEST = '''
import subprocess, sys
from pathlib import Path

def test_starts_a_sleeper_and_forgets_it():
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    (Path(__file__).parent / "sleeper.pid").write_text(str(sleeper.pid))
'''


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_process_left_running_fails_the_suite_and_is_stopped(tmp_path: Path,
                                                              workers: str) -> None:
    (tmp_path / "conftest.py").write_text("from tests.conftest import *  # noqa: F403\n")
    (tmp_path / "test_leaky.py").write_text(textwrap.dedent(LEAKY_TEST))
    env = {**os.environ, "PYTHONPATH": str(REPO), "TVO_LEFTOVER_GRACE_S": "0.5"}
    env.pop("PYTEST_XDIST_WORKER", None)
    suite = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", workers,
         "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = suite.communicate(timeout=120)
    assert suite.returncode == 1, output
    assert "1 passed" in output
    assert "processes left running by the test suite (now killed):" in output
    assert "python" in output.split("(now killed):", 1)[1]
    sleeper = int((tmp_path / "sleeper.pid").read_text())
    deadline = time.monotonic() + 10
    while alive(sleeper) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(sleeper), "the suite's check did not stop the process it found"
