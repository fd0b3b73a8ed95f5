"""The entry point backends call: run one unit of work (a stack of jobs; a job alone is a stack
of one)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from jobs.request import RunSettings, StackRequest
from jobs.spec import JobSpec

if TYPE_CHECKING:  # at run time imported where used: jobs.engine.train imports torch
    from jobs.rundir.results import JobResult

__all__ = ["RunSettings", "StackRequest", "one_per_dataset", "run_unit", "warm_up"]

log = logging.getLogger("tvo.job")


def run_unit(request: StackRequest, *, threads: int | None = None) -> list[JobResult]:
    """Train the jobs of one unit in this process, as one stack, into their grid dir. Results
    come in the order of `request.specs`."""
    from jobs.engine.train import run_stack

    return run_stack(request, threads=threads)


def one_per_dataset(specs: Sequence[JobSpec]) -> list[JobSpec]:
    """The first spec of each data key and device: the datasets `specs` load (torch-free, so a
    runner can send a worker just these)."""
    firsts: dict[tuple[object, ...], JobSpec] = {}
    for spec in specs:
        firsts.setdefault((*spec.data_key(), spec.device), spec)
    return list(firsts.values())


def warm_up(specs: Sequence[JobSpec]) -> None:
    """Get this process ready for jobs like `specs` before they come: import the engine (torch)
    and load their data into the process's cache (jobs.engine.train.shared_dataset). Never raises: a
    job that then cannot load its data reports it itself."""
    try:
        from jobs.engine.train import DATASETS_KEPT, resolve_device, shared_dataset

        for spec in one_per_dataset(specs)[:DATASETS_KEPT]:
            shared_dataset(spec, resolve_device(spec.device))
    except Exception:  # noqa: BLE001
        log.debug("warming up for %d jobs failed; they load on their own", len(specs),
                  exc_info=True)
