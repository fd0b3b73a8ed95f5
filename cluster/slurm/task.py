"""What runs inside a SLURM job: one task per unit, each pinned to its own GPUs.

submitit pickles a UnitTasks, and srun starts it once per task of the job; each task picks its
unit by its local rank. The `checkpoint` method makes submitit requeue the job on preemption or
at its time limit: the requeued job runs the same units again, and run_job resumes each job from
its last epoch checkpoint.
"""

from __future__ import annotations

import os
import time
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cluster.backends import UnitEntry, run_entry
from cluster.base import WorkUnit
from jobs.rundir.layout import OutputDir
from jobs.rundir.results import JobResult

# SLURM checks time limits on a timer, so its signal comes a little late or early.
_SIGNAL_SLACK_S = 30


class NoProgressError(RuntimeError):
    """A job hit its time limit without saving a new checkpoint: requeueing would loop."""


@dataclass
class UnitTasks:
    """The units of one SLURM job (array element): task i runs units[i]."""

    units: tuple[WorkUnit, ...]
    threads: int
    gpus_per_task: int = 0
    entry: UnitEntry | None = None
    time_limit_s: int = 0
    signal_delay_s: int = 0
    started: float = field(default=0.0, compare=False)  # this attempt's start, in the task

    def __call__(self) -> list[JobResult]:
        import submitit

        self.started = time.time()
        rank = submitit.JobEnvironment().local_rank
        if rank >= len(self.units):  # more tasks than units: nothing to do here
            return []
        if self.gpus_per_task:
            pin_gpus(rank, self.gpus_per_task)
        return run_entry(self.entry, self.units[rank], self.threads)

    def checkpoint(self) -> object:
        """Called by submitit on rank 0 when USR2 comes (preemption or time limit): requeue.

        Each job's checkpoint.pt (written every evaluated epoch) is all the state there is, so
        the requeued job is this same object. One exception: at its time limit, a SLURM job none
        of whose runs saved a checkpoint during the whole attempt would only loop; it fails
        instead (raised into the running run_job, the error lands in the job's status.json).
        """
        import submitit

        elapsed = time.time() - self.started
        if timed_out(elapsed, self.time_limit_s, self.signal_delay_s) and not self.progressed():
            minutes = self.time_limit_s // 60
            raise NoProgressError(f"no epoch checkpoint was saved within the time limit of "
                                  f"{minutes} min, so a requeue would start from the same point "
                                  "again; raise resources.timeout_min")
        return submitit.helpers.DelayedSubmission(self)

    def progressed(self) -> bool:
        """Did any stack of this SLURM job save a checkpoint, or commit, during this attempt?"""
        for unit in self.units:
            out = OutputDir(Path(unit.grid_dir))
            for path in (out.checkpoint_file(unit.key), out.results_file(unit.key)):
                if path.exists() and path.stat().st_mtime >= self.started:
                    return True
        return False


def timed_out(elapsed_s: float, time_limit_s: int, signal_delay_s: int) -> bool:
    """Whether a USR2 after `elapsed_s` is SLURM's time-limit warning rather than preemption.

    submitit's own test counts every signal as a time-out when the limit is 10 minutes or less
    (it allows 10 minutes of slack), which is useless for short limits: here the slack is 30 s.
    """
    return time_limit_s > 0 and elapsed_s >= time_limit_s - signal_delay_s - _SIGNAL_SLACK_S


def pin_gpus(rank: int, per_task: int,
             environ: MutableMapping[str, str] | None = None) -> str:
    """Give task `rank` its own `per_task` GPUs of those the job sees; returns the new value.

    With --gpus-per-node and several tasks, SLURM shows every task all of the job's GPUs
    (CUDA_VISIBLE_DEVICES=0,1): task i takes entries [i*per_task, (i+1)*per_task) of that list.
    A cluster that already binds GPUs per task leaves each task exactly its own: kept as is.
    This runs before anything touches CUDA, so torch only ever sees the task's devices.
    """
    environ = os.environ if environ is None else environ
    visible = _devices(environ.get("CUDA_VISIBLE_DEVICES", ""))
    if len(visible) > per_task:
        visible = visible[rank * per_task:(rank + 1) * per_task]
    if len(visible) != per_task:
        raise RuntimeError(f"task {rank} needs {per_task} GPUs, but the job sees "
                           f"CUDA_VISIBLE_DEVICES={environ.get('CUDA_VISIBLE_DEVICES', '')!r}")
    environ["CUDA_VISIBLE_DEVICES"] = ",".join(visible)
    return environ["CUDA_VISIBLE_DEVICES"]


def _devices(value: str) -> Sequence[str]:
    return [device.strip() for device in value.split(",") if device.strip()]
