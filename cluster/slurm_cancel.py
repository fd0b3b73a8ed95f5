"""scancel for a grid's jobs: their SLURM ids come from the SLURM backend's submission records.

What the SLURM backend writes, and all this module reads: one folder per `tvo run` under
<grid_dir>/slurm/, named <YYYYmmdd-HHMMSS>-<n>, each holding submission.json:

    {"units": [{"slurm_id": "12_3", "task": 0, "job_ids": ["<tvo job id>", ...]}, ...], ...}

`slurm_id` is the SLURM job or array element that runs the unit's tvo jobs (task = its task
within that SLURM job). A job submitted again by a later run is found in the newer folder, which
wins. Without SLURM's commands (a dir copied to a laptop) nothing is cancelled.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Collection, Iterable
from pathlib import Path

SLURM_DIR = "slurm"
RECORD_FILE = "submission.json"
_SCANCEL_TIMEOUT_S = 60


def latest_slurm_ids(grid_dir: Path) -> dict[str, set[str]]:
    """For each SLURM id of the grid's newest placements, the tvo jobs it runs (all tasks)."""
    where: dict[str, str] = {}  # tvo job -> the SLURM id it was last submitted as
    parent = grid_dir / SLURM_DIR
    folders = sorted((path for path in parent.iterdir() if path.is_dir()),
                     key=_run_order) if parent.is_dir() else []
    for folder in folders:
        try:
            units = json.loads((folder / RECORD_FILE).read_text()).get("units", [])
        except (OSError, ValueError):
            continue
        for unit in units:
            for job_id in unit.get("job_ids", []):
                where[str(job_id)] = str(unit["slurm_id"])
    jobs_of: dict[str, set[str]] = {}
    for job_id, slurm_id in where.items():
        jobs_of.setdefault(slurm_id, set()).add(job_id)
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
    # the ones to cancel; SLURM_CONF says where the cluster's configuration is and stays.
    env = {key: value for key, value in os.environ.items()
           if key == "SLURM_CONF" or not key.startswith("SLURM_")}
    try:
        subprocess.run(command, env=env, capture_output=True, timeout=_SCANCEL_TIMEOUT_S,
                       check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return ids


def _run_order(folder: Path) -> tuple[str, int]:
    stamp, _, n = folder.name.rpartition("-")
    return (stamp, int(n)) if n.isdigit() else (folder.name, 0)
