"""The summary's figures (matplotlib): small multiples that stay readable from 4 to 40 groups.

One panel per facet (a combination of the swept settings other than the compared one, e.g.
dataset and lr, sorted by value); the compared setting (the strategy) is a style (styles) that
means the same in every panel and figure; legends sit below the panels, outside the axes, in as
many columns as fit. Panels that compare values share their axes, and every panel keeps its tick
labels. Labels are the short ones of `labels`; a group drawn for several identical ones is named
`a = b`. Layout helpers are figure_layout's; the calibration, tuning and profile figures have
modules of their own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from runner.report.figure_layout import (
    AXIS_MARGIN,
    CHAR_WIDTH,
    PANEL_HEIGHT,
    PANEL_WIDTH,
    ROW_HEIGHT,
    axis_labels,
    columns_for,
    facet_of,
    figure,
    figure_title,
    hue_of,
    legend,
    legend_height,
    line_handles,
    panels,
    present_hues,
    style_axes,
    wrap,
)
from runner.report.labels import Labels
from runner.report.model import Curve, Summary, Trajectory
from runner.report.styles import Style, class_colors, styles

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

CAP = 0.2  # half-height of a CI bar's caps, in dot rows
MAX_TARGET_PANELS = 12  # a figure with more panels is unreadable; the best groups are shown
DOT_PANEL_WIDTH = 2.6  # inches of a dot panel's plot area


def curves_figure(curves: Sequence[Curve], labels: Labels, ylabel: str, title: str) -> Figure:
    """Per facet, one line per group (mean over seeds) with its 95 % CI as a shaded band."""
    facets = [f for f in labels.facet_order if any(facet_of(labels, c.group) == f
                                                     for c in curves)]
    hues = present_hues(labels, [c.group for c in curves])
    look = styles(labels.hue_order)
    columns = columns_for(len(facets))
    width = max(6.5, PANEL_WIDTH * columns)
    names = [labels.legend_name(h) for h in hues]
    height = PANEL_HEIGHT * math.ceil(len(facets) / columns) + 0.4 + legend_height(names, width)
    made = figure(width, height)
    # shared axes: the facets compare at a glance
    for axes, facet in zip(panels(made, len(facets), sharex=True, sharey=True), facets,
                           strict=True):
        for curve in curves:
            if facet_of(labels, curve.group) != facet:
                continue
            style = look[hue_of(labels, curve.group)]
            axes.plot(curve.epochs, curve.mean, color=style.color, linestyle=style.dash,
                      linewidth=1.5)
            if np.any(np.isfinite(curve.low)):
                axes.fill_between(curve.epochs, curve.low, curve.high, color=style.color,
                                  alpha=0.15, linewidth=0)
        style_axes(axes, facet, width / columns - AXIS_MARGIN)
        axis_labels(axes, "epoch", ylabel)
    figure_title(made, title)
    legend(made, line_handles(hues, look), names, labels.hue or "")
    return made


def targets_figure(trajectories: Sequence[Trajectory]) -> Figure:
    """One panel per group: the class value (solid) and non-class value (dashed) of every class
    over epochs, as trained on; classes along viridis."""
    from matplotlib.lines import Line2D

    shown = trajectories[:MAX_TARGET_PANELS]
    classes = shown[0].target_class.shape[1]
    colors = class_colors(classes)
    names = [f"class {i}" for i in range(classes)] + ["class value (T_ii)",
                                                      "non-class value (mean T_ij)"]
    columns = columns_for(len(shown))
    width = max(6.5, PANEL_WIDTH * columns)
    title_width = width / columns - AXIS_MARGIN
    title_lines = max(wrap(_target_title(t), title_width).count("\n") + 1 for t in shown)
    height = ((PANEL_HEIGHT + 0.15 * title_lines) * math.ceil(len(shown) / columns) + 0.4
              + legend_height(names, width))
    made = figure(width, height)
    for axes, trajectory in zip(panels(made, len(shown), sharex=True, sharey=True), shown,
                                strict=True):
        for i, color in enumerate(colors):
            axes.plot(trajectory.epochs, trajectory.target_class[:, i], color=color)
            axes.plot(trajectory.epochs, trajectory.target_nonclass[:, i], color=color,
                      linestyle="--")
        style_axes(axes, _target_title(trajectory), title_width)
        axis_labels(axes, "epoch", "target value")
    handles = [Line2D([], [], color=color) for color in colors]
    handles += [Line2D([], [], color="black"), Line2D([], [], color="black", linestyle="--")]
    figure_title(made, "Targets trained on, per class (mean over seeds; normalised where the "
                  "strategy normalises)")
    legend(made, handles, names, "")
    return made


def _target_title(trajectory: Trajectory) -> str:
    return trajectory.group.label + ("" if trajectory.trained_on else " (raw c_i, nc_i)")


def _row_positions(hues: Sequence[str]) -> tuple[dict[str, float], float]:
    """Each name's y position, a row per text line (wrapped names take more), and the total."""
    positions, used = {}, 0.0
    for hue in hues:
        lines = hue.count("\n") + 1
        positions[hue] = used + lines / 2
        used += lines
    return positions, used


