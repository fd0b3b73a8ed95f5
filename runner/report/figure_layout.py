"""The layout every figure shares: a canvas, facet panels in a grid, small labelled ticks on
every panel, legends below the panels sized to fit. matplotlib's object API with the Agg canvas
(no pyplot state), imported lazily: the figure worker pays for it, the aggregation does not.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from runner.report.labels import Labels
from runner.report.model import Group
from runner.report.styles import Style

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PANEL_WIDTH, PANEL_HEIGHT = 3.6, 2.6  # inches per facet of a curve plot
MAX_COLUMNS = 3  # facets per row
FONT_SIZE = 8.0  # points, for tick labels, legends and panel titles
CHAR_WIDTH = 0.62 * FONT_SIZE / 72  # inches per character of FONT_SIZE text, a safe average
LINE_HEIGHT = 1.45 * FONT_SIZE / 72  # inches per line of FONT_SIZE text
LEGEND_HANDLE = 0.55  # inches a legend entry takes besides its text
ROW_HEIGHT = 0.2  # inches per dot (one group) in a dot plot, and per legend row
AXIS_MARGIN = 0.7  # inches of a panel taken by its y tick labels and y label
DPI = 100  # every figure's PNG


def figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    made = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(made)
    return made


def figure_title(figure_: Figure, text: str) -> None:
    """The figure's title, wrapped to its width."""
    figure_.suptitle(wrap(text, figure_.get_figwidth() * 0.83 - 0.3), fontsize="medium")


def wrap(text: str, width_inches: float) -> str:
    return "\n".join(textwrap.wrap(text, max(8, int(width_inches / CHAR_WIDTH)))) or text


def legend_columns(names: Sequence[str], width: float) -> int:
    """As many legend columns as fit across `width` inches."""
    entry = max(len(line) for name in names for line in name.splitlines()) * CHAR_WIDTH
    return max(1, min(len(names), int((width - 0.3) / (entry + LEGEND_HANDLE))))


def legend(figure_: Figure, handles: Sequence[Any], names: Sequence[str], title: str) -> None:
    width = figure_.get_figwidth()
    names = [wrap(name, width - 0.3 - LEGEND_HANDLE) for name in names]
    figure_.legend(handles, names, loc="outside lower center", title=title, frameon=False,
                   ncols=legend_columns(names, width), fontsize=FONT_SIZE,
                   title_fontsize=FONT_SIZE)


def legend_height(names: Sequence[str], width: float) -> float:
    wrapped = [wrap(name, width - 0.3 - LEGEND_HANDLE) for name in names]
    columns = legend_columns(wrapped, width)
    lines = max(name.count("\n") + 1 for name in wrapped) if wrapped else 1
    rows = math.ceil(len(wrapped) / columns)
    return 0.35 + rows * ROW_HEIGHT * lines


def style_axes(axes: Axes, title: str, width: float, *, epochs: bool = True) -> None:
    """Small ticks, few of them, labelled on every panel (each panel reads on its own);
    `epochs`: integer x ticks and a y locator (curve panels), else the y ticks are the dot
    plot's group names and stay as they are."""
    from matplotlib.ticker import MaxNLocator

    axes.tick_params(labelsize=FONT_SIZE, labelbottom=True, labelleft=True)
    axes.xaxis.label.set_fontsize(FONT_SIZE)
    axes.yaxis.label.set_fontsize(FONT_SIZE)
    axes.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=epochs))
    if epochs:
        axes.yaxis.set_major_locator(MaxNLocator(nbins=5))
    if title:
        axes.set_title(wrap(title, width), fontsize=FONT_SIZE)
    axes.grid(alpha=0.3)


def columns_for(count: int) -> int:
    """Facets per row: up to three, and four as two by two."""
    return 2 if count == 4 else min(MAX_COLUMNS, count)


def panels(figure_: Figure, count: int, columns: int | None = None, **shared: Any) -> list[Axes]:
    """`count` panels in rows of `columns`; shared axes keep every panel's tick labels."""
    columns = columns or columns_for(count)
    rows = math.ceil(count / columns)
    grid = figure_.subplots(rows, columns, squeeze=False, **shared)
    for axes in grid.flat[count:]:
        axes.remove()  # an empty slot in the last row
    for axes in grid.flat[:count]:  # subplots(sharex=...) hides inner panels' tick labels
        axes.tick_params(labelbottom=True, labelleft=True)
    return list(grid.flat[:count])


def axis_labels(axes: Axes, xlabel: str, ylabel: str) -> None:
    """Axis labels on the outer panels (the axes are shared); tick labels stay everywhere."""
    spec = axes.get_subplotspec()
    last_row = spec.is_last_row() or not any(
        other.get_subplotspec().rowspan.start == spec.rowspan.stop
        and other.get_subplotspec().colspan.start == spec.colspan.start
        for other in axes.figure.axes if other.get_subplotspec() is not None)
    if last_row:
        axes.set_xlabel(xlabel)
    if spec.is_first_col():
        axes.set_ylabel(ylabel)


def facet_of(labels: Labels, group: Group) -> str:
    return labels.facet_label(group.key)


def hue_of(labels: Labels, group: Group) -> str:
    return labels.hue_label(group.key)


def present_hues(labels: Labels, groups: Sequence[Group]) -> list[str]:
    present = {hue_of(labels, g) for g in groups}
    return [hue for hue in labels.hue_order if hue in present]


def line_handles(hues: Sequence[str], look: dict[str, Style]) -> list[Any]:
    from matplotlib.lines import Line2D

    return [Line2D([], [], color=look[h].color, linestyle=look[h].dash, linewidth=1.5)
            for h in hues]


def spread(wanted: Sequence[float], gap: float, low: float = 0.0, high: float = 1.0,
           ) -> list[float]:
    """Positions as close to `wanted` as they can be with at least `gap` between any two,
    inside [low, high] where they fit (in the same order as `wanted`)."""
    order = sorted(range(len(wanted)), key=lambda i: wanted[i])
    placed = [min(max(wanted[i], low), high) for i in order]
    for k in range(1, len(placed)):
        placed[k] = max(placed[k], placed[k - 1] + gap)
    if placed and placed[-1] > high:  # pushed past the top: push down again from there
        placed[-1] = max(high, low + gap * (len(placed) - 1))
        for k in range(len(placed) - 2, -1, -1):
            placed[k] = min(placed[k], placed[k + 1] - gap)
    result = [0.0] * len(wanted)
    for k, i in enumerate(order):
        result[i] = placed[k]
    return result
