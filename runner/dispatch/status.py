"""The state of every job of a grid's output dir, read from its files alone (jobs.rundir.index).

A job whose stack started is running while its runner lives, and pending and interrupted once
that runner is gone (the next `tvo run` resumes it from its last checkpoint). A job submitted
to SLURM (its grid dir has submission records) is read with SLURM's state too: queued in SLURM
is pending or running whatever the claims say (a detached run has no runner), and a SLURM job
that ended without the job finishing on disk is failed, with SLURM's state.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from cluster.slurm.status import SlurmJobState, slurm_jobs
from jobs.rundir.index import StateIndex
from jobs.rundir.layout import OutputDir
from jobs.rundir.run_dir import RunDir
from jobs.rundir.states import DIVERGED, FAILED, PENDING, RUNNING, STATES, JobRecord
from runner.dispatch.outdir import OutDirError, job_ids

STATE_NAMES = tuple(state.value for state in STATES)


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    state: str
    error: str | None = None
    interrupted: bool = False  # was running when its runner died
    slurm: SlurmJobState | None = None  # its latest SLURM job, when submitted to SLURM
    record: JobRecord | None = None  # what the files say of it

    @property
    def log(self) -> str:
        """The log file of the process that last trained it ("" when none did)."""
        return self.record.log if self.record is not None else ""

    @property
    def epoch(self) -> tuple[int, int]:
        """While it runs: (epoch its stack reached, its epochs)."""
        if self.record is None:
            return 0, 0
        return self.record.epoch, self.record.epochs or self.record.epochs_done


@dataclass
class GridStatus:
    grid_dir: Path
    jobs: list[JobStatus] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        counted = Counter(job.state for job in self.jobs)
        return {state: counted.get(state, 0) for state in STATE_NAMES}

    @property
    def interrupted(self) -> int:
        return sum(job.interrupted for job in self.jobs)

    @property
    def problems(self) -> list[JobStatus]:
        return [job for job in self.jobs if job.state in (FAILED.value, DIVERGED.value)]


def from_record(record: JobRecord) -> JobStatus:
    return JobStatus(record.job_id, record.state.value, record.error, record.interrupted,
                     None, record)


def grid_status(grid_dir: Path, index: StateIndex | None = None) -> GridStatus:
    """Every job listed in the dir's jobs.parquet with its current state (or, in a dir that
    has none, every job its files mention). Pass an `index` to read only what changed since."""
    grid_dir = Path(grid_dir)
    index = (index or StateIndex(grid_dir)).refresh()
    in_slurm = slurm_jobs(grid_dir)
    return GridStatus(grid_dir, [with_slurm(from_record(index.record(job_id)),
                                            in_slurm.get(job_id))
                                 for job_id in listed_jobs(grid_dir, index)])


def listed_jobs(grid_dir: Path, index: StateIndex | None = None) -> list[str]:
    """The jobs of a grid dir: those its jobs.parquet lists, else those its files mention."""
    try:
        return job_ids(grid_dir)
    except OutDirError:
        if OutputDir(grid_dir).jobs_file.exists() or not grid_dir.is_dir():
            raise
        found = (index or StateIndex(grid_dir).refresh()).known_ids()
        if not found:
            raise
        return found


def job_log(grid_dir: Path, job_id: str) -> str:
    """Every log line about one job (its own and its stacks'), from every process's log."""
    return RunDir(grid_dir).job_log(job_id)


def with_slurm(job: JobStatus, slurm: SlurmJobState | None) -> JobStatus:
    """Add SLURM's word where the files alone cannot tell how the job stands."""
    if slurm is None:
        return job
    state, error, interrupted = job.state, job.error, job.interrupted
    if state in (PENDING.value, RUNNING.value):
        if slurm.queued:
            state = PENDING.value if slurm.pending else RUNNING.value
            interrupted = False
        elif slurm.ended:
            state, error, interrupted = FAILED.value, slurm.died_message(), False
    return replace(job, state=state, error=error, interrupted=interrupted, slurm=slurm)
