"""StackRequest: jobs to train together, as a backend hands them to the engine (no torch needed)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

from jobs.spec import JobSpec

CHECKPOINT_SECONDS = 10.0  # at most this much training is redone after a kill


def swept_keys(specs: Sequence[JobSpec]) -> tuple[str, ...]:
    """The settings whose values differ between jobs: what tells a grid's jobs apart."""
    values = [spec.to_dict() for spec in specs]
    if len(values) < 2:
        return ()
    return tuple(key for key in values[0] if any(other[key] != values[0][key]
                                                 for other in values[1:]))


@dataclass(frozen=True)
class RunSettings:
    """How jobs report and where, never what they compute: none of it is part of a job id.
    Settings reach workers as this value (sent with each unit), not as environment variables."""

    grid: str = ""  # the grid's name, written in every results row
    tensorboard: bool = False  # also write TensorBoard events (tensorboard/<job_id>/)
    swept_keys: tuple[str, ...] = ()  # the settings that tell the grid's jobs apart (HParams)
    # a stack checkpoints after an evaluated epoch once this many seconds passed since its last
    # (0: after every evaluated epoch): on small models a checkpoint costs more than an epoch
    checkpoint_seconds: float = CHECKPOINT_SECONDS
    runner: str = ""  # the runner whose claims the worker watches; "": none (inline, SLURM)


@dataclass(frozen=True)
class StackRequest:
    """Jobs of one grid dir to train in one process: one unit of work for a backend. Jobs that
    cannot share a stack (jobs.engine.packing.pack_key) train as stacks one after another."""

    grid_dir: str
    specs: tuple[JobSpec, ...]
    settings: RunSettings = field(default_factory=RunSettings)

    @cached_property
    def key(self) -> str:
        """The stack's id: a hash of its jobs, the same whatever their order."""
        return stack_id(spec.job_id for spec in self.specs)

    @property
    def job_ids(self) -> list[str]:
        return [spec.job_id for spec in self.specs]


def stack_id(job_ids: object) -> str:
    """A short stable id for a set of jobs (16 hex digits)."""
    text = "\n".join(sorted(str(job_id) for job_id in job_ids))  # type: ignore[attr-defined]
    return hashlib.sha1(text.encode()).hexdigest()[:16]
