"""What a job leaves on disk: the Parquet schema, atomic writes, status.json and spec.json.

This is the one module that writes Parquet. Every write goes to a temporary name in the same
folder, is fsynced, then renamed, so a crash never leaves a half-written file behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.spec import JobSpec

SCHEMA_VERSION = "3"  # 2: validation columns and settings (val_fraction, val_seed, ...);
# 3: reliability (the test split's calibration bins)

SPEC_FILE = "spec.json"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.parquet"
CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "log.txt"
CANCEL_FILE = "cancel"  # present: the job is asked to stop at its next epoch end

# Job states as status.json spells them; "pending" is the absence of a status file.
DONE, RUNNING, FAILED, DIVERGED, CANCELLED, PENDING = (
    "done", "running", "failed", "diverged", "cancelled", "pending")
INTERRUPTED = "interrupted"  # stopped by Ctrl-C or SIGTERM; resumes from its checkpoint
FINISHED_STATES = (DONE, DIVERGED)  # a rerun does not train these again


@dataclasses.dataclass(frozen=True)
class JobResult:
    """What a backend hands back; the run dir holds everything else."""

    job_id: str
    state: str  # done | failed | diverged | cancelled
    run_dir: str
    error: str | None = None
    epochs_done: int = 0
    test_acc: float | None = None


# Per-epoch measurements, after the job's settings. train_* of epoch >= 1 are running means over
# that epoch's training batches (in train mode); epoch 0 is one pass over the training set.
MEASUREMENTS: tuple[tuple[str, pa.DataType], ...] = (
    ("epoch", pa.int32()),
    ("learning_rate", pa.float64()),
    ("train_loss", pa.float64()),
    ("train_acc", pa.float64()),
    ("test_loss", pa.float64()),
    ("test_acc", pa.float64()),
    ("test_nll", pa.float64()),
    ("confidence", pa.float64()),
    ("margin", pa.float64()),
    ("ece", pa.float64()),
    # the test split's 10 reliability bins, each [count, mean confidence, accuracy] (empty bin:
    # [0, 0, 0]), from which ece is computed; null for outputs that are no probabilities, and
    # on rows before the final epoch unless the job may stop early (files written before
    # that have them on every row)
    ("reliability", pa.list_(pa.list_(pa.float64()))),
    ("val_loss", pa.float64()),  # the validation part (val_fraction of the training data)
    ("val_acc", pa.float64()),
    ("val_nll", pa.float64()),
    ("val_ece", pa.float64()),
    ("target_class", pa.list_(pa.float64())),
    ("target_nonclass", pa.list_(pa.float64())),
    ("target_matrix", pa.list_(pa.list_(pa.float64()))),
    ("ts_residual", pa.float64()),
    ("epoch_seconds", pa.float64()),
    ("samples_per_second", pa.float64()),
)


def _setting_type(field: dataclasses.Field) -> pa.DataType:
    kind = field.type
    if kind in ("bool", bool):
        return pa.bool_()
    if kind in ("int", int):
        return pa.int64()
    if kind in ("float", float):
        return pa.float64()
    if str(kind).startswith("tuple"):
        return pa.list_(pa.int64())
    return pa.string()


def metrics_schema() -> pa.Schema:
    """job_id, grid, every JobSpec setting, strategy_name, then the measurements of each epoch."""
    fields = [pa.field("job_id", pa.string()), pa.field("grid", pa.string())]
    fields += [pa.field(f.name, _setting_type(f)) for f in dataclasses.fields(JobSpec)]
    fields.append(pa.field("strategy_name", pa.string()))
    fields += [pa.field(name, kind) for name, kind in MEASUREMENTS]
    return pa.schema(fields, metadata={"tvo.schema": "metrics",
                                       "tvo.schema_version": SCHEMA_VERSION})


def jobs_schema() -> pa.Schema:
    """One row per job of a grid: job_id, grid and every setting (written at expansion)."""
    fields = [pa.field("job_id", pa.string()), pa.field("grid", pa.string())]
    fields += [pa.field(f.name, _setting_type(f)) for f in dataclasses.fields(JobSpec)]
    fields.append(pa.field("strategy_name", pa.string()))
    return pa.schema(fields, metadata={"tvo.schema": "jobs", "tvo.schema_version": SCHEMA_VERSION})


def spec_columns(spec: JobSpec, grid: str) -> dict[str, Any]:
    return {"job_id": spec.job_id, "grid": grid, **spec.to_dict(),
            "strategy_name": spec.strategy_name}


def metrics_table(spec: JobSpec, grid: str, rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """One row per metrics row: the job's settings repeated, then the measurements (built
    column by column: a third cheaper than from row dicts)."""
    rows = list(rows)
    fixed = spec_columns(spec, grid)
    schema = metrics_schema()
    columns = [pa.array([fixed[f.name]] * len(rows), f.type) if f.name in fixed
               else pa.array([row.get(f.name) for row in rows], f.type)
               for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def jobs_table(specs: Iterable[JobSpec], grid: str) -> pa.Table:
    return pa.Table.from_pylist([spec_columns(s, grid) for s in specs], schema=jobs_schema())


# ---------------------------------------------------------------------------------------------
# Atomic writes


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()  # what open() would give; mkstemp alone gives 0600


def _temp_beside(path: Path) -> tuple[int, str]:
    """A temp file in the target's folder (so the rename is atomic), readable like any file:
    collaborators on a shared cluster must be able to read each other's results."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, _FILE_MODE)
    return fd, tmp


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Readers see the old file or the whole new one, whenever the writer is killed. `durable`
    also fsyncs it before the rename, so that it survives an OS crash too (2-3 ms a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_partial_writes(folder: Path) -> None:
    """Delete temp files of result writes a killed process never finished (never the real files).

    Only the job's own result files: other temp files in a run dir (a runner's claim being
    created, jobs.rundir.claims) belong to live writers.
    """
    prefixes = tuple(f".{name}." for name in (SPEC_FILE, STATUS_FILE, METRICS_FILE,
                                               CHECKPOINT_FILE))
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return
    for name in names:
        if name.startswith(prefixes) and name.endswith(".tmp"):
            (folder / name).unlink(missing_ok=True)


def atomic_write_json(path: Path, value: Any, *, durable: bool = True) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode(),
                       durable=durable)


# Plain encoding, no compression, no statistics: a run's file has a few dozen rows in one row
# group, where dictionaries, compression and min/max buy nothing; written this way it is
# serialised in 40 % less time and read as fast (measured on a 21-row metrics file).
PLAIN_PARQUET = {"compression": None, "use_dictionary": False, "write_statistics": False}


def write_parquet(path: Path, table: pa.Table) -> None:
    """A small table as one Parquet file, serialised in memory and written atomically."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **PLAIN_PARQUET)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def write_query_parquet(path: Path, query: Any, metadata: Mapping[str, str]) -> None:
    """Stream a polars LazyFrame's rows into `path` (key-value `metadata` in the footer): no
    table is built in memory first. The columns keep polars' Arrow types (large_string,
    large_list), which every Parquet reader takes."""
    atomic_write_with(path, lambda tmp: query.sink_parquet(tmp, metadata=dict(metadata)))


def atomic_write_with(path: Path, write_to: Callable[[str], None]) -> None:
    """`write_to(temp path)` writes the file's content (a Parquet writer that takes a path), then
    it is fsynced and renamed onto `path`: readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp_beside(path)
    os.close(fd)
    try:
        write_to(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_metrics(run_dir: Path, spec: JobSpec, grid: str,
                  rows: Iterable[Mapping[str, Any]]) -> Path:
    path = run_dir / METRICS_FILE
    write_parquet(path, metrics_table(spec, grid, rows))
    return path


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON file's content, or None when it is missing or unreadable (e.g. mid-crash)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_status(run_dir: Path) -> dict[str, Any]:
    return read_json(run_dir / STATUS_FILE) or {"state": PENDING}


def write_status(run_dir: Path, status: Mapping[str, Any]) -> None:
    """Atomic, not fsynced: "done" is written after metrics.parquet is durable, so after an OS
    crash a status is either that or an older one (the job then trains again); 4 fsyncs a job
    were a tenth of a small job's time."""
    atomic_write_json(run_dir / STATUS_FILE, dict(status), durable=False)


def is_finished(run_dir: Path) -> bool:
    """Done exactly when metrics.parquet exists and status.json says done (or diverged)."""
    state = read_status(run_dir).get("state")
    return state in FINISHED_STATES and (run_dir / METRICS_FILE).exists()


def cancel_requested(folder: Path) -> bool:
    """Whether `folder` (a run dir, or a grid dir for the whole grid) holds a cancel request."""
    return (folder / CANCEL_FILE).exists()


def request_cancel(folder: Path, requested_by: str) -> None:
    """Leave a cancel request in `folder`; says who asked, for the one reading it later."""
    atomic_write_json(folder / CANCEL_FILE, {"requested_by": requested_by,
                                             "requested_at": time.time()})


def clear_cancel(folder: Path) -> bool:
    """Remove `folder`'s cancel request; True when there was one."""
    try:
        (folder / CANCEL_FILE).unlink()
    except FileNotFoundError:
        return False
    return True


def write_spec(run_dir: Path, spec: JobSpec, grid: str) -> None:
    """Not fsynced: written again each time the job starts."""
    atomic_write_json(run_dir / SPEC_FILE, {"job_id": spec.job_id, "grid": grid,
                                            "spec": spec.to_dict()}, durable=False)


def read_spec(run_dir: Path) -> tuple[JobSpec, str]:
    content = read_json(run_dir / SPEC_FILE)
    if content is None:
        raise FileNotFoundError(f"{run_dir / SPEC_FILE} is missing or unreadable")
    return JobSpec.from_dict(content["spec"]), content.get("grid", "")
