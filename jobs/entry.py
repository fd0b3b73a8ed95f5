"""The entry point backends call: run one unit of work (one job, or a pack of jobs)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from jobs.spec import JobSpec
from jobs.train import JobResult, run_job


@dataclass(frozen=True)
class JobRequest:
    """One job to run: its settings, its run dir and the grid it belongs to."""

    spec: JobSpec
    run_dir: str
    grid: str = ""


def run_unit(jobs: Sequence[JobRequest], *, threads: int | None = None) -> list[JobResult]:
    """Run the jobs of one unit in this process, each into its own run dir.

    One job trains alone; several train together as one pack (jobs.pack.run_pack), which runs
    any job it cannot pack alone. Results come in the order of `jobs`.
    """
    if len(jobs) == 1:
        request = jobs[0]
        return [run_job(request.spec, request.run_dir, grid=request.grid, threads=threads)]
    from jobs.pack import run_pack  # here: jobs.pack imports this module's JobRequest type

    return run_pack(jobs, threads=threads)
