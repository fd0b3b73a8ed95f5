"""Curves and parallel coordinates as the server sends them: aggregated over jobs, never one
series per job unless asked (and then capped), so a grid of 100,000 jobs stays a few kB.

Curves: per group of done jobs (grouped by any swept settings) and epoch, the mean of a metric
with its 95 % t confidence band (runner.report.stats.half_widths, as `tvo aggregate` draws them).
Parallel coordinates: one line per configuration (every swept setting but the seed), its
metric at the final epoch averaged over seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from runner.report.labels import Labels
from runner.report.load import GridData
from runner.report.stats import half_widths
from runner.report.strategy_labels import strategy_labels
from runner.ui.metrics import (
    SEED,
    display,
    done_ids,
    higher_is_better,
    id_frame,
    plain,
)

MAX_SERIES = 200  # per-job lines when asked for: more would bury the bands and the browser
MAX_LINES = 2_000  # parallel coordinates: the best configurations beyond this are dropped


def curves(data: GridData, metric: str, by: Sequence[str], seeds: bool = False,
           max_series: int = MAX_SERIES) -> dict[str, Any]:
    """Mean and 95 % CI per group and epoch; with `seeds`, up to `max_series` jobs' own lines."""
    done = id_frame(done_ids(data))
    rows = (data.metrics.select("job_id", "epoch", metric, *by)
            .join(done, on="job_id", how="semi")
            .filter(pl.col(metric).is_finite()))
    frame = data.collect(rows.group_by(*by, "epoch").agg(
        pl.col(metric).mean().alias("mean"), pl.col(metric).std().alias("std"),
        pl.len().alias("n"), pl.col("job_id").n_unique().alias("jobs")).sort(*by, "epoch"))
    groups = []
    parts = list(frame.group_by(*by, maintain_order=True)) if by else [((), frame)]
    order = grid_order(data, by)
    parts.sort(key=lambda part: order.get(_hashable(part[0]), len(order)))
    labels = Labels.of(by, [tuple(key) for key, _ in parts])
    for key, part in parts:
        values = list(key)
        mean = part["mean"].to_numpy().astype(float)
        half = half_widths(part["std"].fill_null(np.nan).to_numpy(), part["n"].to_numpy())
        groups.append({"label": labels.group(values), "hue": labels.hue_label(values),
                       "facet": labels.facet_label(values),
                       "key": dict(zip(by, plain(values), strict=True)),
                       "jobs": int(part["jobs"].max()), "epochs": plain(part["epoch"]),
                       "mean": plain(mean), "low": plain(mean - half),
                       "high": plain(mean + half)})
    answer: dict[str, Any] = {"metric": metric, "by": list(by), "groups": groups,
                              "higher_is_better": higher_is_better(metric)}
    if seeds:
        answer.update(_series(data, rows, metric, by, labels, max_series))
    return answer


def grid_order(data: GridData, by: Sequence[str]) -> dict[tuple[Any, ...], int]:
    """Each group's place in the grid's own order (its jobs as expanded: the baseline method
    first, as the report draws them), by its values of `by`."""
    order: dict[tuple[Any, ...], int] = {}
    for job in data.jobs.values():
        key = _hashable(tuple(job.settings.get(name) for name in by))
        order.setdefault(key, len(order))
    return order


def _hashable(values: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(_hashable(v) if isinstance(v, list | tuple) else v for v in values)


def _series(data: GridData, rows: pl.LazyFrame, metric: str, by: Sequence[str],
            labels: Labels, max_series: int) -> dict[str, Any]:
    """Done jobs' own curves, at most `max_series`, taken in turn from each group (so every group
    shows some), chosen from the jobs' settings and read in one pass."""
    members: dict[tuple[Any, ...], list[str]] = {}
    for job_id in done_ids(data):
        settings = data.jobs[job_id].settings
        members.setdefault(_hashable(tuple(settings.get(key) for key in by)), []).append(job_id)
    total = sum(len(ids) for ids in members.values())
    chosen = [ids[turn] for turn in range(max(map(len, members.values()), default=0))
              for ids in members.values() if turn < len(ids)][:max_series]
    frame = data.collect(rows.join(id_frame(chosen), on="job_id", how="semi")
                         .sort("job_id", "epoch"))
    series = []
    for (job_id,), part in frame.group_by("job_id", maintain_order=True):
        values = [part[key][0] for key in by]
        series.append({"job_id": job_id, "group": labels.group(values),
                       "epochs": plain(part["epoch"]), "values": plain(part[metric])})
    order = {job_id: index for index, job_id in enumerate(chosen)}
    series.sort(key=lambda item: order[item["job_id"]])
    return {"series": series, "series_total": total, "series_capped": total > max_series}


def parallel(data: GridData, metric: str, swept: Sequence[str],
             max_lines: int = MAX_LINES) -> dict[str, Any]:
    """One line per configuration: its swept settings and its final `metric`, mean over seeds."""
    keys = [key for key in swept if key != SEED]
    final = (data.metrics.select("job_id", "epoch", metric, *keys)
             .join(id_frame(done_ids(data)), on="job_id", how="semi")
             .filter(pl.col(metric).is_finite())
             .sort("epoch").group_by("job_id").agg(pl.col(metric).last(),
                                                   *(pl.col(key).first() for key in keys)))
    if keys:
        final = final.group_by(*keys).agg(pl.col(metric).mean(), pl.len().alias("seeds"))
    else:
        final = final.select(pl.col(metric).mean(), pl.len().alias("seeds"))
    frame = data.collect(final.sort(metric, descending=higher_is_better(metric),
                                    nulls_last=True))
    total = frame.height
    frame = frame.head(max_lines)
    dimensions = [_dimension(key, frame[key].to_list()) for key in keys]
    values = plain(frame[metric])
    dimensions.append({"label": f"final {metric}", "values": values})
    return {"metric": metric, "dimensions": dimensions, "color": values,
            "seeds": plain(frame["seeds"]), "lines": frame.height, "total": total,
            "capped": total > max_lines, "higher_is_better": higher_is_better(metric)}


def _dimension(key: str, values: list[Any]) -> dict[str, Any]:
    """A parcoords axis: numbers as they are, anything else as categories in sorted order."""
    if all(isinstance(value, int | float) and not isinstance(value, bool) for value in values):
        return {"label": key, "values": plain(values)}
    if key == "strategy":  # as the report labels them: what tells the grid's strategies apart
        short = strategy_labels([str(value) for value in values])
        shown = [short.get(str(value), str(value)) for value in values]
    else:
        shown = [display(value) for value in values]
    categories = sorted(set(shown))
    index = {name: position for position, name in enumerate(categories)}
    return {"label": key, "values": [index[name] for name in shown],
            "tickvals": list(range(len(categories))), "ticktext": categories}
