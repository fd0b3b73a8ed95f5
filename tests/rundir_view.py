"""What tests read of a grid dir, through the same reader the CLI uses (jobs.rundir.index): a
job's record, its committed rows, its log lines, whether a checkpoint holds it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from jobs.rundir.checkpoint import read_checkpoint_index
from jobs.rundir.index import StateIndex
from jobs.rundir.layout import CHECKPOINT_SUFFIX, OutputDir
from jobs.rundir.run_dir import RunDir
from jobs.rundir.states import JobRecord

TIMING_COLUMNS = ("epoch_seconds", "samples_per_second")


def record(grid_dir: Path, job_id: str) -> JobRecord:
    return StateIndex(grid_dir).refresh().record(job_id)


def state(grid_dir: Path, job_id: str) -> str:
    return record(grid_dir, job_id).state.value


def rows(grid_dir: Path, job_id: str, *, timing: bool = True) -> list[dict[str, Any]]:
    """A finished job's committed rows, by epoch ([] when it has none)."""
    found = record(grid_dir, job_id)
    if not found.committed:
        return []
    table = pq.ParquetFile(found.committed).read()
    if not timing:
        table = table.drop_columns(list(TIMING_COLUMNS))
    chosen = [row for row in table.to_pylist() if row["job_id"] == job_id]
    return sorted(chosen, key=lambda row: row["epoch"])


def log(grid_dir: Path, job_id: str) -> str:
    return RunDir(grid_dir).job_log(job_id)


def checkpointed_epoch(grid_dir: Path, job_id: str) -> int | None:
    """The newest epoch a stack checkpoint holds for the job, or None."""
    folder = OutputDir(grid_dir).checkpoints
    names = [name for name in (os.listdir(folder) if folder.is_dir() else [])
             if name.endswith(CHECKPOINT_SUFFIX)]  # not a write in progress (.tmp)
    epochs = [read_checkpoint_index(folder / name).get(job_id) for name in names]
    found = [epoch for epoch in epochs if epoch is not None]
    return max(found) if found else None


def files(grid_dir: Path) -> list[str]:
    """Every file under the grid dir, relative, sorted."""
    return sorted(str(path.relative_to(grid_dir)) for path in Path(grid_dir).rglob("*")
                  if path.is_file())


def all_rows(grid_dir: Path, drop: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Every committed row of the grid dir, by job and epoch (a dir of one job: its rows)."""
    index = StateIndex(grid_dir).refresh()
    found = []
    for job_id, path in index.committed_by().items():
        table = pq.ParquetFile(path).read()
        found += [{key: value for key, value in row.items() if key not in drop}
                  for row in table.to_pylist() if row["job_id"] == job_id]
    return sorted(found, key=lambda row: (row["job_id"], row["epoch"]))


def all_logs(grid_dir: Path) -> str:
    """Every log line any process wrote into the grid dir."""
    folder = OutputDir(grid_dir).logs
    return "".join(path.read_text() for path in sorted(folder.glob("*.log"))) \
        if folder.is_dir() else ""
