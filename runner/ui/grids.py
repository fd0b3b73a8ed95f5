"""The grids under the output root as the app lists them: job counts by state, progress and
ETA, and each job's state, error and log. Job states come only from runner.dispatch.status, so
the page and `tvo status` always agree."""

from __future__ import annotations

import io
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.rundir import results
from runner.dispatch.outdir import OutDirError
from runner.dispatch.status import STATES, GridStatus, JobStatus, grid_status

LOG_TAIL_BYTES = 64 * 1024  # the end of a job's log: where its error and last epochs are
ERROR_CHARS = 300  # a job list shows the start of each error; the job view shows it whole
PACE_SAMPLES = 256
MIN_ENDS = 3  # as `tvo run`'s ETA: a pace from fewer ended jobs says little


def grid_names(out_root: Path) -> list[str]:
    """Folders directly under the root, hidden ones (.tvo-ui) left out, in name order."""
    try:
        entries = sorted(os.scandir(out_root), key=lambda entry: entry.name)
    except OSError:
        return []
    return [entry.name for entry in entries
            if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False)]


def read_status(grid_dir: Path) -> GridStatus | None:
    """The grid's status, or None when the folder is not a grid's output dir."""
    try:
        return grid_status(grid_dir)
    except OutDirError:
        return None


@dataclass
class Pace:
    """How fast a grid's jobs end, from the counts this server saw while the grid was going."""

    seen: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=PACE_SAMPLES))

    def observe(self, finished: int, going: bool, now: float) -> None:
        if not going or (self.seen and finished < self.seen[-1][1]):
            self.seen.clear()  # idle, or a rerun reset the counts: the old pace says nothing
        if going and (not self.seen or finished != self.seen[-1][1]):
            self.seen.append((now, finished))

    def eta_s(self, left: int, now: float) -> float | None:
        """Seconds left at the pace since the first change seen, or None while estimating."""
        if left <= 0 or len(self.seen) < MIN_ENDS + 1:
            return None
        (first_at, first), (_, last) = self.seen[1], self.seen[-1]
        pace = (last - first) / max(now - first_at, 1e-9)  # slows as a stall goes on
        return left / pace if pace > 0 else None


def summary(name: str, status: GridStatus, pace: Pace) -> dict[str, Any]:
    """A grid's line in the list: counts by state, progress and ETA."""
    counts = status.counts
    total = len(status.jobs)
    finished = total - counts[results.PENDING] - counts[results.RUNNING]
    going = counts[results.RUNNING] > 0
    now = time.monotonic()
    pace.observe(finished, going, now)
    return {"name": name, "total": total, "counts": counts, "finished": finished,
            "progress": finished / total if total else 0.0, "going": going,
            "interrupted": status.interrupted,
            "eta_s": pace.eta_s(total - finished, now) if going else None}


def job_rows(status: GridStatus, state: str | None, offset: int, limit: int) -> dict[str, Any]:
    """A page of the grid's jobs (of one state, or all), problems first when unfiltered."""
    jobs: Sequence[JobStatus] = status.jobs
    if state:
        jobs = [job for job in jobs if job.state == state]
    else:
        rank = {state: index for index, state in enumerate(
            (results.FAILED, results.DIVERGED, results.RUNNING, results.CANCELLED,
             results.PENDING, results.DONE))}
        jobs = sorted(jobs, key=lambda job: rank.get(job.state, len(rank)))
    chosen = jobs[offset:offset + limit]
    return {"total": len(jobs), "offset": offset, "limit": limit, "states": list(STATES),
            "jobs": [{"job_id": job.job_id, "state": job.state,
                      "error": (job.error or "")[:ERROR_CHARS] or None,
                      "interrupted": job.interrupted,
                      "slurm": job.slurm.slurm_id if job.slurm else None} for job in chosen]}


def find_job(status: GridStatus, job_id: str) -> JobStatus | None:
    return next((job for job in status.jobs if job.job_id == job_id), None)


def job_log(job: JobStatus) -> str:
    """The end of a job's log. The one place the app reads a log: runner.dispatch.status will
    offer job_log(grid_dir, job_id) with the output dir's new layout."""
    try:
        with open(job.log, "rb") as handle:
            handle.seek(0, io.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - LOG_TAIL_BYTES))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    if size > LOG_TAIL_BYTES:
        text = f"[... the first {size - LOG_TAIL_BYTES:,} bytes are left out]\n" + (
            text.split("\n", 1)[-1])
    return text
