"""The entry point backends call: run one unit of work (one job, or a pack of jobs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from jobs.request import JobRequest

if TYPE_CHECKING:  # at run time imported where used: jobs.train imports torch
    from jobs.results import JobResult

__all__ = ["JobRequest", "run_unit"]


def run_unit(jobs: Sequence[JobRequest], *, threads: int | None = None) -> list[JobResult]:
    """Run the jobs of one unit in this process, each into its own run dir, as one stack (a
    job alone is a stack of one). Results come in the order of `jobs`."""
    from jobs.train import run_stack

    return run_stack(jobs, threads=threads)
