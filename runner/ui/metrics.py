"""What the app can say about a grid's metrics frame: which settings are swept, which metrics
exist and which way is better, and the values as JSON (NaN as null, lists as lists)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl

from jobs import metric_catalogue
from jobs.rundir.states import DONE
from runner.report.load import GridData, setting_defaults

DEFAULT_METRIC = "test_acc"
SEED = "seed"


class QueryError(ValueError):
    """A request for a metric or setting the grid does not have; one line naming what is."""


def chart_metrics() -> tuple[str, ...]:
    """Per-epoch measurements a chart or table can show: the numeric columns of the metrics
    schema, as jobs.metric_catalogue declares them."""
    return tuple(metric.name for metric in metric_catalogue.METRICS
                 if metric.kind != metric_catalogue.INDEX and metric.is_scalar)


def metric_descriptions() -> dict[str, str]:
    """Each chartable metric's one-line description, as declared (the metric menus' tooltips)."""
    return {name: metric_catalogue.metric(name).description for name in chart_metrics()}


def higher_is_better(metric: str) -> bool:
    """As the metric declares it; one declared neither way (the learning rate) counts as
    higher."""
    return not metric_catalogue.lower_is_better(metric)


def check_metric(metric: str) -> str:
    known = chart_metrics()
    if metric not in known:
        raise QueryError(f"unknown metric {metric[:40]!r}; valid metrics: {', '.join(known)}")
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
    known = chart_metrics()
    row = data.collect(data.metrics.select(
        pl.col(name).is_not_null().any().alias(name) for name in known)).row(0)
    return [name for name, present in zip(known, row, strict=True) if present]


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
