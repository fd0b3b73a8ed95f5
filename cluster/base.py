"""The Backend seam: submit units of work, then collect their outcomes as they complete.

A unit is a StackRequest: jobs of one grid dir that train together in one process (a job alone
is a stack of one). Backends never write results: the unit's entry point (`jobs.entry.run_unit`)
writes them into the grid dir, so results look the same wherever they ran. A backend only
decides where and when units run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jobs.entry import StackRequest

if TYPE_CHECKING:
    from jobs.rundir.results import JobResult
    from jobs.spec import JobSpec

__all__ = ["Backend", "Outcome", "Resources", "StackRequest", "WorkUnit"]

WorkUnit = StackRequest  # what a backend schedules as one task: a stack trained in one process


@dataclass(frozen=True)
class Resources:
    """Per-unit resources in tvo's own names; each backend maps them to its cluster's spelling."""

    cpus: int = 1
    gpus: int = 0
    mem_gb: float | None = None
    timeout_min: int = 60
    gpus_per_node: int = 0  # slurm: pack several units into one multi-GPU allocation...
    jobs_per_node: int = 1  # ...one task per GPU, each task pinned to its own device


@dataclass(frozen=True)
class Outcome:
    """A finished unit: one JobResult per job, or a crash of the worker that ran it."""

    unit: WorkUnit
    results: tuple[JobResult, ...] = ()
    crash: str | None = None  # the worker died or the task raised; results may be empty
    info: dict[str, Any] = field(default_factory=dict)  # e.g. SLURM job id and state


class Backend(ABC):
    """Runs WorkUnits somewhere. Implementations: inline, ray, slurm."""

    name: str

    @abstractmethod
    def submit(self, units: Sequence[WorkUnit], resources: Resources) -> None:
        """Start (or queue) the units; returns at once for cluster backends.

        The runner calls submit again whenever a slot frees up, between outcomes.
        """

    @abstractmethod
    def outcomes(self) -> Iterator[Outcome]:
        """Yield an Outcome for each submitted unit as it completes, in completion order.

        The runner may stop iterating after any outcome and call outcomes() afresh after the
        next submit: each call yields the submitted units not yielded before.
        """

    # Whether units submitted beyond `capacity` wait in the backend's own queue and start the
    # moment a slot frees (Ray): then the runner sends each slot its next unit ahead of time.
    queues_ahead = False

    def capacity(self, resources: Resources, specs: Sequence[JobSpec] = ()) -> int | None:
        """How many units of this size (of jobs like `specs`) run at once; None when the
        backend cannot tell."""
        return None

    def device_memory(self, specs: Sequence[JobSpec], resources: Resources) -> int | None:
        """Free bytes of the GPU a unit of `specs` trains on, or None when they train on the
        CPU or the backend cannot tell (pack=auto then sizes stacks for the CPU)."""
        return None

    def describe(self) -> str:
        """One line for the user: where the units run."""
        return self.name

    def warm_up(self, specs: Sequence[JobSpec], resources: Resources) -> None:  # noqa: B027
        """Optional: get the workers ready for jobs like `specs` (the engine imported, their
        data loaded) while the runner prepares the output dir; returns at once."""

    @abstractmethod
    def cancel(self) -> None:
        """Stop every unit still queued or running; their jobs keep their last checkpoint."""

    def close(self) -> str | None:
        """Release what the backend started (an embedded Ray, for example). Returns one line
        for the user when something is kept (an embedded Ray's logs after a crash); most
        backends hold nothing."""
        return None
