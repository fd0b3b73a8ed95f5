"""A grid's output dir: where things live, and the two grid-level files (grid.yaml, jobs.parquet).

    <out>/<grid name>/grid.yaml       the grid as resolved for the latest run into this dir
    <out>/<grid name>/jobs.parquet    one row per job ever run into this dir (the union)
    <out>/<grid name>/runs/<job_id>/  one job: spec, status, metrics, checkpoint, log, claim
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.rundir import results
from jobs.spec import JobSpec

GRID_FILE = "grid.yaml"
JOBS_FILE = "jobs.parquet"
RUNS_DIR = "runs"
_LOCK_FILE = ".tvo.lock"


class OutDirError(ValueError):
    """A folder that is not a grid's output dir; the message says what is missing."""


def run_dir(grid_dir: Path, job_id: str) -> Path:
    return grid_dir / RUNS_DIR / job_id


@contextmanager
def _locked(grid_dir: Path) -> Iterator[None]:
    """One runner at a time updates jobs.parquet (read, merge, write)."""
    with open(grid_dir / _LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare(grid_dir: Path, grid_yaml: str, specs: Sequence[JobSpec], grid_name: str) -> int:
    """Write grid.yaml and add these jobs to jobs.parquet; returns how many jobs were new.

    Rows already in jobs.parquet stay as they are, so jobs of an earlier, different grid run
    into the same dir remain listed (and their run dirs are never touched).
    """
    grid_dir.mkdir(parents=True, exist_ok=True)
    results.atomic_write_bytes(grid_dir / GRID_FILE, grid_yaml.encode())
    path = grid_dir / JOBS_FILE
    with _locked(grid_dir):
        rows = pq.ParquetFile(path).read().to_pylist() if path.exists() else []
        known = {row["job_id"] for row in rows}
        new_rows = [row for row in results.jobs_table(specs, grid_name).to_pylist()
                    if row["job_id"] not in known]
        if new_rows or not path.exists():
            # Older rows may lack a setting added since; from_pylist leaves it null.
            merged = pa.Table.from_pylist(rows + new_rows, schema=results.jobs_schema())
            results.write_parquet(path, merged)
    return len(new_rows)


def job_ids(grid_dir: Path) -> list[str]:
    """Every job listed in the dir's jobs.parquet, in order."""
    path = grid_dir / JOBS_FILE
    if not grid_dir.is_dir():
        raise OutDirError(f"grid output dir {str(grid_dir)!r} does not exist")
    if not path.exists():
        raise OutDirError(f"{str(grid_dir)!r} is not a grid output dir (it has no {JOBS_FILE}); "
                          "pass the folder `tvo run` printed, e.g. outputs/quickstart")
    # ParquetFile, not read_table: that one imports pyarrow.dataset and pandas (0.2 s)
    table = pq.ParquetFile(path).read(columns=["job_id"])
    return [str(job_id) for job_id in table.column(0).to_pylist()]
