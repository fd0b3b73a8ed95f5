"""Cancel a grid, or some of its jobs, wherever they run: a request first, force after a grace.

1. Request: the grid dir's cancel requests (jobs.rundir.layout.CANCEL_FILE, written by its one
   writer) name the whole grid or the jobs asked to stop. A training stack looks at them at every
   epoch end (one stat), checkpoints the epoch of each member asked to stop and records it
   `cancelled` while its mates train on; a job not started yet is not started. Drivers
   (runner.dispatch.driver) watch the grid's request and launch nothing more. Being a file,
   a request reaches every machine that shares the output dir: Ray workers, SLURM jobs,
   drivers elsewhere.
2. SLURM jobs of these jobs that are still queued are scancelled at once: they would only start
   in order to stop.
3. Grace: up to `grace_s` seconds for the running jobs to stop by themselves, losing nothing.
4. Force, for what still runs: SIGTERM to the drivers on this host (for a whole grid: the driver
   stops its units and records their jobs cancelled), or to the worker process training a job
   on this host (a Ray worker: its stack's other jobs go back to the queue, not counted as
   failures); scancel for its SLURM jobs. A job stopped this way restarts from its last
   checkpoint. Jobs whose process is gone while they still read as running are recorded
   cancelled.
A later `tvo run` clears the requests of the jobs it runs, and resumes the cancelled ones.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cluster.slurm.commands import scancel
from cluster.slurm.records import slurm_ids_for
from jobs.rundir.claims import ClaimReader
from jobs.rundir.index import StateIndex
from jobs.rundir.journal import process_start
from jobs.rundir.run_dir import RunDir
from jobs.rundir.states import RUNNING, JobRecord
from runner.dispatch.outdir import job_ids as grid_job_ids

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

    Raises runner.dispatch.outdir.OutDirError for a dir that is not a grid's, CancelError for
    a job id the grid does not list.
    """
    known = grid_job_ids(grid_dir)
    listed = set(known)
    unknown = [job_id for job_id in job_ids if job_id not in listed]
    if unknown:
        raise CancelError(f"{str(grid_dir)!r} has no job {unknown[0]!r}; its job ids are listed "
                          f"by `tvo status {grid_dir} --jobs`")
    whole_grid = not job_ids
    chosen = list(dict.fromkeys(job_ids)) if job_ids else known
    index = StateIndex(grid_dir).refresh()
    finished = index.finished_ids()
    targets = [job_id for job_id in chosen if job_id not in finished]
    RunDir(grid_dir).request_cancel(None if whole_grid else targets, requested_by())
    running = running_jobs(grid_dir, targets)
    holders = _holders(grid_dir)
    drivers = sorted({holders[job_id] for job_id in running if job_id in holders})
    return CancelRequest(grid_dir, whole_grid, targets, running, drivers)


def running_jobs(grid_dir: Path, job_ids: Sequence[str]) -> list[str]:
    """The jobs a live runner holds: dispatched, and their outcome not recorded yet (or, with
    no runner, whose worker process still trains them on this host)."""
    index = StateIndex(grid_dir).refresh()
    return [job_id for job_id in job_ids if index.record(job_id).state == RUNNING]


def stop(request: CancelRequest, grace_s: float, poll_s: float = POLL_S) -> CancelReport:
    """Wait up to `grace_s` for the requested jobs to stop, then stop the rest by force."""
    started = time.monotonic()
    grid_dir = request.grid_dir
    report = CancelReport(request)
    report.scancelled_pending = scancel(slurm_ids_for(grid_dir, request.targets),
                                        pending_only=True)
    running = _wait(grid_dir, request.running, grace_s, poll_s)
    if running:
        report.forced = True
        report.signalled = _signal(grid_dir, running, request.whole_grid)
        report.scancelled = scancel(slurm_ids_for(grid_dir, running))
        running = _wait(grid_dir, running, FORCE_WAIT_S if report.signalled or report.scancelled
                        else 0.0, poll_s)
    report.marked = _mark_if_gone(grid_dir, request.running)
    report.still_running = running
    report.seconds = time.monotonic() - started
    return report


def _wait(grid_dir: Path, job_ids: Sequence[str], seconds: float, poll_s: float) -> list[str]:
    deadline = time.monotonic() + seconds
    index = StateIndex(grid_dir)
    running = _still_running(index, job_ids)
    while running and time.monotonic() < deadline:
        time.sleep(poll_s)
        running = _still_running(index, running)
    return running


def _still_running(index: StateIndex, job_ids: Sequence[str]) -> list[str]:
    index.refresh()
    return [job_id for job_id in job_ids if index.record(job_id).state == RUNNING]


def _holders(grid_dir: Path) -> dict[str, str]:
    """Job -> "host:pid" of the live runner that holds it."""
    reader = ClaimReader(grid_dir)
    reader.refresh()
    return {job_id: holder.runner.name for job_id, holder in reader.holders().items()
            if holder.is_live()}


def _signal(grid_dir: Path, job_ids: Sequence[str], whole_grid: bool) -> list[str]:
    """SIGTERM what runs these jobs on this host; returns what was signalled."""
    here = socket.gethostname()
    reader = ClaimReader(grid_dir)
    reader.refresh()
    holders = reader.holders()
    index = StateIndex(grid_dir).refresh()
    signalled: dict[int, str] = {}
    for job_id in job_ids:
        holder = holders.get(job_id)
        if holder is None or not holder.is_live() or holder.runner.host != here:
            continue  # another host's runner: its jobs stop at their epoch end
        if whole_grid:  # the driver stops all its units and records them
            signalled.setdefault(holder.runner.pid, f"driver {here}:{holder.runner.pid}")
            continue
        worker = _worker_pid(index.record(job_id), holder.runner.pid)
        if worker is not None:  # a worker of its own (Ray): the driver sees it end, cancelled
            signalled.setdefault(worker, f"worker {here}:{worker} (job {job_id})")
    for pid in list(signalled):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            del signalled[pid]
    return sorted(signalled.values())


def _worker_pid(record: JobRecord, driver_pid: int) -> int | None:
    """The pid of the process training the job on this host, when it is not the driver.

    Not for SLURM jobs (scancel stops those) nor inline runs (the worker is the driver, which
    would stop the whole grid). The process must have existed since before the attempt
    started: a pid reused by a newer process is never signalled.
    """
    pid = record.pid
    if record.state != RUNNING or record.host != socket.gethostname() or pid in (0, driver_pid):
        return None
    process_started = _process_start_time(pid)
    if process_started is None or process_started > record.started_at + 1.0:
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


def _mark_if_gone(grid_dir: Path, job_ids: Sequence[str]) -> list[str]:
    """Jobs stopped by force that no process recorded (they still read as started, their
    runner gone): recorded cancelled here."""
    index = StateIndex(grid_dir).refresh()
    gone = [job_id for job_id in job_ids
            if (record := index.record(job_id)).interrupted and not record.finished]
    RunDir(grid_dir).record_cancelled(gone)
    return gone
