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
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from jobs import metric_catalogue
from jobs.rundir.disk import naming
from jobs.rundir.footer import footer_value
from jobs.rundir.states import Outcome
from jobs.spec import JobSpec

SCHEMA_VERSION = "3"  # 2: validation columns and settings (val_fraction, val_seed, ...);
# 3: reliability (the test split's calibration bins)



@dataclasses.dataclass(frozen=True)
class JobResult:
    """What a backend hands back for one job; the grid dir holds everything else."""

    job_id: str
    state: str  # done | failed | diverged | cancelled
    error: str | None = None
    epochs_done: int = 0
    test_acc: float | None = None
    log: str = ""  # the log file of the process that trained it


def measurements() -> list[tuple[str, pa.DataType]]:
    """Per-epoch measurements, after the job's settings: the metrics jobs.metric_catalogue
    declares, in its order (train_* of epoch >= 1 are running means over that epoch's training
    batches, in train mode; epoch 0 is one pass over the training set)."""
    return [(metric.name, metric_catalogue.arrow_type(metric.type))
            for metric in metric_catalogue.METRICS]


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
    fields += [pa.field(name, kind) for name, kind in measurements()]
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
    """One job's rows: its settings repeated, then the measurements."""
    return stack_table([(spec, list(rows))], grid)


