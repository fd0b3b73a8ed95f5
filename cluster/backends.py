"""Backends by name: one table, each backend imported only when it is asked for.

A new backend is one module with a Backend subclass whose constructor takes BackendSettings,
plus one line in BACKENDS.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI imports this table: keep torch (via jobs) out of `tvo --help`
    from cluster.base import Backend, Resources
    from jobs.entry import StackRequest
    from jobs.rundir.results import JobResult

# name -> (module, class); the module is imported by make_backend, never before
BACKENDS: dict[str, tuple[str, str]] = {
    "ray": ("cluster.ray", "RayBackend"),
    "inline": ("cluster.inline", "InlineBackend"),
    "slurm": ("cluster.slurm.backend", "SlurmBackend"),
}

# What a backend runs for each unit: jobs.entry.run_unit, or a stand-in with its signature,
# (request: StackRequest, *, threads: int) -> list[JobResult].
UnitEntry = Callable[..., "list[JobResult]"]


class BackendError(RuntimeError):
    """A backend that cannot start or cannot run these resources; one line saying why."""


@dataclass(frozen=True)
class BackendSettings:
    """Everything a backend may need to start; each backend reads the fields it knows."""

    grid_dir: Path  # the grid's output dir, for a backend's own files (e.g. submitit's)
    resources: Resources = field(default_factory=lambda: _resources())  # per unit, for sizing
    max_parallel: int | None = None  # the runner's cap on units in flight
    ray_address: str | None = None  # join this Ray cluster instead of starting one
    slurm: Mapping[str, Any] = field(default_factory=dict)  # the grid's `slurm` section
    entry: UnitEntry | None = None  # None: jobs.entry.run_unit


def _resources() -> Resources:
    from cluster.base import Resources

    return Resources()


def make_backend(name: str, settings: BackendSettings) -> Backend:
    """Import and start the backend called `name`."""
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}")
    module_name, class_name = BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        others = ", ".join(n for n in BACKENDS if n != name)
        raise BackendError(f"backend {name!r} is not available in this version of tvo "
                           f"({module_name.replace('.', '/')}.py is missing); use one of: "
                           f"{others}") from None
    backend: Backend = getattr(module, class_name)(settings)
    return backend


def run_entry(entry: UnitEntry | None, request: StackRequest,
              threads: int) -> list[JobResult]:
    """Call a unit's entry point (run_unit unless a stand-in was given) the way backends do."""
    if entry is None:
        from jobs.entry import run_unit

        entry = run_unit
    return list(entry(request, threads=threads))
