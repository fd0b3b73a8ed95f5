"""What the app can say about a grid's metrics frame: which settings are swept, which metrics
exist and which way is better, and the values as JSON (NaN as null, lists as lists)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl

from jobs.rundir import results
from jobs.rundir.states import DONE
from runner.report.load import GridData, setting_defaults

# Per-epoch measurements a chart or table can show: the numeric columns of the metrics schema.
METRICS = tuple(name for name, kind in results.MEASUREMENTS
                if name != "epoch" and str(kind) in ("double", "int32", "int64"))
LOWER_IS_BETTER = frozenset({"train_loss", "test_loss", "val_loss", "test_nll", "val_nll", "ece",
                             "val_ece", "ts_residual", "epoch_seconds"})
DEFAULT_METRIC = "test_acc"
SEED = "seed"


class QueryError(ValueError):
    """A request for a metric or setting the grid does not have; one line naming what is."""


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise QueryError(f"unknown metric {metric[:40]!r}; valid metrics: {', '.join(METRICS)}")
    return metric


def swept_settings(data: GridData) -> list[str]:
    """Settings whose value differs between the grid's jobs, in JobSpec's order (a setting is
    known to be swept at its first difference, which comes early)."""
    settings = [job.settings for job in data.jobs.values() if job.settings]
    if not settings:
        return []
    swept = []
    for key in setting_defaults():
        first = settings[0].get(key)
        if any(other.get(key) != first for other in settings):
            swept.append(key)
    return swept


def check_settings(keys: Iterable[str], swept: Sequence[str]) -> list[str]:
    chosen = []
    for key in keys:
        if key not in swept:
            raise QueryError(f"cannot group by {key[:40]!r}: the swept settings of this grid are "
                             f"{', '.join(swept) or 'none'}")
        if key not in chosen:
            chosen.append(key)
    return chosen


def default_grouping(swept: Sequence[str]) -> list[str]:
    """As `tvo aggregate`: every swept setting except the seed."""
    return [key for key in swept if key != SEED]


def done_ids(data: GridData) -> list[str]:
    return [job.job_id for job in data.jobs.values()
            if job.state == DONE.value and job.has_metrics]


def ended_ids(data: GridData) -> list[str]:
    """Jobs with metrics rows: done, and diverged (their epochs until the loss became NaN)."""
    return [job.job_id for job in data.jobs.values() if job.has_metrics]


def id_frame(job_ids: Sequence[str]) -> pl.LazyFrame:
    return pl.DataFrame({"job_id": list(job_ids)}, schema={"job_id": pl.String}).lazy()


def present_metrics(data: GridData) -> list[str]:
    """The metrics with at least one value in the grid (tanh outputs have no ECE, ...)."""
    row = data.collect(data.metrics.select(
        pl.col(name).is_not_null().any().alias(name) for name in METRICS)).row(0)
    return [name for name, present in zip(METRICS, row, strict=True) if present]


def display(value: Any) -> str:
    """A setting's value as the CLI writes it: lists as [64, 64], numbers short."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(display(item) for item in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def plain(value: Any) -> Any:
    """A JSON-safe value: NaN and infinities as null, tuples as lists, numpy scalars as Python."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, pl.Series):
        return plain(value.to_list())
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return plain(value.tolist())
    return value