def stack_table(members: Sequence[tuple[JobSpec, Sequence[Mapping[str, Any]]]],
                grid: str) -> pa.Table:
    """Every member's rows in one table (a stack's results file): each member's settings
    repeated on its rows, then the measurements, built column by column (a third cheaper
    than from row dicts)."""
    schema = metrics_schema()
    settings = [(spec_columns(spec, grid), len(rows)) for spec, rows in members]
    measured = set(metric_catalogue.names())
    columns = []
    for f in schema:
        if f.name in measured:
            values = [row.get(f.name) for _, rows in members for row in rows]
        else:
            values = [value for fixed, count in settings for value in [fixed[f.name]] * count]
        columns.append(pa.array(values, f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def jobs_table(specs: Iterable[JobSpec], grid: str) -> pa.Table:
    """One row per job: job_id, grid and every setting (built column by column: 100,000 jobs
    in about a second)."""
    specs = list(specs)
    values: dict[str, list[Any]] = {"job_id": [spec.job_id for spec in specs],
                                    "grid": [grid] * len(specs),
                                    "strategy_name": [spec.strategy_name for spec in specs]}
    for f in dataclasses.fields(JobSpec):
        column = [getattr(spec, f.name) for spec in specs]
        values[f.name] = [list(v) if isinstance(v, tuple) else v for v in column]
    schema = jobs_schema()
    return pa.Table.from_arrays([pa.array(values[f.name], f.type) for f in schema],
                                schema=schema)


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
    with naming(path):
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


def remove_partial_writes(folder: Path, older_than_s: float = 3600.0) -> int:
    """Delete temp files of atomic writes a killed process never finished, in `folder` (never
    the real files): those not touched for `older_than_s`, so a live writer's temp file stays.
    Returns how many went."""
    removed = 0
    cutoff = time.time() - older_than_s
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if entry.name.startswith(".") and entry.name.endswith(".tmp"):
            try:
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
    return removed


def atomic_write_json(path: Path, value: Any, *, durable: bool = True) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode(),
                       durable=durable)


# Plain encoding, no compression, no statistics: a run's file has a few dozen rows in one row
# group, where dictionaries, compression and min/max buy nothing; written this way it is
# serialised in 40 % less time and read as fast (measured on a 21-row metrics file).
PLAIN_PARQUET = {"compression": None, "use_dictionary": False, "write_statistics": False}


def write_parquet(path: Path, table: pa.Table, *, compressed: bool = False) -> None:
    """A table as one Parquet file, serialised in memory and written atomically: plain for a
    few dozen rows, `compressed` (dictionaries, zstd) for thousands (jobs.parquet of a large
    grid: 37 MB plain at 100,000 jobs, 1.4 MB compressed)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **(STACK_PARQUET if compressed else PLAIN_PARQUET))
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def write_query_parquet(path: Path, query: Any, metadata: Mapping[str, str]) -> None:
    """Stream a polars LazyFrame's rows into `path` (key-value `metadata` in the footer): no
    table is built in memory first. The columns keep polars' Arrow types (large_string,
    large_list), which every Parquet reader takes."""
    atomic_write_with(path, lambda tmp: query.sink_parquet(tmp, metadata=dict(metadata)))


def atomic_write_with(path: Path, write_to: Callable[[str], None]) -> None:
    """`write_to(temp path)` writes the file's content (a Parquet writer that takes a path), then
    it is fsynced and renamed onto `path`: readers see the old file or the whole new one."""
    with naming(path):
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


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON file's content, or None when it is missing or unreadable (e.g. mid-crash)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


# ---------------------------------------------------------------------------------------------
# A stack's results file: written once, when the stack ends; its rename commits its members

STACK_KEY = b"tvo.stack"  # key-value metadata: the stack, its process, each member's outcome
# A stack's file holds dozens to thousands of rows: dictionaries (the repeated settings) and
# compression pay here, unlike in the per-job files of the layout before results by the stack.
STACK_PARQUET = {"compression": "zstd", "use_dictionary": True, "write_statistics": False}


@dataclasses.dataclass(frozen=True)
class Commit:
    """What a committed results file says of its stack (its metadata; the rows stay unread).
    `outcomes` holds each member's Outcome as JSON (Outcome.to_json): a reader of 100,000 jobs
    parses only those it asks about (`outcome`)."""

    stack: str
    committed_at: float
    outcomes: dict[str, dict[str, Any]]
    host: str = ""
    pid: int = 0
    log: str = ""

    def outcome(self, job_id: str) -> Outcome:
        return Outcome.from_json(self.outcomes[job_id])

    def finished(self) -> list[str]:
        """The members that ended done or diverged: whose rows this file holds."""
        return [job_id for job_id, value in self.outcomes.items()
                if value["state"] in FINISHED_VALUES]


FINISHED_VALUES = ("done", "diverged")  # jobs.rundir.states.FINISHED, as files spell them


def write_stack_results(path: Path, table: pa.Table, commit: Commit) -> None:
    """The stack's rows and its members' outcomes as one Parquet file, fsynced and renamed into
    place: the rename is the moment its members are done (or failed, cancelled, diverged)."""
    meta = {"stack": commit.stack, "committed_at": commit.committed_at, "host": commit.host,
            "pid": commit.pid, "log": commit.log, "outcomes": commit.outcomes}
    schema_meta = dict(table.schema.metadata or {})
    schema_meta[STACK_KEY] = json.dumps(meta, separators=(",", ":")).encode()
    table = table.replace_schema_metadata(schema_meta)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **STACK_PARQUET)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def read_commit(path: Path) -> Commit | None:
    """The commit a results file records (its footer only), or None when it is not one (a file
    tvo did not write, or one cut short)."""
    try:  # the footer's key-value metadata only: its bytes, else pyarrow's reading of it
        raw = footer_value(path, STACK_KEY)
        try:
            meta = json.loads(raw) if raw is not None else None
        except ValueError:
            meta = None
        if not isinstance(meta, dict):
            meta = json.loads((pq.read_metadata(path).metadata or {})[STACK_KEY])
        outcomes = dict(meta["outcomes"])
        if not all(isinstance(value, dict) and "state" in value for value in outcomes.values()):
            return None
    except (OSError, KeyError, ValueError, TypeError, pa.ArrowException):
        return None
    return Commit(str(meta["stack"]), float(meta["committed_at"]), outcomes,
                  str(meta.get("host", "")), int(meta.get("pid", 0)), str(meta.get("log", "")))
