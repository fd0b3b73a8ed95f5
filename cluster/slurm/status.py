"""What SLURM says about a grid's jobs, for `tvo status`: from the submission records on disk.

squeue answers for jobs still queued or running (slurmctld itself, no lag); for the others,
submitit's re-attached jobs say how they ended (its watcher: one sacct call for them all).
Without SLURM's commands (the dir was copied to a laptop, say) the records alone still give
each job's SLURM id and log.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from cluster.slurm import commands
from cluster.slurm.records import latest_placements

UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class SlurmJobState:
    """One tvo job's latest SLURM job: where it ran and SLURM's state for it."""

    job_id: str
    slurm_id: str
    task: int
    state: str  # SLURM's word (PENDING, RUNNING, COMPLETED, "CANCELLED by 0", ...) or UNKNOWN
    log: Path

    @property
    def queued(self) -> bool:
        """Still pending or running in SLURM (including a requeued job waiting to restart)."""
        return self.state not in (UNKNOWN, "") and not self.ended

    @property
    def ended(self) -> bool:
        return self.state.split()[0] in commands.TERMINAL_STATES if self.state else False

    @property
    def pending(self) -> bool:
        return self.state == "PENDING"

    def died_message(self) -> str:
        return f"SLURM job {self.slurm_id} ended {self.state} without a result; log {self.log}"


def slurm_jobs(grid_dir: Path) -> dict[str, SlurmJobState]:
    """Each job of the grid that was submitted to SLURM, with SLURM's current state."""
    placements = latest_placements(grid_dir)
    if not placements:
        return {}
    asked = shutil.which("squeue") is not None
    queue = (commands.queued(p.slurm_id for p in placements.values()) if asked else None) or {}
    # every job's log first: that re-attaches (registers) them all with submitit's watcher, so
    # the states below take one sacct call for them all
    logs = {job_id: placement.log for job_id, placement in placements.items()}
    return {job_id: SlurmJobState(
        job_id, placement.slurm_id, placement.task,
        queue.get(placement.slurm_id) or (placement.job.state if asked else UNKNOWN),
        logs[job_id]) for job_id, placement in placements.items()}
