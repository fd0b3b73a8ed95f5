"""Figures of a summary: curves over epochs with CI bands, target trajectories, per-group bars.

matplotlib is imported here only, lazily, and used through its object API with the Agg canvas:
no pyplot state, so figures can be built in any thread and inspected before they are saved.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from runner.aggregate import stats
from runner.aggregate.load import GridData
from runner.aggregate.tables import Group, Summary

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PLOT_FILES = ("test_acc.png", "train_loss.png", "targets.png", "final_acc.png",
              "calibration.png")
MAX_TARGET_PANELS = 12  # a figure with more panels is unreadable; the best groups are shown
MOVE_TOLERANCE = 1e-9  # target values that change less than this over epochs count as fixed


@dataclass(frozen=True)
class Curve:
    """Mean over seeds per epoch, with the CI band (NaN where fewer than two seeds)."""

    label: str
    epochs: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


@dataclass(frozen=True)
class Trajectory:
    """Mean over seeds of each class's c_i and nc_i per epoch."""

    label: str
    epochs: np.ndarray
    target_class: np.ndarray  # epochs x classes
    target_nonclass: np.ndarray


def _membership(groups: Sequence[Group]) -> pl.DataFrame:
    ids = [job_id for group in groups for job_id in group.done_ids]
    index = [i for i, group in enumerate(groups) for _ in group.done_ids]
    return pl.DataFrame({"job_id": ids, "group_index": index},
                        schema={"job_id": pl.String, "group_index": pl.Int64})


def epoch_curves(data: GridData, groups: Sequence[Group], column: str) -> list[Curve]:
    """Per group: `column` averaged over its done jobs at each epoch."""
    members = _membership(groups)
    frame = data.collect(
        data.metrics.select("job_id", "epoch", column)
        .join(members.lazy(), on="job_id")
        .group_by("group_index", "epoch")
        .agg(mean=pl.col(column).mean(), std=pl.col(column).std(), n=pl.col(column).count())
        .sort("group_index", "epoch")
    )
    curves = []
    for (index,), part in frame.group_by("group_index", maintain_order=True):
        mean = part["mean"].to_numpy()
        half = stats.half_widths(part["std"].fill_null(np.nan).to_numpy(), part["n"].to_numpy())
        curves.append(Curve(groups[index].label, part["epoch"].to_numpy(), mean, mean - half,
                            mean + half))
    return curves


def target_trajectories(data: GridData, groups: Sequence[Group]) -> list[Trajectory]:
    """Groups whose strategy moves c_i or nc_i during training (fixed targets are left out)."""
    members = _membership(groups)
    rows = (data.metrics.select("job_id", "epoch", "target_class", "target_nonclass")
            .join(members.lazy(), on="job_id")
            .filter(pl.col("target_class").is_not_null() | pl.col("target_nonclass").is_not_null()))
    classes = data.collect(rows.select(pl.max_horizontal(
        pl.col("target_class").list.len().max(), pl.col("target_nonclass").list.len().max(),
    ))).item()
    if not classes:
        return []
    parts = [pl.col(column).list.get(i, null_on_oob=True).alias(f"{column}_{i}")
             for column in ("target_class", "target_nonclass") for i in range(classes)]
    frame = data.collect(rows.select("group_index", "epoch", *parts)
                         .group_by("group_index", "epoch").mean().sort("group_index", "epoch"))
    trajectories = []
    for (index,), part in frame.group_by("group_index", maintain_order=True):
        c = part.select(f"target_class_{i}" for i in range(classes)).to_numpy().astype(float)
        nc = part.select(f"target_nonclass_{i}" for i in range(classes)).to_numpy().astype(float)
        if _moves(c) or _moves(nc):
            trajectories.append(Trajectory(groups[index].label, part["epoch"].to_numpy(), c, nc))
    return trajectories


def _moves(values: np.ndarray) -> bool:
    with np.errstate(all="ignore"):
        spread = np.nanmax(values, axis=0) - np.nanmin(values, axis=0) if len(values) else []
    return bool(np.any(np.nan_to_num(spread) > MOVE_TOLERANCE))


# ---------------------------------------------------------------------------------------------
# Figures


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _integer_epochs(axes) -> None:
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def curves_figure(curves: Sequence[Curve], ylabel: str, title: str) -> Figure:
    """One line per group (mean over seeds) with its 95 % CI as a shaded band."""
    figure = _figure(9, 5)
    axes = figure.add_subplot()
    for curve, color in zip(curves, _colors(len(curves)), strict=True):
        axes.plot(curve.epochs, curve.mean, color=color, label=curve.label, linewidth=1.5)
        if np.any(np.isfinite(curve.low)):
            axes.fill_between(curve.epochs, curve.low, curve.high, color=color, alpha=0.2,
                              linewidth=0)
    axes.set(xlabel="epoch", ylabel=ylabel, title=title)
    _integer_epochs(axes)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", loc="best")
    return figure


