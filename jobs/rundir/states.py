"""A job's state, and the one record that says where a job stands (read through jobs.rundir.index).

A job is `done` or `diverged` exactly when a results file holding its rows is committed; every
other state comes from the state events of the processes that ran it, and from whether its
runner still lives. `pending` is a job nothing has been recorded for (or one whose runner died
while it ran: then `interrupted` says so, and the next run resumes it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any


class JobState(str, Enum):
    """Every state a job can be in; the values are what files and the CLI spell."""

    DONE = "done"
    RUNNING = "running"
    FAILED = "failed"
    DIVERGED = "diverged"
    CANCELLED = "cancelled"
    PENDING = "pending"

    def __str__(self) -> str:
        return self.value


PENDING, RUNNING, DONE, FAILED, DIVERGED, CANCELLED = (
    JobState.PENDING, JobState.RUNNING, JobState.DONE, JobState.FAILED, JobState.DIVERGED,
    JobState.CANCELLED)
STATES = tuple(JobState)
FINISHED = (DONE, DIVERGED)  # a rerun never trains these again
ENDED = (DONE, DIVERGED, FAILED, CANCELLED)  # how an attempt can end


@dataclass(frozen=True)
class Outcome:
    """How one attempt of a job ended, as its stack records it (the JSON of a results file's
    metadata and of an `end` state event)."""

    state: JobState
    error: str | None = None
    epochs_done: int = 0
    test_acc: float | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        value = asdict(self)
        value["state"] = self.state.value
        return {key: item for key, item in value.items() if item is not None}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Outcome:
        return cls(JobState(value["state"]), value.get("error"), int(value.get("epochs_done", 0)),
                   value.get("test_acc"), float(value.get("seconds", 0.0)))


@dataclass(frozen=True)
class JobRecord:
    """Where one job stands: its state and what the files say of its latest attempt."""

    job_id: str
    state: JobState = PENDING
    error: str | None = None
    attempts: int = 0  # attempts started (a stack that includes it began)
    epochs_done: int = 0
    test_acc: float | None = None
    interrupted: bool = False  # pending because its runner died while it ran: resumes
    stack: str = ""  # the stack of its latest attempt
    host: str = ""  # where that attempt ran
    pid: int = 0  # the process that trained it (the worker)
    started_at: float = 0.0  # time.time() of that attempt's start
    ended_at: float = 0.0
    log: str = ""  # the log file of the process that trained it
    epoch: int = 0  # while running: the last epoch its stack reached
    epochs: int = 0  # the job's epochs
    committed: str = ""  # the results file that holds its rows (done, diverged)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED
