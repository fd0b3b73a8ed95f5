"""Reliability diagrams: per facet, each group's accuracy against its confidence in the ECE bins
of the final epoch, with the diagonal of perfect calibration, and each line's ECE written beside
it: at the right of the panel, level with the line's last point and joined to it by a leader in
the line's colour and dash, so no value is matched to its line by colour alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from runner.report.figure_layout import (
    AXIS_MARGIN,
    CHAR_WIDTH,
    FONT_SIZE,
    LINE_HEIGHT,
    PANEL_HEIGHT,
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
    spread,
    style_axes,
)
from runner.report.labels import Labels
from runner.report.model import Reliability

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

RELIABILITY_TICKS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
LIMITS = (-0.02, 1.02)  # a little room: markers at 0 and 1 are not cut in half
LABEL_GAP = 1.15 * LINE_HEIGHT  # inches between two ECE labels' centres
LABEL_OFFSET = 0.25  # inches from a panel's right edge to its ECE labels (the leaders' room)
LABEL_COLUMN = LABEL_OFFSET + len("0.000") * CHAR_WIDTH + 0.2  # inches the labels take


def _last_point(reliability: Reliability) -> tuple[float, float] | None:
    drawn = np.flatnonzero(reliability.count > 0)
    if len(drawn) == 0:
        return None
    last = drawn[-1]
    return float(reliability.confidence[last]), float(reliability.accuracy[last])


def _ece_labels(axes: Axes, shown: Sequence[Reliability], eces: dict[str, float],
                labels: Labels, panel_height: float) -> None:
    from matplotlib.transforms import offset_copy

    from runner.report.styles import styles

    look = styles(labels.hue_order)
    ends = [(reliability, _last_point(reliability)) for reliability in shown]
    ends = [(reliability, end) for reliability, end in ends if end is not None]
    span = LIMITS[1] - LIMITS[0]
    wanted = [(end[1] - LIMITS[0]) / span for _, end in ends]  # axes fraction
    gap = LABEL_GAP / panel_height
    places = spread(wanted, gap, 0.0, 1.0 - gap)  # the heading "ECE" sits at the top
    # text a fixed distance right of the panel, whatever width the layout gives the axes
    beside = offset_copy(axes.transAxes, axes.figure, x=LABEL_OFFSET, units="inches")
    axes.annotate("ECE", xy=(1.0, 1.0), xycoords="axes fraction", xytext=(1.0, 1.0),
                  textcoords=beside, fontsize=FONT_SIZE, va="center", annotation_clip=False)
    for (reliability, (x, y)), place in zip(ends, places, strict=True):
        style = look[hue_of(labels, reliability.group)]
        ece = eces.get(reliability.group.name, math.nan)
        axes.annotate(f"{ece:.3f}", xy=(x, y), xycoords="data", xytext=(1.0, place),
                      textcoords=beside, fontsize=FONT_SIZE, va="center",
                      color=style.color, annotation_clip=False,
                      arrowprops={"arrowstyle": "-", "color": style.color, "linewidth": 0.8,
                                  "linestyle": style.dash, "shrinkA": 1, "shrinkB": 1})


def reliability_figure(reliabilities: Sequence[Reliability], labels: Labels,
                       eces: dict[str, float], title: str) -> Figure:
    """Reliability diagrams, one panel per facet (`eces`: group name -> its mean final ECE,
    as the tables give it)."""
    from runner.report.styles import styles

    facets = [f for f in labels.facet_order if any(facet_of(labels, r.group) == f
                                                   for r in reliabilities)]
    hues = present_hues(labels, [r.group for r in reliabilities])
    look = styles(labels.hue_order)
    columns = columns_for(len(facets))
    per_facet = {facet: sorted((r for r in reliabilities if facet_of(labels, r.group) == facet),
                               key=lambda r: labels.hue_order.index(hue_of(labels, r.group)))
                 for facet in facets}
    most = max(len(shown) for shown in per_facet.values())
    # tall enough for every label of the fullest panel beside it
    panel_height = max(PANEL_HEIGHT, most * LABEL_GAP + 0.9)
    panel_width = PANEL_HEIGHT + LABEL_COLUMN  # square-ish axes, then the labels
    width = max(6.5, panel_width * columns)
    names = [labels.legend_name(h) for h in hues]
    height = panel_height * math.ceil(len(facets) / columns) + 0.4 + legend_height(names, width)
    made = figure(width, height)
    for axes, facet in zip(panels(made, len(facets), sharex=True, sharey=True), facets,
                           strict=True):
        axes.plot([0, 1], [0, 1], color="0.5", linestyle=":", linewidth=1)
        for reliability in per_facet[facet]:
            style = look[hue_of(labels, reliability.group)]
            drawn = reliability.count > 0  # empty bins are not drawn
            axes.plot(reliability.confidence[drawn], reliability.accuracy[drawn],
                      color=style.color, linestyle=style.dash, marker=style.marker,
                      markersize=3, linewidth=1.5)
        axes.set_xlim(*LIMITS)
        axes.set_ylim(*LIMITS)
        style_axes(axes, facet, panel_width - AXIS_MARGIN - LABEL_COLUMN, epochs=False)
        axes.set_xticks(RELIABILITY_TICKS)
        axes.set_yticks(RELIABILITY_TICKS)
        axis_labels(axes, "confidence", "accuracy")
        _ece_labels(axes, per_facet[facet], eces, labels, panel_height - 0.9)
    figure_title(made, title)
    legend(made, line_handles(hues, look), names, labels.hue or "")
    return made
