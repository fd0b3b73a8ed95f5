"""A grid's output dir: its two grid-level files, grid.yaml (the grid as resolved for the latest
run into this dir) and jobs.parquet (one row per job ever run into this dir: the union). What
else lives there is jobs.rundir.layout's to say, and jobs.rundir.run_dir's to write.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.rundir import results
from jobs.rundir.layout import GRID_FILE, JOBS_FILE
from jobs.spec import JobSpec

_LOCK_FILE = ".tvo.lock"


class OutDirError(ValueError):
    """A folder that is not a grid's output dir; the message says what is missing."""


class DamagedJobsFile(OutDirError):
    """A grid dir whose jobs.parquet cannot be read (cut short, damaged)."""


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
    """Write grid.yaml and add these jobs to jobs.parquet; returns how many jobs were new."""
    grid_dir.mkdir(parents=True, exist_ok=True)
    results.atomic_write_bytes(grid_dir / GRID_FILE, grid_yaml.encode())
    return add_jobs(grid_dir, specs, grid_name)


def add_jobs(grid_dir: Path, specs: Sequence[JobSpec], grid_name: str) -> int:
    """Add these jobs to jobs.parquet; returns how many were new.

    Rows already in jobs.parquet stay as they are, so jobs of an earlier, different grid run
    into the same dir remain listed (and their results are never touched).
    """
    grid_dir.mkdir(parents=True, exist_ok=True)
    path = grid_dir / JOBS_FILE
    schema = results.jobs_schema()
    with _locked(grid_dir):
        old = pq.ParquetFile(path).read() if path.exists() else None
        known = set(old.column("job_id").to_pylist()) if old is not None else set()
        fresh = [spec for spec in dict.fromkeys(specs) if spec.job_id not in known]
        if fresh or old is None:
            table = results.jobs_table(fresh, grid_name)
            if old is not None:  # older rows may lack a setting added since: null there
                old = old.select([name for name in old.column_names if name in schema.names])
                table = pa.concat_tables([old, table], promote_options="default")
                table = table.select(schema.names).cast(schema)
            results.write_parquet(path, table, compressed=True)
    return len(fresh)


DAMAGED_SUFFIX = ".broken"  # jobs.parquet set aside: kept for a look, read by nothing


def damaged_jobs_file(grid_dir: Path) -> str | None:
    """Why the dir's jobs.parquet cannot be read (cut short, not Parquet), or None when it
    reads or is absent."""
    path = grid_dir / JOBS_FILE
    try:
        pq.ParquetFile(path).read(columns=["job_id"])
    except FileNotFoundError:
        return None
    except (OSError, pa.ArrowException, KeyError) as exc:
        return _why(exc)
    return None


def _why(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def set_aside_damaged(grid_dir: Path) -> Path | None:
    """A jobs.parquet that cannot be read goes aside (jobs.parquet.broken), so that the run
    writes it again with its grid's jobs; returns the new name, or None when it reads."""
    if damaged_jobs_file(grid_dir) is None:
        return None
    path = grid_dir / JOBS_FILE
    target = path.with_name(path.name + DAMAGED_SUFFIX)
    path.replace(target)
    return target


def job_ids(grid_dir: Path) -> list[str]:
    """Every job listed in the dir's jobs.parquet, in order."""
    path = grid_dir / JOBS_FILE
    if not grid_dir.is_dir():
        raise OutDirError(f"grid output dir {str(grid_dir)!r} does not exist")
    if not path.exists():
        raise OutDirError(f"{str(grid_dir)!r} is not a grid output dir (it has no {JOBS_FILE}); "
                          "pass the folder `tvo run` printed, e.g. outputs/quickstart")
    # ParquetFile, not read_table: that one imports pyarrow.dataset and pandas (0.2 s)
    try:
        table = pq.ParquetFile(path).read(columns=["job_id"])
    except (OSError, pa.ArrowException, KeyError) as exc:
        raise DamagedJobsFile(f"{path} cannot be read ({_why(exc)}); `tvo run` of the grid "
                              "sets it aside and writes it again") from None
    return [str(job_id) for job_id in table.column(0).to_pylist()]