def targets_figure(trajectories: Sequence[Trajectory]) -> Figure:
    """One panel per group: c_i (solid) and nc_i (dashed) of every class over epochs."""
    shown = trajectories[:MAX_TARGET_PANELS]
    columns = min(3, len(shown))
    rows = -(-len(shown) // columns)
    figure = _figure(max(6.5, 4.5 * columns), 3.5 * rows + 0.5)
    for panel, trajectory in enumerate(shown):
        axes = figure.add_subplot(rows, columns, panel + 1)
        colors = _colors(trajectory.target_class.shape[1])
        for i, color in enumerate(colors):
            axes.plot(trajectory.epochs, trajectory.target_class[:, i], color=color,
                      label=f"c_{i}")
            axes.plot(trajectory.epochs, trajectory.target_nonclass[:, i], color=color,
                      linestyle="--", label=f"nc_{i}")
        axes.set(xlabel="epoch", ylabel="target value", title=trajectory.label)
        axes.title.set_fontsize("small")
        _integer_epochs(axes)
        axes.grid(alpha=0.3)
    figure.suptitle("Targets per class: c_i solid, nc_i dashed (mean over seeds)",
                    fontsize="medium")
    return figure


def _points(axes, labels: Sequence[str], means: np.ndarray, lows: np.ndarray,
            highs: np.ndarray, xlabel: str) -> None:
    """One marker per group at its mean, with its CI as a horizontal error bar."""
    positions = np.arange(len(labels))
    errors = np.vstack([means - lows, highs - means])
    errors = np.where(np.isfinite(errors), errors, 0.0)
    colors = _colors(len(labels))
    for position, mean, error, color in zip(positions, means, errors.T, colors, strict=True):
        axes.errorbar(mean, position, xerr=error.reshape(2, 1), fmt="o", color=color, capsize=4)
    axes.set_yticks(positions, labels, fontsize="small")
    axes.set_ylim(len(labels) - 0.5, -0.5)  # best group on top, as in the table
    axes.set_xlabel(xlabel)
    axes.grid(axis="x", alpha=0.3)


def _column(summary: Summary, name: str) -> np.ndarray:
    return np.array([row[name] for row in summary.rows], dtype=float)


def final_acc_figure(summary: Summary) -> Figure:
    labels = [row["group"] for row in summary.rows]
    figure = _figure(9, 1.2 + 0.45 * len(labels))
    axes = figure.add_subplot()
    _points(axes, labels, _column(summary, "final_test_acc_mean"),
          _column(summary, "final_test_acc_ci_low"), _column(summary, "final_test_acc_ci_high"),
          "final test accuracy")
    figure.suptitle("Final test accuracy per group (mean, 95 % CI)")
    return figure


def calibration_figure(summary: Summary) -> Figure:
    labels = [row["group"] for row in summary.rows]
    figure = _figure(12, 1.2 + 0.45 * len(labels))
    for panel, (name, xlabel) in enumerate((("ece", "ECE (lower is better)"),
                                            ("confidence", "confidence (cosine to template)"))):
        axes = figure.add_subplot(1, 2, panel + 1)
        _points(axes, labels, _column(summary, f"{name}_mean"), _column(summary, f"{name}_ci_low"),
              _column(summary, f"{name}_ci_high"), xlabel)
        if panel:
            axes.set_yticks(np.arange(len(labels)), [""] * len(labels))
    figure.suptitle("Calibration per group (mean, 95 % CI)")
    return figure


def make_figures(data: GridData, summary: Summary) -> tuple[dict[str, Figure], list[str]]:
    """File name -> figure, and notes for the report (e.g. which plots were left out and why)."""
    groups = [g for g in summary.groups if g.done_ids]
    figures: dict[str, Figure] = {
        "test_acc.png": curves_figure(epoch_curves(data, groups, "test_acc"), "test accuracy",
                                      "Test accuracy over epochs (mean over seeds, 95 % CI)"),
        "train_loss.png": curves_figure(epoch_curves(data, groups, "train_loss"),
                                        "training loss",
                                        "Training loss over epochs (mean over seeds, 95 % CI)"),
    }
    notes = []
    trajectories = target_trajectories(data, groups)
    if trajectories:
        figures["targets.png"] = targets_figure(trajectories)
        if len(trajectories) > MAX_TARGET_PANELS:
            notes.append(f"targets.png shows the best {MAX_TARGET_PANELS} of "
                         f"{len(trajectories)} groups whose targets move")
    else:
        notes.append("no target trajectories: no strategy in this grid moved c_i or nc_i")
    figures["final_acc.png"] = final_acc_figure(summary)
    figures["calibration.png"] = calibration_figure(summary)
    return figures, notes


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
