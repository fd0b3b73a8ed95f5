"""What the fault tests share (tests/test_faults_*.py): one tiny grid and its clean run (once
per session), `tvo` run in this process, a unit entry that stalls a stack at a known epoch so that
a test can kill it there (no race with training), and a grid dir's per-job metrics rows to
compare with the clean run's."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests import rundir_view

if TYPE_CHECKING:
    from jobs.engine.train import JobResult
    from jobs.entry import StackRequest
    from jobs.spec import JobSpec

ROOT = Path(__file__).resolve().parents[1]
INLINE = ("--backend", "inline", "--pack", "off")  # a stack per job, in the runner's process
STALL_EPOCH = 2  # a stalled stack has checkpointed this epoch, and trains the next for good
STALL_S = 300  # how long it stalls at most (a test kills it long before)
BASE = {"dataset": "digits", "hidden": [8], "epochs": 3, "lr": 0.5, "output": "sigmoid",
        "loss": "mse"}  # a job of a fraction of a second


def write_grid(folder: Path, name: str = "faulty", seeds: int = 3) -> Path:
    """A grid of `seeds` tiny jobs (BASE, one per seed): the clean run's (`clean_metrics`)."""
    path = folder / f"{name}.yaml"
    base = ", ".join(f"{key}: {value}" for key, value in BASE.items())
    path.write_text(f"name: {name}\nbase: {{{base}}}\ngrid: {{seed: {list(range(seeds))}}}\n")
    return path


def grid_specs(seeds: int = 3) -> list[JobSpec]:
    """The jobs of `write_grid`'s grid (the same job ids), for a test that runs them itself."""
    from jobs.spec import JobSpec

    return [JobSpec.from_dict({**BASE, "seed": seed}) for seed in range(seeds)]


def tvo_env(**extra: str) -> dict[str, str]:
    """This worktree's tvo first on the path (the installed `tvo` may be another checkout)."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT),
            **extra}


def cli(*args: str) -> tuple[int, str, str]:
    """`tvo args` in this process (the faults are in the files, not in the process): (exit
    code, stdout, stderr)."""
    from typer.testing import CliRunner

    from runner.cli.app import app

    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


_clean: dict[str, dict[str, list[dict[str, Any]]]] = {}


def clean_metrics(factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """The default grid's per-job metrics from a run without a fault: run once per session
    (inline; a Ray or SLURM unit trains on one torch thread too, so their rows are the same)."""
    if "faulty" not in _clean:
        folder = factory.mktemp("clean")
        grid = write_grid(folder)
        code, out, err = cli("run", str(grid), *INLINE, "--out", str(folder / "out"))
        assert code == 0, out + err
        _clean["faulty"] = metrics(folder / "out" / "faulty")
        assert len(_clean["faulty"]) == 3
    return _clean["faulty"]


_entered = [0]  # stacks this process began through stalling_entry


def stalling_entry(request: StackRequest, *, threads: int, marker: str,
                   epoch: int = STALL_EPOCH, skip: int = 0) -> list[JobResult]:
    """run_stack with a checkpoint after every epoch; the first stack of any process given this
    `marker` that reaches epoch `epoch` + 1 (and is not one of the first `skip` stacks of its
    process) stalls there, its checkpoint after `epoch` saved and its epoch event written,
    having written {"job", "pid"} to `marker`/stalled, until it is killed. Every other stack,
    and every later attempt, trains at full speed."""
    from jobs.engine.train import run_stack

    _entered[0] += 1
    may_stall = _entered[0] > skip

    def progress(job_id: str, at: int, epochs: int, row: dict[str, Any]) -> None:
        if at != epoch + 1 or not may_stall:
            return
        try:
            os.mkdir(marker)  # the claim: one stall per marker, whatever process asks first
        except FileExistsError:
            return
        note = Path(marker, "stalled")
        note.with_suffix(".tmp").write_text(json.dumps({"job": job_id, "pid": os.getpid()}))
        os.replace(note.with_suffix(".tmp"), note)
        time.sleep(STALL_S)

    every_epoch = dataclasses.replace(request, settings=dataclasses.replace(
        request.settings, checkpoint_seconds=0))
    return run_stack(every_epoch, threads=threads, progress=progress)


def stalled(marker: Path,
            process: subprocess.Popen[str] | threading.Thread | None = None) -> dict[str, Any]:
    """{"job", "pid"} of the stack stalled by `stalling_entry` with this marker, once it is."""
    note = marker / "stalled"
    return wait_for(lambda: note.exists() and json.loads(note.read_text()), process)


def start_stalled_tvo(*args: str, cwd: Path, marker: Path,
                      skip: int = 0) -> subprocess.Popen[str]:
    """`tvo args` in a process of its own whose units train through `stalling_entry` (see
    tests/stalled_tvo.py): its stack after the first `skip` stalls after its checkpoint of
    epoch STALL_EPOCH."""
    return subprocess.Popen([sys.executable, "-m", "tests.stalled_tvo", str(marker), str(skip),
                             *args],
                            cwd=cwd, env=tvo_env(), stdout=subprocess.PIPE,
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


def wait_for(condition: Callable[[], Any],
             process: subprocess.Popen[str] | threading.Thread | None = None,
             seconds: float = 120) -> Any:
    """Poll until `condition()` is truthy (its value), failing if `process` (or the thread
    that runs tvo) ends first."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if isinstance(process, threading.Thread) and not process.is_alive():
            raise AssertionError("the run ended first")
        if isinstance(process, subprocess.Popen) and process.poll() is not None:
            raise AssertionError(f"tvo ended first: {process.communicate()}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def start_event(grid_dir: Path, job_id: str) -> dict[str, Any]:
    """The newest start event of the stack that trains `job_id`."""
    starts = [e for e in events(grid_dir)
              if e.get("event") == "start" and job_id in e.get("jobs", ())]
    return max(starts, key=lambda e: e.get("t", 0))


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
