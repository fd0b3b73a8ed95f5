"""scancel for a grid's jobs: their SLURM ids come from the SLURM backend's submission records.

The records are cluster.slurm.records' (one folder per `tvo run` under <grid_dir>/slurm/, the
newest placement of a job wins). Without SLURM's commands (a dir copied to a laptop) nothing is
cancelled.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Collection, Iterable
from pathlib import Path

from cluster.slurm.commands import client_environment
from cluster.slurm.records import latest_placements

_SCANCEL_TIMEOUT_S = 60


def latest_slurm_ids(grid_dir: Path) -> dict[str, set[str]]:
    """For each SLURM id of the grid's newest placements, the tvo jobs it runs (all tasks)."""
    jobs_of: dict[str, set[str]] = {}
    for job_id, placement in latest_placements(grid_dir).items():
        jobs_of.setdefault(placement.slurm_id, set()).add(job_id)
    return jobs_of


def slurm_ids_for(grid_dir: Path, job_ids: Collection[str]) -> list[str]:
    """The SLURM ids that run only jobs among `job_ids`: cancelling them stops nothing else.

    A SLURM job that also runs other tvo jobs (a pack, `jobs_per_node` > 1) is left alone.
    """
    wanted = set(job_ids)
    return sorted(slurm_id for slurm_id, jobs in latest_slurm_ids(grid_dir).items()
                  if jobs <= wanted)


def scancel(slurm_ids: Iterable[str], *, pending_only: bool = False) -> list[str]:
    """Ask SLURM to cancel these jobs (only those still pending, if so asked).

    Returns the ids asked for; [] when there are none or SLURM's scancel is not installed here.
    Ids SLURM no longer knows are fine: scancel skips them.
    """
    ids = sorted(set(slurm_ids))
    if not ids or shutil.which("scancel") is None:
        return []
    command = ["scancel", *(["--state=PENDING"] if pending_only else []), *ids]
    # Inside a SLURM job (a driver in an allocation) SLURM_* variables describe that job, not
    # the ones to cancel.
    env = client_environment()
    try:
        subprocess.run(command, env=env, capture_output=True, timeout=_SCANCEL_TIMEOUT_S,
                       check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return ids
