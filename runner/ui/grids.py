"""The grids under the output root as the app lists them: job counts by state, progress and
ETA, and each job's state, error and log. Job states come only from runner.dispatch.status, so
the page and `tvo status` always agree."""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.rundir.index import StateIndex
from jobs.rundir.states import CANCELLED, DIVERGED, DONE, FAILED, PENDING, RUNNING
from runner.dispatch.outdir import OutDirError
from runner.dispatch.status import STATE_NAMES, GridStatus, JobStatus, grid_status
from runner.dispatch.status import job_log as status_job_log

LOG_TAIL_CHARS = 64 * 1024  # the end of a job's log: where its error and last epochs are
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


def read_status(grid_dir: Path, index: StateIndex | None = None) -> GridStatus | None:
    """The grid's status, or None when the folder is not a grid's output dir; with the `index`
    of an earlier read, only the grid's files that changed since are read."""
    try:
        return grid_status(grid_dir, index)
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
    finished = total - counts[PENDING.value] - counts[RUNNING.value]
    going = counts[RUNNING.value] > 0
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
            (FAILED.value, DIVERGED.value, RUNNING.value, CANCELLED.value, PENDING.value,
             DONE.value))}
        jobs = sorted(jobs, key=lambda job: rank.get(job.state, len(rank)))
    chosen = jobs[offset:offset + limit]
    return {"total": len(jobs), "offset": offset, "limit": limit, "states": list(STATE_NAMES),
            "jobs": [{"job_id": job.job_id, "state": job.state,
                      "error": (job.error or "")[:ERROR_CHARS] or None,
                      "interrupted": job.interrupted, "epoch": _epoch(job),
                      "slurm": job.slurm.slurm_id if job.slurm else None} for job in chosen]}


def _epoch(job: JobStatus) -> str | None:
    """`7/30` while a job runs: the epoch its stack reached, of its epochs."""
    if job.state != RUNNING.value:
        return None
    reached, epochs = job.epoch
    return f"{reached}/{epochs}" if epochs else None


def find_job(status: GridStatus, job_id: str) -> JobStatus | None:
    return next((job for job in status.jobs if job.job_id == job_id), None)


def job_log(grid_dir: Path, job_id: str) -> str:
    """The end of a job's log lines (its own and its stacks', from every process that ran it:
    runner.dispatch.status.job_log); the first lines of a long log are left out."""
    text = status_job_log(grid_dir, job_id)
    if len(text) <= LOG_TAIL_CHARS:
        return text
    tail = text[-LOG_TAIL_CHARS:].split("\n", 1)[-1]
    return f"[... the first {len(text) - len(tail):,} characters are left out]\n{tail}"
