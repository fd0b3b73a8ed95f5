"""Unit entries for the cancel tests; a module of its own, so Ray workers can import them."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from jobs.engine.train import JobResult
from jobs.entry import StackRequest, run_unit
from jobs.rundir.run_dir import RunDir
from runner.dispatch.cancel import request_cancel


def cancel_grid_first(request: StackRequest, *, threads: int, grid_dir: str) -> list[JobResult]:
    """A unit entry that, the first time, asks for the whole grid to stop (as `tvo cancel`)."""
    if not RunDir(grid_dir).cancel_requested():
        request_cancel(Path(grid_dir))
    return run_unit(request, threads=threads)


def cancel_job_then_crash(request: StackRequest, *, threads: int, marker_dir: str,
                          driver_pid: int) -> list[JobResult]:
    """A unit entry stopped by force after its job was asked to stop (a scancel, a signal)."""
    Path(marker_dir, f"dispatched-{request.specs[0].job_id}").touch()
    RunDir(request.grid_dir).request_cancel([request.specs[0].job_id], "test")
    if os.getpid() != driver_pid:
        os._exit(15)
    raise RuntimeError("stopped by force")


def cancel_grid_by_force(request: StackRequest, *, threads: int, grid_dir: str,
                         driver_pid: int) -> list[JobResult]:
    """A unit that asks for the grid to stop and signals its driver, as `tvo cancel --grace 0`,
    then goes on working: only the driver's stop can end it."""
    RunDir(request.grid_dir).stack_files(request.key, request.specs).begin("cpu")
    request_cancel(Path(grid_dir))
    os.kill(driver_pid, signal.SIGTERM)
    time.sleep(30)  # inline: the SIGTERM interrupts this at once; Ray: the driver kills us
    return run_unit(request, threads=threads)
