"""The state of every job of a grid's output dir, read from its files alone.

A job's state is what its status.json says, with two readings of `running`:
- running, and its claim is live (the runner that dispatched it still lives): running;
- running, but its runner is gone (killed, or its host died): pending, marked interrupted; the
  next `tvo run` resumes it from its last checkpoint.
A job with no status.json is pending. `done` and `diverged` also need metrics.parquet.
A job submitted to SLURM (its grid dir has submission records) is read with SLURM's state too:
queued in SLURM is pending or running whatever the claims say (a detached run has no runner),
and a SLURM job that ended without the job finishing on disk is failed, with SLURM's state.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from cluster.slurm.status import SlurmJob, slurm_jobs
from jobs.rundir import results
from jobs.rundir.claims import current_holder
from runner.dispatch.outdir import JOBS_FILE, OutDirError, job_ids, run_dir

INTERRUPTED = "interrupted"  # what the engine writes for a job stopped by Ctrl-C or SIGTERM
STATES = (results.DONE, results.RUNNING, results.FAILED, results.DIVERGED, results.CANCELLED,
          results.PENDING)


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    state: str
    run_dir: Path
    error: str | None = None
    interrupted: bool = False  # was running when its runner died
    slurm: SlurmJob | None = None  # its latest SLURM job, when it was submitted to SLURM

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
    if state == INTERRUPTED:  # stopped by Ctrl-C or SIGTERM: resumable from its checkpoint
        state, interrupted = results.PENDING, True
    elif state == results.RUNNING:
        holder = current_holder(path)
        if holder is None or not holder.is_live():
            state, interrupted = results.PENDING, True
    elif state not in STATES:
        state = results.PENDING
    return JobStatus(job_id, state, path, error, interrupted)


def grid_status(grid_dir: Path) -> GridStatus:
    """Every job listed in the dir's jobs.parquet with its current state (or, in a dir `tvo
    train` writes, which has no jobs.parquet, every run dir under runs/)."""
    in_slurm = slurm_jobs(grid_dir)
    return GridStatus(grid_dir, [with_slurm(job_status(job_id, run_dir(grid_dir, job_id)),
                                            in_slurm.get(job_id))
                                 for job_id in listed_jobs(grid_dir)])


def listed_jobs(grid_dir: Path) -> list[str]:
    """The jobs of a grid dir, or the run dirs of a `tvo train` output dir."""
    try:
        return job_ids(grid_dir)
    except OutDirError:
        runs = grid_dir / "runs"
        if (grid_dir / JOBS_FILE).exists() or not runs.is_dir():
            raise
        found = sorted(path.name for path in runs.iterdir()
                       if (path / results.STATUS_FILE).exists() or (path / "spec.json").exists())
        if not found:
            raise
        return found


def with_slurm(job: JobStatus, slurm: SlurmJob | None) -> JobStatus:
    """Add SLURM's word where the files alone cannot tell how the job stands."""
    if slurm is None:
        return job
    state, error, interrupted = job.state, job.error, job.interrupted
    if state in (results.PENDING, results.RUNNING):
        if slurm.queued:
            state = results.PENDING if slurm.pending else results.RUNNING
            interrupted = False
        elif slurm.ended:
            state, error, interrupted = results.FAILED, slurm.died_message(), False
    return replace(job, state=state, error=error, interrupted=interrupted, slurm=slurm)
