"""The entry point backends call: run one unit of work (one job, or a pack of jobs)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.spec import JobSpec

if TYPE_CHECKING:  # at run time imported where used: jobs.train imports torch
    from jobs.results import JobResult


@dataclass(frozen=True)
class JobRequest:
    """One job to run: its settings, its run dir and the grid it belongs to.

    The options after `grid` change how the job reports, never what it computes: they are not
    part of the JobSpec, so they leave the job id alone.
    """

    spec: JobSpec
    run_dir: str
    grid: str = ""
    tensorboard: bool = False  # also write TensorBoard events into run_dir/tensorboard
    swept_keys: tuple[str, ...] = ()  # the settings that tell the grid's jobs apart (HParams)


def run_unit(jobs: Sequence[JobRequest], *, threads: int | None = None) -> list[JobResult]:
    """Run the jobs of one unit in this process, each into its own run dir.

    One job trains alone; several train together as one pack (jobs.pack.run_pack), which runs
    any job it cannot pack alone. Results come in the order of `jobs`.
    """
    if len(jobs) == 1:
        from jobs.train import run_job

        r = jobs[0]
        return [run_job(r.spec, r.run_dir, grid=r.grid, threads=threads,
                        tensorboard=r.tensorboard, swept_keys=r.swept_keys)]
    from jobs.pack import run_pack  # here: jobs.pack imports this module's JobRequest type
    from jobs.tensorboard import TensorBoardLog

    boards = {r.spec.job_id: TensorBoardLog(Path(r.run_dir), r.spec, r.grid, r.swept_keys)
              for r in jobs if r.tensorboard}

    def progress(job_id: str, epoch: int, epochs: int, row: dict[str, Any]) -> None:
        if job_id in boards:
            boards[job_id].write(row)

    try:
        return run_pack(jobs, threads=threads, progress=progress if boards else None)
    finally:
        for board in boards.values():
            board.close()
