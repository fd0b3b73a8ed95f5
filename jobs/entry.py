"""The entry point backends call: run one unit of work (one job, or a pack of jobs)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from jobs.spec import JobSpec
from jobs.train import JobResult, run_job


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
    """Run the jobs of one unit in this process, each into its own run dir."""
    return [run_job(r.spec, r.run_dir, grid=r.grid, threads=threads, tensorboard=r.tensorboard,
                    swept_keys=r.swept_keys) for r in jobs]
