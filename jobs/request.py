"""JobRequest: one job to run, as a backend hands it to the engine (no torch needed)."""

from __future__ import annotations

from dataclasses import dataclass

from jobs.spec import JobSpec


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
