"""The state of every job of a grid's output dir, read from its files alone.

A job's state is what its status.json says, with two readings of `running`:
- running, and its claim is live (the runner that dispatched it still lives): running;
- running, but its runner is gone (killed, or its host died): pending, marked interrupted; the
  next `tvo run` resumes it from its last checkpoint.
A job with no status.json is pending. `done` and `diverged` also need metrics.parquet.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from cluster.claims import current_holder
from jobs import results
from runner.outdir import job_ids, run_dir

STATES = (results.DONE, results.RUNNING, results.FAILED, results.DIVERGED, results.CANCELLED,
          results.PENDING)


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    state: str
    run_dir: Path
    error: str | None = None
    interrupted: bool = False  # was running when its runner died

    @property
    def log(self) -> Path:
        return self.run_dir / results.LOG_FILE


@dataclass
class GridStatus:
    grid_dir: Path
    jobs: list[JobStatus] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        counted = Counter(job.state for job in self.jobs)
        return {state: counted.get(state, 0) for state in STATES}

    @property
    def interrupted(self) -> int:
        return sum(job.interrupted for job in self.jobs)

    @property
    def problems(self) -> list[JobStatus]:
        return [job for job in self.jobs if job.state in (results.FAILED, results.DIVERGED)]


def job_status(job_id: str, path: Path) -> JobStatus:
    status = results.read_status(path)
    state = status.get("state", results.PENDING)
    error = status.get("error")
    if state in results.FINISHED_STATES and not (path / results.METRICS_FILE).exists():
        state = results.RUNNING  # metrics are written before the final status: not finished
    interrupted = False
    if state == results.RUNNING:
        holder = current_holder(path)
        if holder is None or not holder.is_live():
            state, interrupted = results.PENDING, True
    elif state not in STATES:
        state = results.PENDING
    return JobStatus(job_id, state, path, error, interrupted)


def grid_status(grid_dir: Path) -> GridStatus:
    """Every job listed in the dir's jobs.parquet with its current state."""
    return GridStatus(grid_dir, [job_status(job_id, run_dir(grid_dir, job_id))
                                 for job_id in job_ids(grid_dir)])
