"""A stack's members built from their specs alone, with no grid dir or file: for the tests and
benchmarks of the engine's computation (jobs.engine.stack) apart from the run-dir owner."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from jobs.data.datasets import Dataset
from jobs.engine.member import Member
from jobs.engine.stack import stack_order
from jobs.spec import JobSpec


def fresh_members(specs: Sequence[JobSpec], data: Dataset,
                  device: torch.device | None = None) -> list[Member]:
    """Each spec's member from its seed, in the order a Stack takes them (stack_order)."""
    device = device or torch.device("cpu")
    return stack_order([Member.build(spec, data, device) for spec in specs])