def _dots(axes: Axes, rows: Sequence[dict[str, Any]], measure: str, hues: Sequence[str],
          look: dict[str, Style], bounds: tuple[float, float] | None) -> None:
    """One marker per group at its mean, its CI as a horizontal bar with caps; one row per hue.
    `bounds`: the measure's range (accuracies: 0 to 1); a CI is cut where it leaves it.

    Bars and caps are one collection, markers one scatter per marker shape: errorbar() makes
    several artists per group, which at 40 groups and a few facets doubles the drawing time.
    """
    from matplotlib.collections import LineCollection

    position, total = _row_positions(hues)
    segments, colors = [], []
    markers: dict[str, tuple[list[float], list[float], list[str]]] = {}
    for row in rows:
        mean = row[f"{measure}_mean"]
        if math.isnan(mean):
            continue
        y, style = position[row["_hue"]], look[row["_hue"]]
        low, high = row[f"{measure}_ci_low"], row[f"{measure}_ci_high"]
        if math.isfinite(low):
            segments.append([(low, y), (high, y)])
            if bounds is not None:
                low, high = max(low, bounds[0]), min(high, bounds[1])
                segments[-1] = [(low, y), (high, y)]
            for end, inside in ((low, bounds is None or low > bounds[0]),
                                (high, bounds is None or high < bounds[1])):
                if inside:  # a cut end has no cap: the interval goes on beyond it
                    segments.append([(end, y - CAP), (end, y + CAP)])
            colors += [style.color] * (len(segments) - len(colors))
        xs, ys, cs = markers.setdefault(style.marker, ([], [], []))
        xs.append(mean)
        ys.append(y)
        cs.append(style.color)
    if segments:
        axes.add_collection(LineCollection(segments, colors=colors, linewidths=1.5))
    for marker, (xs, ys, cs) in markers.items():
        axes.scatter(xs, ys, c=cs, marker=marker, s=20, zorder=3)
    axes.set_yticks([position[h] for h in hues], hues)
    axes.set_ylim(total, 0)
    axes.autoscale_view(scaley=False)
    axes.grid(axis="x", alpha=0.3)


def dots_figure(summary: Summary, measure: str, xlabel: str, title: str, *,
                bounds: tuple[float, float] | None = (0.0, 1.0)) -> Figure:
    """Per facet, a panel in a grid of panels with a shared x axis: every group's mean and 95 %
    CI, the groups as rows named by their compared value, in the same order in every panel
    (their names on the first column's panels)."""
    labels = summary.labels
    rows = [{**summary.rows[i], "_hue": hue_of(labels, summary.groups[i]),
             "_facet": facet_of(labels, summary.groups[i])} for i in summary.drawn()]
    hues = [h for h in labels.hue_order if any(r["_hue"] == h for r in rows)]
    facets = [f for f in labels.facet_order if any(r["_facet"] == f for r in rows)]
    look = styles(labels.hue_order)
    names = {hue: labels.legend_name(hue) for hue in hues}
    name_width = min(3.0, max(len(n) for n in names.values()) * CHAR_WIDTH + 0.2)
    wrapped = {hue: wrap(name, name_width) for hue, name in names.items()}
    look = {wrapped[h]: look[h] for h in hues}
    for row in rows:
        row["_hue"] = wrapped[row["_hue"]]
    shown = [wrapped[h] for h in hues]
    columns = columns_for(len(facets))
    width = name_width + DOT_PANEL_WIDTH * columns + 0.4
    panel_height = 0.7 + ROW_HEIGHT * sum(h.count("\n") + 1 for h in shown)
    made = figure(max(4.5, width), panel_height * math.ceil(len(facets) / columns) + 0.6)
    for axes, facet in zip(panels(made, len(facets), columns, sharex=True, sharey=True), facets,
                           strict=True):
        _dots(axes, [r for r in rows if r["_facet"] == facet], measure, shown, look, bounds)
        style_axes(axes, facet, DOT_PANEL_WIDTH, epochs=False)
        axis_labels(axes, xlabel, "")
        if not axes.get_subplotspec().is_first_col():
            axes.tick_params(labelleft=False)  # the same names, in the same rows, at the left
    if bounds is not None:
        low, high = made.axes[0].get_xlim()
        made.axes[0].set_xlim(max(low, bounds[0] - 0.005), min(high, bounds[1] + 0.005))
    figure_title(made, title)
    return made
