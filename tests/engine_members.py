"""A stack's members built from their specs alone, with no run dir or file: for the tests and
benchmarks of the engine's computation (jobs.engine.stack) apart from the run-dir owner."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from jobs.data.datasets import Dataset
from jobs.engine.member import Member
from jobs.engine.stack import stack_order
from jobs.spec import JobSpec


class NoRunDir:
    """What building a member asks of its run dir: the spec, nothing saved, a quiet log."""

    log = logging.getLogger("tests.engine_members")
    path = Path("no-run-dir")  # named in errors only

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec

    def saved_state(self) -> None:
        return None


def fresh_members(specs: Sequence[JobSpec], data: Dataset,
                  device: torch.device | None = None) -> list[Member]:
    """Each spec's member from its seed, in the order a Stack takes them (stack_order)."""
    device = device or torch.device("cpu")
    return stack_order([Member.build(NoRunDir(spec), data, device)  # type: ignore[arg-type]
                        for spec in specs])
