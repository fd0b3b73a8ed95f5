"""What a grid run is told (RunOptions) and what it reports: live Counts for progress, how each
job ended (JobEnd) and the RunReport the command prints."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from jobs.request import CHECKPOINT_SECONDS
from jobs.rundir.claims import DEFAULT_LEASE_S

CHECKPOINT_SECONDS_ENV = "TVO_CHECKPOINT_SECONDS"  # overrides a stack's checkpoint interval


def checkpoint_seconds_from_env() -> float:
    """$TVO_CHECKPOINT_SECONDS (0: a checkpoint after every evaluated epoch), else the default.

    Read here, where a run starts, and sent to the workers with each unit: a worker on a joined
    Ray cluster or a SLURM node does not share this process's environment.
    Raises ValueError with a one-line message for a value that is not seconds >= 0."""
    value = os.environ.get(CHECKPOINT_SECONDS_ENV, "")
    if not value:
        return CHECKPOINT_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError(f"{CHECKPOINT_SECONDS_ENV}={value[:40]!r}: expected a number of seconds "
                         ">= 0 (0: a checkpoint after every evaluated epoch)")
    return seconds


@dataclass(frozen=True)
class RunOptions:
    max_parallel: int | None = None  # units in flight at once; None: what the backend runs
    retries: int = 0
    fail_fast: bool = False
    lease_s: float = DEFAULT_LEASE_S
    poll_s: float = 1.0  # how often to look at jobs another runner holds
    pack: int = 0  # compatible jobs per stack at most; 0: auto (jobs.engine.packing)
    detach: bool = False  # submit every pending job at once and return; the cluster runs them
    tensorboard: bool = False  # each job also writes TensorBoard events (tensorboard/<job_id>)
    checkpoint_seconds: float = CHECKPOINT_SECONDS  # a stack's checkpoints are this far apart
    launch: bool = True  # False: dispatch nothing, only follow other runners' jobs


@dataclass(frozen=True)
class JobEnd:
    """How one job of this run ended (or why it did not run)."""

    job_id: str
    state: str
    error: str | None = None
    log: str = ""


@dataclass
class Counts:
    """Live counts for progress: every job of the grid is in exactly one of these."""

    total: int = 0
    done: int = 0
    failed: int = 0
    diverged: int = 0
    cancelled: int = 0
    running: int = 0
    elsewhere: int = 0  # held by another runner
    pending: int = 0
    skipped: int = 0  # finished before this run started (counted in done/diverged too)
    in_flight_done: float = 0.0  # the running stacks' epochs done, in jobs (8 of 16 epochs of a
    # stack of 64 jobs: 32): progress moves per epoch of a stack, not only when stacks end
    units_ended: int = 0  # units (stacks) of this run that ended
    started_at: float = field(default_factory=time.perf_counter)
    ended_at: float | None = None

    @property
    def elapsed(self) -> float:
        return (self.ended_at or time.perf_counter()) - self.started_at

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.diverged + self.cancelled

    @property
    def progressed(self) -> float:
        """Jobs finished, plus the finished share of the jobs in flight."""
        return self.finished + self.in_flight_done


@dataclass
class RunReport:
    grid_dir: Path
    counts: Counts
    problems: list[JobEnd]  # failed and diverged jobs, in the order they ended
    not_started: int = 0  # left pending by --fail-fast or a cancel request
    lost_claims: bool = False  # another runner thought this one dead and took its jobs
    detached: int = 0  # jobs --detach left running on the cluster
    cancelled: list[JobEnd] = field(default_factory=list)  # stopped by a cancel request
    cancel_requested: bool = False  # the grid's cancel request stopped this run
    set_aside: list[Path] = field(default_factory=list)  # unreadable results files moved aside
    lost_checkpoints: dict[str, int] = field(default_factory=dict)  # job -> epoch of its
    # checkpoint that was gone (deleted): it trained again from its first epoch

    @property
    def exit_code(self) -> int:
        return 0 if self.counts.done + self.detached == self.counts.total else 1
