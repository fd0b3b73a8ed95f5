"""Where a grid's SLURM jobs are, on disk: one submitit folder per run, with a record of its jobs.

    <grid_dir>/slurm/<YYYYmmdd-HHMMSS>-<n>/              submitit's folder for one `tvo run`
    <grid_dir>/slurm/<...>/submission.json               which SLURM job and task runs each job
    <grid_dir>/slurm/<...>/<array>_<index>_<task>_log.out  and .err, result.pkl: submitit's files

The record is what submitit lacks: which tvo jobs a SLURM job trains. From it, any process
re-attaches to a job with submitit's own `SlurmJob(folder, job_id)`: its paths, state, result.
A fresh folder per run, because SLURM job ids start again at 1 on a fresh cluster and a reused
folder would hand back another job's result file.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import submitit

SLURM_DIR = "slurm"
RECORD_FILE = "submission.json"


@dataclass(frozen=True)
class Placement:
    """Where one unit runs: a SLURM job (or array element) and the task within it."""

    folder: Path  # the submitit folder
    slurm_id: str  # "12" for a single job, "12_3" for an array element
    task: int
    job_ids: tuple[str, ...]  # the tvo jobs of the unit

    @cached_property
    def job(self) -> submitit.SlurmJob[Any]:
        """submitit's handle on this task, re-attached from the folder and the SLURM id."""
        import submitit

        from cluster.slurm.commands import watcher_warnings_to_stderr_only

        watcher_warnings_to_stderr_only()
        return submitit.SlurmJob(self.folder, self.slurm_id, tasks=(self.task,))

    @property
    def log(self) -> Path:
        return self.job.paths.stdout

    def to_json(self) -> dict[str, Any]:
        return {"slurm_id": self.slurm_id, "task": self.task, "job_ids": list(self.job_ids)}


def new_folder(grid_dir: Path) -> Path:
    """A folder no other run uses: the next free <timestamp>-<n>, created atomically."""
    parent = grid_dir / SLURM_DIR
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        folder = parent / f"{stamp}-{n}"
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise FileExistsError(f"no free submission folder under {parent} for {stamp}")


def write_record(folder: Path, placements: Iterable[Placement], info: dict[str, Any]) -> None:
    """Write the folder's record atomically (a reader sees the old or the new one, whole)."""
    content = {**info, "units": [placement.to_json() for placement in placements]}
    temporary = folder / f".{RECORD_FILE}.{os.getpid()}.tmp"
    with open(temporary, "w") as handle:
        json.dump(content, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, folder / RECORD_FILE)


def read_placements(folder: Path) -> list[Placement]:
    try:
        content = json.loads((folder / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return []
    return [Placement(folder, str(unit["slurm_id"]), int(unit["task"]),
                      tuple(str(job_id) for job_id in unit["job_ids"]))
            for unit in content.get("units", [])]


def latest_placements(grid_dir: Path) -> dict[str, Placement]:
    """For each tvo job of the grid, where it was last submitted (the newest run wins)."""
    by_job: dict[str, Placement] = {}
    parent = grid_dir / SLURM_DIR
    if not parent.is_dir():
        return by_job
    for folder in sorted((path for path in parent.iterdir() if path.is_dir()), key=_run_order):
        for placement in read_placements(folder):
            for job_id in placement.job_ids:
                by_job[job_id] = placement
    return by_job


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


def _run_order(folder: Path) -> tuple[str, int]:
    stamp, _, n = folder.name.rpartition("-")
    return (stamp, int(n)) if n.isdigit() else (folder.name, 0)
