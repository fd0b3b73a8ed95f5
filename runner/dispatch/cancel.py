"""Cancel a grid, or some of its jobs, wherever they run: a request first, force after a grace.

1. Request: a cancel file (jobs.rundir.results.CANCEL_FILE) in the grid dir for a whole grid,
   and in the run dir of each unfinished job asked to stop. run_job looks for its own at every
   epoch end (one stat), checkpoints that epoch and ends `cancelled`; a job not started yet ends
   at once. Drivers (runner.dispatch.driver) watch the grid's file and launch nothing more. Being
   files, requests reach every machine that shares the output dir: Ray workers, SLURM jobs,
   drivers elsewhere.
2. SLURM jobs of these jobs that are still queued are scancelled at once: they would only start
   in order to stop.
3. Grace: up to `grace_s` seconds for the running jobs to stop by themselves, losing nothing.
4. Force, for what still runs: SIGTERM to the drivers on this host (for a whole grid: the driver
   stops its units and marks their jobs cancelled), or to one job's own worker process on this
   host (a Ray worker); scancel for its SLURM jobs. A job stopped this way restarts from its last
   checkpoint. Jobs whose process is gone while their status still says running are marked.
A later `tvo run` clears the requests of the jobs it runs, and resumes the cancelled ones.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cluster.slurm import cancel as slurm_cancel
from jobs.rundir import results
from jobs.rundir.claims import current_holder, process_start
from runner.dispatch.outdir import job_ids as grid_job_ids
from runner.dispatch.outdir import run_dir

FORCE_WAIT_S = 30.0  # after the force, how long to wait for stopped jobs to be recorded
POLL_S = 0.2


class CancelError(ValueError):
    """A job id the grid does not have; the message says which and where to look."""


@dataclass
class CancelRequest:
    """What `request_cancel` asked for."""

    grid_dir: Path
    whole_grid: bool
    targets: list[str]  # unfinished jobs asked to stop
    running: list[str]  # those of them dispatched and not ended when asked
    drivers: list[str] = field(default_factory=list)  # "host:pid" of the runners that hold them


@dataclass
class CancelReport:
    """How the stop went: by themselves within the grace, or by force."""

    request: CancelRequest
    scancelled_pending: list[str] = field(default_factory=list)  # SLURM ids, at once
    forced: bool = False
    signalled: list[str] = field(default_factory=list)  # "driver host:pid", "worker ... (job)"
    scancelled: list[str] = field(default_factory=list)  # SLURM ids, after the grace
    marked: list[str] = field(default_factory=list)  # jobs recorded cancelled here
    still_running: list[str] = field(default_factory=list)  # elsewhere: stop at an epoch end
    seconds: float = 0.0


def requested_by() -> str:
    return f"tvo cancel on {socket.gethostname()}:{os.getpid()}"


def request_cancel(grid_dir: Path, job_ids: Sequence[str] = ()) -> CancelRequest:
    """Leave cancel requests for the grid (no `job_ids`) or for these jobs of it.

    Raises runner.dispatch.outdir.OutDirError for a dir that is not a grid's, CancelError for a
    job id the grid does not list.
    """
    known = grid_job_ids(grid_dir)
    unknown = [job_id for job_id in job_ids if job_id not in known]
    if unknown:
        raise CancelError(f"{str(grid_dir)!r} has no job {unknown[0]!r}; its job ids are listed "
                          f"by `tvo status {grid_dir}` and in {grid_dir / 'runs'}")
    whole_grid = not job_ids
    chosen = list(dict.fromkeys(job_ids)) if job_ids else known
    targets = [job_id for job_id in chosen if not results.is_finished(run_dir(grid_dir, job_id))]
    who = requested_by()
    if whole_grid:
        results.request_cancel(grid_dir, who)
    for job_id in targets:
        results.request_cancel(run_dir(grid_dir, job_id), who)
    running = running_jobs(grid_dir, targets)
    drivers = sorted({_holder_name(current_holder(run_dir(grid_dir, job_id)))
                      for job_id in running} - {""})
    return CancelRequest(grid_dir, whole_grid, targets, running, drivers)


def clear_requests(grid_dir: Path, job_ids: Sequence[str]) -> None:
    """Remove the grid's cancel request and those of these jobs (a new run is starting)."""
    results.clear_cancel(grid_dir)
    for job_id in job_ids:
        results.clear_cancel(run_dir(grid_dir, job_id))


