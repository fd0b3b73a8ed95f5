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
from runner.dispatch.outdir import DamagedJobsFile, OutDirError, job_ids

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
    warnings: list[str] = field(default_factory=list)  # damaged or missing files, one line each

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
    warnings: list[str] = []
    listed = listed_jobs(grid_dir, index, warnings)
    warnings += [f"{path} is no readable results file (cut short or damaged): its jobs count "
                 "as not run; `tvo run` of the grid sets it aside and trains them again"
                 for path in index.broken_files()]
    jobs = [with_slurm(from_record(index.record(job_id)), in_slurm.get(job_id))
            for job_id in listed]
    lost = RunDir(grid_dir).lost_checkpoints(
        [job.job_id for job in jobs if job.state != RUNNING.value], index)
    if lost:
        warnings.append(f"{len(lost)} unfinished jobs saved a checkpoint that is gone from "
                        f"{OutputDir(grid_dir).checkpoints} (deleted?): `tvo run` trains them "
                        "again from their first epoch, to the same results")
    return GridStatus(grid_dir, jobs, warnings)


def listed_jobs(grid_dir: Path, index: StateIndex | None = None,
                warnings: list[str] | None = None) -> list[str]:
    """The jobs of a grid dir: those its jobs.parquet lists, else (it is missing or damaged:
    said in `warnings`) those its files mention."""
    try:
        return job_ids(grid_dir)
    except OutDirError as exc:
        damaged = isinstance(exc, DamagedJobsFile)
        if not grid_dir.is_dir() or (OutputDir(grid_dir).jobs_file.exists() and not damaged):
            raise
        found = (index or StateIndex(grid_dir).refresh()).known_ids()
        if not found:
            raise
        if warnings is not None:
            why = str(exc) if damaged else (f"{OutputDir(grid_dir).jobs_file} is missing; "
                                            "`tvo run` of the grid writes it again")
            warnings.append(f"{why}; listed here: the {len(found)} jobs the dir's other files "
                            "mention")
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
