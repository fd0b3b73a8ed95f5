"""What the plots draw, read from the metrics: per-group curves over epochs with CI bands, the
target trajectories (c_i, nc_i) of groups whose strategy moves them, and each group's pooled
reliability bins."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from jobs import metric_catalogue
from runner.report import stats
from runner.report.load import GridData
from runner.report.model import Curve, Group, PlotData, Reliability, Trajectory
from runner.report.strategy_labels import static_strategies

MOVE_TOLERANCE = 1e-9  # target values that change less than this over epochs count as fixed


def _membership(groups: Sequence[Group]) -> pl.DataFrame:
    ids = [job_id for group in groups for job_id in group.done_ids]
    index = [i for i, group in enumerate(groups) for _ in group.done_ids]
    return pl.DataFrame({"job_id": ids, "group_index": index},
                        schema={"job_id": pl.String, "group_index": pl.Int64})


def epoch_curves(data: GridData, groups: Sequence[Group],
                 columns: Sequence[str]) -> dict[str, list[Curve]]:
    """Per column and group: the column averaged over the group's done jobs at each epoch (one
    pass over the metrics for all columns)."""
    members = _membership(groups)
    frame = data.collect(
        data.metrics.select("job_id", "epoch", *columns)
        .join(members.lazy(), on="job_id")
        .group_by("group_index", "epoch")
        .agg(*(aggregate for column in columns for aggregate in (
            pl.col(column).mean().alias(f"{column}_mean"),
            pl.col(column).std().alias(f"{column}_std"),
            pl.col(column).count().alias(f"{column}_n"))))
        .sort("group_index", "epoch")
    )
    curves: dict[str, list[Curve]] = {column: [] for column in columns}
    for (index,), part in frame.group_by("group_index", maintain_order=True):
        epochs = part["epoch"].to_numpy()
        for column in columns:
            mean = part[f"{column}_mean"].to_numpy().astype(float)
            half = stats.half_widths(part[f"{column}_std"].fill_null(np.nan).to_numpy(),
                                     part[f"{column}_n"].to_numpy())
            curves[column].append(Curve(groups[index], epochs, mean, mean - half, mean + half))
    return curves


def moving_jobs(data: GridData, groups: Sequence[Group]) -> list[str]:
    """Done jobs whose c_i or nc_i change between epochs.

    The list columns are compared whole (a hash per row) rather than element by element:
    10x cheaper at 1M rows, and most grids have no moving targets at all.
    """
    members = _membership(groups)
    frame = data.collect(
        data.metrics.select("job_id", "target_class", "target_nonclass")
        .join(members.lazy(), on="job_id")
        .group_by("job_id")
        .agg(pl.col("target_class").drop_nulls().n_unique().alias("class_values"),
             pl.col("target_nonclass").drop_nulls().n_unique().alias("nonclass_values"))
        .filter((pl.col("class_values") > 1) | (pl.col("nonclass_values") > 1))
    )
    return frame["job_id"].to_list()


def target_trajectories(data: GridData, groups: Sequence[Group]) -> list[Trajectory]:
    """Groups whose strategy moves c_i or nc_i during training (fixed targets are left out),
    with the targets trained on: from each row's target table (what the loss was given, after
    any normalisation: tvo and fixed with normalize=true divide each row by its sum), the
    class value T_ii and the mean non-class value of row i. Rows written before tables were
    recorded give the raw c_i and nc_i."""
    static = static_strategies()
    groups = [g for g in groups
              if any(job.settings.get("strategy_name") not in static for job in g.jobs)]
    moving = set(moving_jobs(data, groups)) if groups else set()
    groups = [g for g in groups if moving.intersection(g.done_ids)]
    if not groups:
        return []
    members = _membership(groups)
    rows = (data.metrics.select("job_id", "epoch", "target_class", "target_nonclass",
                                "target_matrix")
            .join(members.lazy(), on="job_id")
            .filter(pl.col("target_class").is_not_null() | pl.col("target_nonclass").is_not_null()
                    | pl.col("target_matrix").is_not_null()))
    frame = data.collect(rows.select("group_index", "epoch", "target_class", "target_nonclass",
                                     "target_matrix"))
    if frame.is_empty():
        return []
    trajectories = []
    for (index,), part in frame.sort("group_index", "epoch").group_by("group_index",
                                                                     maintain_order=True):
        values = _trained_on(part)
        if values is None:
            continue
        epochs, c, nc, from_table = values
        if _moves(c) or _moves(nc):
            trajectories.append(Trajectory(groups[index], epochs, c, nc, from_table))
    return trajectories


def _trained_on(part: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool] | None:
    """A group's rows as (epochs, class values, non-class values, from the target tables),
    averaged over its jobs per epoch."""
    tables = part["target_matrix"]
    from_table = tables.null_count() == 0
    if from_table:
        matrix = _nested_array(tables)  # rows x K x K
        count = matrix.shape[-1]
        c = np.diagonal(matrix, axis1=1, axis2=2)
        nc = (matrix.sum(axis=2) - c) / max(count - 1, 1)
    else:
        c = _padded(part["target_class"].to_list())
        nc = _padded(part["target_nonclass"].to_list())
        if c.size == 0 and nc.size == 0:
            return None
        width = max(c.shape[1], nc.shape[1])
        c, nc = _widen(c, len(part), width), _widen(nc, len(part), width)
    epochs = part["epoch"].to_numpy()
    unique, inverse = np.unique(epochs, return_inverse=True)
    counts = np.bincount(inverse).astype(float)[:, None]

    def mean(values: np.ndarray) -> np.ndarray:
        totals = np.zeros((len(unique), values.shape[1]))
        np.add.at(totals, inverse, np.nan_to_num(values))
        return totals / counts

    return unique, mean(c), mean(nc), from_table


def _padded(lists: list[list[float] | None]) -> np.ndarray:
    width = max((len(values) for values in lists if values), default=0)
    return np.array([(values or []) + [np.nan] * (width - len(values or [])) for values in lists],
                    dtype=float).reshape(len(lists), width)


def _widen(values: np.ndarray, rows: int, width: int) -> np.ndarray:
    if values.shape[1] == width:
        return values
    return np.full((rows, width), np.nan) if values.size == 0 else np.pad(
        values, ((0, 0), (0, width - values.shape[1])), constant_values=np.nan)


def reliability_bins(data: GridData, groups: Sequence[Group]) -> list[Reliability]:
    """Per group, the reliability bins of its done jobs' final epoch pooled over the jobs;
    groups without bins (outputs that are no probabilities, or metrics written before the bins
    were recorded: the column then reads as null) are left out.

    The final epochs are found first (a scalar column), and the bins read with an epoch filter.
    Jobs write bins on the row of their final epoch only (null elsewhere: cheap to read, 0.05 s
    at 1M rows); files from before that have them on every row, which the reader decodes whole
    even when filtered (0.6-0.8 s at 1M rows).
    """
    members = _membership(groups)
    finals = data.collect(data.metrics.select("job_id", "epoch").join(members.lazy(), on="job_id")
                          .group_by("job_id").agg(pl.col("epoch").max(),
                                                  pl.col("group_index").first()))
    if finals.is_empty():
        return []
    frame = data.collect(
        data.metrics.filter(pl.col("epoch") >= finals["epoch"].min())
        .select("job_id", "epoch", "reliability")
        .join(finals.lazy(), on=["job_id", "epoch"])
        .drop_nulls("reliability")
        .sort("group_index", "job_id")
    )
    if frame.is_empty():
        return []
    bins = _nested_array(frame["reliability"])  # jobs x bins x 3
    index = frame["group_index"].to_numpy()
    pooled = []
    for group_index in np.unique(index):
        chosen = bins[index == group_index]
        count = chosen[..., 0].sum(axis=0)
        with np.errstate(all="ignore"):  # an empty bin: 0 / 0, NaN, not drawn
            confidence = (chosen[..., 0] * chosen[..., 1]).sum(axis=0) / count
            accuracy = (chosen[..., 0] * chosen[..., 2]).sum(axis=0) / count
        pooled.append(Reliability(groups[group_index], count, confidence, accuracy))
    return pooled


def _nested_array(column: pl.Series) -> np.ndarray:
    """A column of equally shaped lists of lists (reliability bins: bins x 3 a job; target
    tables: K x K a row) as one rows x a x b array, from Arrow's flat values (100,000 jobs:
    0.05 s, not 3 s through Python lists); any other through Python lists, as numpy takes them.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = column.to_arrow()
    if isinstance(rows, pa.ChunkedArray):
        rows = rows.combine_chunks()
    if isinstance(rows, pa.LargeListArray | pa.ListArray) and len(rows) and not rows.null_count:
        inner = rows.flatten()
        outer_lengths = pc.unique(pc.list_value_length(rows)).to_pylist()
        if isinstance(inner, pa.LargeListArray | pa.ListArray) and not inner.null_count:
            inner_lengths = pc.unique(pc.list_value_length(inner)).to_pylist()
            if len(outer_lengths) == 1 and len(inner_lengths) == 1:
                values = inner.flatten().to_numpy(zero_copy_only=False).astype(float)
                return values.reshape(len(rows), outer_lengths[0], inner_lengths[0])
    return np.array(column.to_list(), dtype=float)


def read_curves(data: GridData, groups: Sequence[Group]) -> dict[str, list[Curve]]:
    """The curves of every metric declared with a figure over epochs (jobs.metric_catalogue),
    for the groups with done jobs."""
    columns = tuple(metric_catalogue.curves())
    drawn = [g for g in groups if g.done_ids]
    if not drawn:
        return {column: [] for column in columns}
    return epoch_curves(data, drawn, columns)


def read_plot_data(data: GridData, groups: Sequence[Group],
                   curves: dict[str, list[Curve]] | None = None) -> PlotData:
    """What the plots draw; `curves`: read_curves of these groups, if read already."""
    drawn = [g for g in groups if g.done_ids]
    curves = read_curves(data, groups) if curves is None else curves
    return PlotData(drawn, curves, target_trajectories(data, drawn) if drawn else [],
                    reliability_bins(data, drawn) if drawn else [])


def _moves(values: np.ndarray) -> bool:
    with np.errstate(all="ignore"):
        spread = np.nanmax(values, axis=0) - np.nanmin(values, axis=0) if len(values) else []
    return bool(np.any(np.nan_to_num(spread) > MOVE_TOLERANCE))