def running_jobs(grid_dir: Path, job_ids: Sequence[str]) -> list[str]:
    """The jobs a live runner holds: dispatched, and their outcome not recorded yet."""
    return [job_id for job_id in job_ids if _held(run_dir(grid_dir, job_id))]


def stop(request: CancelRequest, grace_s: float, poll_s: float = POLL_S) -> CancelReport:
    """Wait up to `grace_s` for the requested jobs to stop, then stop the rest by force."""
    started = time.monotonic()
    grid_dir = request.grid_dir
    report = CancelReport(request)
    report.scancelled_pending = slurm_cancel.scancel(
        slurm_cancel.slurm_ids_for(grid_dir, request.targets), pending_only=True)
    running = _wait(grid_dir, request.running, grace_s, poll_s)
    if running:
        report.forced = True
        report.signalled = _signal(grid_dir, running, request.whole_grid)
        report.scancelled = slurm_cancel.scancel(slurm_cancel.slurm_ids_for(grid_dir, running))
        running = _wait(grid_dir, running, FORCE_WAIT_S if report.signalled or report.scancelled
                        else 0.0, poll_s)
    report.marked = [job_id for job_id in request.running if _mark_if_gone(grid_dir, job_id)]
    report.still_running = running
    report.seconds = time.monotonic() - started
    return report


def _wait(grid_dir: Path, job_ids: Sequence[str], seconds: float, poll_s: float) -> list[str]:
    deadline = time.monotonic() + seconds
    running = running_jobs(grid_dir, job_ids)
    while running and time.monotonic() < deadline:
        time.sleep(poll_s)
        running = running_jobs(grid_dir, running)
    return running


def _signal(grid_dir: Path, job_ids: Sequence[str], whole_grid: bool) -> list[str]:
    """SIGTERM what runs these jobs on this host; returns what was signalled."""
    here = socket.gethostname()
    signalled: dict[int, str] = {}
    for job_id in job_ids:
        path = run_dir(grid_dir, job_id)
        holder = current_holder(path)
        if holder is None or not holder.is_live() or holder.host != here:
            continue  # another host's runner: its jobs stop at their epoch end
        if whole_grid:  # the driver stops all its units and records them
            signalled.setdefault(holder.pid, f"driver {holder.host}:{holder.pid}")
            continue
        worker = _worker_pid(results.read_status(path), holder.pid)
        if worker is not None:  # a worker of its own (Ray): the driver sees it end, cancelled
            signalled.setdefault(worker, f"worker {here}:{worker} (job {job_id})")
    for pid in list(signalled):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            del signalled[pid]
    return sorted(signalled.values())


def _worker_pid(status: dict[str, Any], driver_pid: int) -> int | None:
    """The pid of the process training this attempt on this host, when it is not the driver.

    Not for SLURM jobs (scancel stops those) nor inline runs (the worker is the driver, which
    would stop the whole grid). The process must have existed since before the attempt
    started: a pid reused by a newer process is never signalled.
    """
    pid = int(status.get("pid") or 0)
    if (status.get("state") != results.RUNNING or status.get("host") != socket.gethostname()
            or pid in (0, driver_pid) or "slurm_job_id" in status):
        return None
    try:
        attempt_started = datetime.fromisoformat(status["started_at"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None
    process_started = _process_start_time(pid)
    if process_started is None or process_started > attempt_started + 1.0:  # seconds resolution
        return None
    return pid


def _process_start_time(pid: int) -> float | None:
    """When a process started, in seconds since the epoch (None if gone or unknown here)."""
    ticks = process_start(pid)
    if not ticks:
        return None
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return int(line.split()[1]) + int(ticks) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None
    return None


def _mark_if_gone(grid_dir: Path, job_id: str) -> bool:
    """A job stopped by force whose status still says running: record it cancelled."""
    path = run_dir(grid_dir, job_id)
    status = results.read_status(path)
    if status.get("state") != results.RUNNING or _held(path) or results.is_finished(path):
        return False
    status.update(state=results.CANCELLED, error=None)
    results.write_status(path, status)
    return True


def _held(path: Path) -> bool:
    holder = current_holder(path)
    return holder is not None and holder.is_live()


def _holder_name(holder: Any) -> str:
    return f"{holder.host}:{holder.pid}" if holder is not None else ""
