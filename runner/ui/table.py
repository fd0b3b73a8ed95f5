"""The final-metrics table: per job or per group, a metric's last, best, min and max value, built
once per grid version and then filtered, sorted and paged on the server (a page is 50 rows of a
100,000-row frame, so the browser never holds the whole table)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from jobs.rundir.states import DONE
from runner.report.load import GridData
from runner.report.stats import half_widths
from runner.report.strategy_labels import strategy_labels
from runner.ui.metrics import QueryError, ended_ids, higher_is_better, id_frame, plain

MAX_PAGE = 500
_COMPARISON = re.compile(r"\s*(<=|>=|<|>|=)\s*(-?[0-9.]+(?:e-?[0-9]+)?)\s*$", re.IGNORECASE)


def per_job(data: GridData, metric: str, swept: Sequence[str]) -> pl.DataFrame:
    """One row per job with metrics (done or diverged): its swept settings, state, epochs, and
    the metric's last value, best value (and its epoch), min and max over evaluated epochs."""
    finite = pl.col(metric).is_finite()
    best = pl.col(metric).filter(finite).max() if higher_is_better(metric) else (
        pl.col(metric).filter(finite).min())
    frame = data.collect(
        data.metrics.select("job_id", "epoch", metric, *swept)
        .join(id_frame(ended_ids(data)), on="job_id", how="semi")
        .sort("epoch")
        .group_by("job_id")
        .agg(*(pl.col(key).first() for key in swept),
             pl.col("epoch").max().alias("epochs"),
             pl.col(metric).filter(pl.col(metric).is_not_null()).last().alias("last"),
             best.alias("best"),
             pl.col("epoch").filter(pl.col(metric) == best).first().alias("best_epoch"),
             pl.col(metric).filter(finite).min().alias("min"),
             pl.col(metric).filter(finite).max().alias("max")))
    states = pl.DataFrame({"job_id": list(data.jobs),
                           "state": [job.state for job in data.jobs.values()]})
    frame = frame.join(states, on="job_id", how="left")
    return frame.select("job_id", *swept, "state", "epochs", "last", "best", "best_epoch", "min",
                        "max").sort("job_id")


def per_group(jobs: pl.DataFrame, by: Sequence[str]) -> pl.DataFrame:
    """One row per group of done jobs: how many, the mean last and best value with the last
    value's 95 % CI half-width, the lowest min and the highest max."""
    done = jobs.filter(pl.col("state") == DONE.value)
    if not by:  # one group of every job
        done, by = done.with_columns(pl.lit("all jobs").alias("group")), ["group"]
    frame = done.group_by(*by).agg(
        pl.len().alias("jobs"), pl.col("last").mean().alias("last_mean"),
        pl.col("last").std().alias("last_std"), pl.col("best").mean().alias("best_mean"),
        pl.col("min").min().alias("min"), pl.col("max").max().alias("max"))
    half = half_widths(frame["last_std"].fill_null(np.nan).to_numpy(), frame["jobs"].to_numpy())
    return (frame.with_columns(pl.Series("last_ci", half).fill_nan(None))
            .select(*by, "jobs", "last_mean", "last_ci", "best_mean", "min", "max").sort(*by))


def page(frame: pl.DataFrame, *, sort: str | None, descending: bool,
         filters: Mapping[str, str], offset: int, limit: int) -> dict[str, Any]:
    """Rows `offset` to `offset + limit` of `frame` filtered and sorted, with the total count.

    A filter is a substring of the cell as text (case-insensitive), or, for a number, a
    comparison: `>0.9`, `<=0.5`, `=3`.
    """
    limit = max(1, min(limit, MAX_PAGE))
    offset = max(0, offset)
    labels = _strategy_labels(frame)
    for column, text in filters.items():
        if not text.strip():
            continue
        if column not in frame.columns:
            raise QueryError(f"cannot filter on {column[:40]!r}; columns: "
                             f"{', '.join(frame.columns)}")
        frame = frame.filter(_condition(frame, column, text))
    if sort:
        if sort not in frame.columns:
            raise QueryError(f"cannot sort by {sort[:40]!r}; columns: {', '.join(frame.columns)}")
        frame = frame.sort(sort, descending=descending, nulls_last=True, maintain_order=True)
    rows = frame.slice(offset, limit)
    shown = {"strategy": {value: labels[value] for value in rows["strategy"]}} if labels else {}
    return {"columns": frame.columns, "total": frame.height, "offset": offset, "limit": limit,
            "rows": [plain(list(row)) for row in rows.iter_rows()], "labels": shown}


def _strategy_labels(frame: pl.DataFrame) -> dict[str, str]:
    """Each strategy's label as the report shows it (what tells the grid's strategies apart);
    the table's cells show it, the full canonical value is the cell's title and its filter."""
    if "strategy" not in frame.columns:
        return {}
    return strategy_labels(frame["strategy"].unique().sort().to_list())


def _condition(frame: pl.DataFrame, column: str, text: str) -> pl.Expr:
    dtype = frame.schema[column]
    comparison = _COMPARISON.match(text)
    if dtype.is_numeric() and comparison:
        operator, number = comparison.groups()
        try:
            value = float(number)
        except ValueError:
            raise QueryError(f"filter {text[:40]!r} on {column}: not a number") from None
        col = pl.col(column)
        return {"<": col < value, "<=": col <= value, ">": col > value, ">=": col >= value,
                "=": col == value}[operator]
    needle = text.strip().lower()
    if isinstance(dtype, pl.List):
        as_text = pl.lit("[") + pl.col(column).cast(pl.List(pl.String)).list.join(", ") + "]"
    else:
        as_text = pl.col(column).cast(pl.String)
    return as_text.str.to_lowercase().str.contains(needle, literal=True).fill_null(False)
