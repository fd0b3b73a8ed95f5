"""A few columns of finished jobs' rows, read from wherever they were committed: for callers
that need one number per job (the comparison protocol's selection) without the whole frame."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import pyarrow.parquet as pq

from jobs.rundir import legacy
from jobs.rundir.index import StateIndex
from jobs.rundir.states import FINISHED


def final_values(grid_dir: Path, job_ids: Iterable[str], column: str) -> dict[str, float]:
    """Each finished job's last finite value of `column`, by epoch; jobs without one are left
    out."""
    wanted = set(job_ids)
    index = StateIndex(grid_dir).refresh()
    by_file: dict[str, set[str]] = {}
    for job_id, path in index.committed_by().items():
        if job_id in wanted:
            by_file.setdefault(path, set()).add(job_id)
    for job_id, record in legacy.records(grid_dir).items():
        if job_id in wanted and record.state in FINISHED and job_id not in index.committed_by():
            by_file.setdefault(record.committed, set()).add(job_id)
    found: dict[str, tuple[int, float]] = {}
    for path, jobs in by_file.items():
        table = pq.ParquetFile(path).read(columns=["job_id", "epoch", column])
        for job_id, epoch, value in zip(*(table.column(name).to_pylist()
                                          for name in ("job_id", "epoch", column)), strict=True):
            if job_id not in jobs or value is None or not math.isfinite(value):
                continue
            if job_id not in found or epoch >= found[job_id][0]:
                found[job_id] = (epoch, value)
    return {job_id: value for job_id, (_, value) in found.items()}
