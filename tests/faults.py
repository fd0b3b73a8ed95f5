"""What the fault tests share (tests/test_faults_*.py): a small grid, `tvo` run as a user runs
it (a process of its own), and a grid dir's per-job metrics rows to compare with a clean run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests import rundir_view

ROOT = Path(__file__).resolve().parents[1]


def write_grid(folder: Path, name: str = "faulty", epochs: int = 2, seeds: int = 3) -> Path:
    """A grid of `seeds` tiny jobs (digits, an MLP of 8 units): seconds each."""
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\n"
                    f"base: {{dataset: digits, hidden: [8], epochs: {epochs}, lr: 0.5, "
                    "output: sigmoid, loss: mse}\n"
                    f"grid: {{seed: {list(range(seeds))}}}\n")
    return path


def tvo_env(**extra: str) -> dict[str, str]:
    """This worktree's tvo first on the path (the installed `tvo` may be another checkout)."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT),
            **extra}


def tvo(*args: str, cwd: Path, timeout: float = 300, **env: str) -> tuple[int, str, str]:
    """`tvo args` in its own process: (exit code, stdout, stderr)."""
    done = subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, env=tvo_env(**env),
                          capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout, done.stderr


def start_tvo(*args: str, cwd: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=cwd,
                            env=tvo_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def events(grid_dir: Path) -> list[dict[str, Any]]:
    """Every state event of the grid dir (whole lines), in no particular order."""
    found = []
    for path in (grid_dir / "state").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


def wait_for(condition: Callable[[], Any], process: subprocess.Popen[str] | None = None,
             seconds: float = 120) -> Any:
    """Poll until `condition()` is truthy (its value), failing if `process` ends first."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"tvo ended first: {process.communicate()}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def reached_epoch(grid_dir: Path, epoch: int, saved: bool = True) -> Callable[[], Any]:
    """The first stack start once some stack reached `epoch` (with a checkpoint saved)."""
    def check() -> Any:
        found = events(grid_dir)
        if not any(e.get("event") == "epoch" and e.get("epoch", 0) >= epoch
                   and (e.get("saved") or not saved) for e in found):
            return None
        return next(e for e in found if e.get("event") == "start")
    return check


def metrics(grid_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Each job's committed rows (by epoch), without timings and the grid's name: what a rerun
    must reproduce exactly."""
    rows = rundir_view.all_rows(grid_dir, drop=(*rundir_view.TIMING_COLUMNS, "grid"))
    found: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        found.setdefault(row["job_id"], []).append(row)
    return found


def one_error_line(err: str) -> str:
    """The `Error:` line of a failed command's stderr (and that it is its only line)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    return lines[0]
