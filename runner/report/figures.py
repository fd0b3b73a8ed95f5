"""The summary's figures (matplotlib): small multiples that stay readable from 4 to 40 groups.

One panel per facet (a combination of the swept settings other than the compared one, e.g.
dataset and lr); the compared setting (the strategy) is a colour that means the same in every
panel and figure; legends sit below the panels, outside the axes, in as many columns as fit.
Labels are the short ones of `labels`. matplotlib is imported here only, lazily, and used
through its object API with the Agg canvas: no pyplot state.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from runner.report.labels import Labels
from runner.report.model import Curve, Group, Reliability, Summary, Trajectory
from runner.report.styles import COLORS, Style, styles

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PANEL_WIDTH, PANEL_HEIGHT = 3.6, 2.6  # inches per facet of a curve plot
MAX_COLUMNS = 3  # facets per row
FONT_SIZE = 8.0  # points, for tick labels, legends and panel titles
CHAR_WIDTH = 0.62 * FONT_SIZE / 72  # inches per character of FONT_SIZE text, a safe average
LEGEND_HANDLE = 0.55  # inches a legend entry takes besides its text
ROW_HEIGHT = 0.2  # inches per dot (one group) in a dot plot, and per legend row
AXIS_MARGIN = 0.7  # inches of a panel taken by its y tick labels and y label
CAP = 0.2  # half-height of a CI bar's caps, in dot rows
RELIABILITY_TICKS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
ECE_ENTRY = 0.75  # inches an entry of a panel's ECE key takes: its line and "0.123"
MAX_TARGET_PANELS = 12  # a figure with more panels is unreadable; the best groups are shown


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _wrap(text: str, width_inches: float) -> str:
    return "\n".join(textwrap.wrap(text, max(8, int(width_inches / CHAR_WIDTH)))) or text


def _legend_columns(names: Sequence[str], width: float) -> int:
    """As many legend columns as fit across `width` inches."""
    entry = max(len(line) for name in names for line in name.splitlines()) * CHAR_WIDTH
    return max(1, min(len(names), int((width - 0.3) / (entry + LEGEND_HANDLE))))


def _legend(figure: Figure, handles: Sequence[Any], names: Sequence[str], title: str) -> None:
    width = figure.get_figwidth()
    names = [_wrap(name, width - 0.3 - LEGEND_HANDLE) for name in names]
    figure.legend(handles, names, loc="outside lower center", title=title, frameon=False,
                  ncols=_legend_columns(names, width), fontsize=FONT_SIZE,
                  title_fontsize=FONT_SIZE)


def _legend_height(names: Sequence[str], width: float) -> float:
    rows = math.ceil(len(names) / _legend_columns(names, width))
    return 0.35 + rows * ROW_HEIGHT


def _style_axes(axes: Axes, title: str, width: float, *, epochs: bool = True) -> None:
    """Small ticks, few of them; `epochs`: integer x ticks and a y locator (curve panels),
    else the y ticks are the dot plot's group names and stay as they are."""
    from matplotlib.ticker import MaxNLocator

    axes.tick_params(labelsize=FONT_SIZE)
    axes.xaxis.label.set_fontsize(FONT_SIZE)
    axes.yaxis.label.set_fontsize(FONT_SIZE)
    axes.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=epochs))
    if epochs:
        axes.yaxis.set_major_locator(MaxNLocator(nbins=5))
    if title:
        axes.set_title(_wrap(title, width), fontsize=FONT_SIZE)
    axes.grid(alpha=0.3)


def _columns(count: int) -> int:
    """Facets per row: up to three, and four as two by two."""
    return 2 if count == 4 else min(MAX_COLUMNS, count)


def _panels(figure: Figure, count: int, **shared: Any) -> list[Axes]:
    columns = _columns(count)
    rows = math.ceil(count / columns)
    grid = figure.subplots(rows, columns, squeeze=False, **shared)
    for axes in grid.flat[count:]:
        axes.remove()  # an empty slot in the last row
    return list(grid.flat[:count])


def _outer_labels(axes: Axes, xlabel: str, ylabel: str) -> None:
    """Axis labels and tick labels on the outer panels only (the axes are shared)."""
    spec = axes.get_subplotspec()
    last_row = spec.is_last_row() or not any(
        other.get_subplotspec().rowspan.start == spec.rowspan.stop
        and other.get_subplotspec().colspan.start == spec.colspan.start
        for other in axes.figure.axes)  # nothing below it: the slot under it is empty
    if last_row:
        axes.set_xlabel(xlabel)
    else:
        axes.tick_params(labelbottom=False)
    if spec.is_first_col():
        axes.set_ylabel(ylabel)
    else:
        axes.tick_params(labelleft=False)


def _facet_of(labels: Labels, group: Group) -> str:
    return labels.facet_label(group.key)


def _hue_of(labels: Labels, group: Group) -> str:
    return labels.hue_label(group.key)


def _present_hues(labels: Labels, groups: Sequence[Group]) -> list[str]:
    present = {_hue_of(labels, g) for g in groups}
    return [hue for hue in labels.hue_order if hue in present]


def _line_handles(hues: Sequence[str], look: dict[str, Style]) -> list[Any]:
    from matplotlib.lines import Line2D

    return [Line2D([], [], color=look[h].color, linestyle=look[h].dash, linewidth=1.5)
            for h in hues]


def curves_figure(curves: Sequence[Curve], labels: Labels, ylabel: str, title: str) -> Figure:
    """Per facet, one line per group (mean over seeds) with its 95 % CI as a shaded band."""
    facets = [f for f in labels.facet_order if any(_facet_of(labels, c.group) == f
                                                     for c in curves)]
    hues = _present_hues(labels, [c.group for c in curves])
    look = styles(labels.hue_order)
    columns = _columns(len(facets))
    width = max(6.5, PANEL_WIDTH * columns)
    height = PANEL_HEIGHT * math.ceil(len(facets) / columns) + 0.4 + _legend_height(hues, width)
    figure = _figure(width, height)
    # shared axes: the facets compare at a glance, and inner panels need no tick labels
    for axes, facet in zip(_panels(figure, len(facets), sharex=True, sharey=True), facets,
                           strict=True):
        for curve in curves:
            if _facet_of(labels, curve.group) != facet:
                continue
            style = look[_hue_of(labels, curve.group)]
            axes.plot(curve.epochs, curve.mean, color=style.color, linestyle=style.dash,
                      linewidth=1.5)
            if np.any(np.isfinite(curve.low)):
                axes.fill_between(curve.epochs, curve.low, curve.high, color=style.color,
                                  alpha=0.15, linewidth=0)
        _style_axes(axes, facet, width / columns - AXIS_MARGIN)
        _outer_labels(axes, "epoch", ylabel)
    figure.suptitle(title, fontsize="medium")
    _legend(figure, _line_handles(hues, look), hues, labels.hue or "")
    return figure


def targets_figure(trajectories: Sequence[Trajectory]) -> Figure:
    """One panel per group: c_i (solid) and nc_i (dashed) of every class over epochs."""
    from matplotlib.lines import Line2D

    shown = trajectories[:MAX_TARGET_PANELS]
    classes = shown[0].target_class.shape[1]
    class_colors = [COLORS[i % len(COLORS)] for i in range(classes)]
    names = [f"class {i}" for i in range(classes)] + ["c_i (class value)",
                                                      "nc_i (non-class value)"]
    columns = _columns(len(shown))
    width = max(6.5, PANEL_WIDTH * columns)
    height = (PANEL_HEIGHT + 0.3) * math.ceil(len(shown) / columns) + 0.4 + _legend_height(
        names, width)
    figure = _figure(width, height)
    for axes, trajectory in zip(_panels(figure, len(shown)), shown, strict=True):
        for i, color in enumerate(class_colors):
            axes.plot(trajectory.epochs, trajectory.target_class[:, i], color=color)
            axes.plot(trajectory.epochs, trajectory.target_nonclass[:, i], color=color,
                      linestyle="--")
        axes.set(xlabel="epoch", ylabel="target value")
        _style_axes(axes, trajectory.group.label, width / columns - AXIS_MARGIN)
    handles = [Line2D([], [], color=color) for color in class_colors]
    handles += [Line2D([], [], color="black"), Line2D([], [], color="black", linestyle="--")]
    figure.suptitle("Targets per class over epochs (mean over seeds)", fontsize="medium")
    _legend(figure, handles, names, "")
    return figure


def _column(rows: Sequence[dict[str, Any]], name: str) -> np.ndarray:
    return np.array([row[name] for row in rows], dtype=float)


def _row_positions(hues: Sequence[str]) -> tuple[dict[str, float], float]:
    """Each name's y position, a row per text line (wrapped names take more), and the total."""
    positions, used = {}, 0.0
    for hue in hues:
        lines = hue.count("\n") + 1
        positions[hue] = used + lines / 2
        used += lines
    return positions, used


def _dots(axes: Axes, rows: Sequence[dict[str, Any]], measure: str, hues: Sequence[str],
          look: dict[str, Style], show_names: bool) -> None:
    """One marker per group at its mean, its CI as a horizontal bar with caps; one row per hue.

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
            segments += [[(low, y), (high, y)], [(low, y - CAP), (low, y + CAP)],
                         [(high, y - CAP), (high, y + CAP)]]
            colors += [style.color] * 3
        xs, ys, cs = markers.setdefault(style.marker, ([], [], []))
        xs.append(mean)
        ys.append(y)
        cs.append(style.color)
    if segments:
        axes.add_collection(LineCollection(segments, colors=colors, linewidths=1.5))
    for marker, (xs, ys, cs) in markers.items():
        axes.scatter(xs, ys, c=cs, marker=marker, s=20, zorder=3)
    axes.set_yticks([position[h] for h in hues], hues if show_names else [""] * len(hues))
    axes.set_ylim(total, 0)
    axes.autoscale_view(scaley=False)
    axes.grid(axis="x", alpha=0.3)


def dots_figure(summary: Summary, measures: Sequence[tuple[str, str]], title: str) -> Figure:
    """Per facet (a row of panels) and measure (a column): every group's mean and 95 % CI.

    Groups are rows named by their compared value, in the same order in every panel.
    """
    labels = summary.labels
    rows = [{**row, "_hue": _hue_of(labels, group), "_facet": _facet_of(labels, group)}
            for row, group in zip(summary.rows, summary.groups, strict=True)]
    hues = _present_hues(labels, summary.groups)
    facets = [f for f in labels.facet_order if any(r["_facet"] == f for r in rows)]
    look = styles(labels.hue_order)
    name_width = min(4.0, max(len(h) for h in hues) * CHAR_WIDTH + 0.2)
    hues = [_wrap(h, name_width) for h in hues]
    look = {_wrap(h, name_width): s for h, s in look.items()}
    for row in rows:
        row["_hue"] = _wrap(row["_hue"], name_width)
    width = name_width + 3.0 * len(measures) + 0.4
    panel_height = 0.6 + ROW_HEIGHT * sum(h.count("\n") + 1 for h in hues)
    figure = _figure(width, panel_height * len(facets) + 0.5)
    grid = figure.subplots(len(facets), len(measures), squeeze=False)
    for facet_axes, facet in zip(grid, facets, strict=True):
        facet_rows = [r for r in rows if r["_facet"] == facet]
        for column, (axes, (measure, xlabel)) in enumerate(zip(facet_axes, measures,
                                                               strict=True)):
            _dots(axes, facet_rows, measure, hues, look, show_names=column == 0)
            axes.set_xlabel(xlabel)
            _style_axes(axes, facet if len(measures) == 1 else "", 3.0, epochs=False)
            if column == 0 and facet and len(measures) > 1:
                axes.set_title(_wrap(facet, width - 0.5), fontsize=FONT_SIZE, loc="left")
    figure.suptitle(title, fontsize="medium")
    return figure


def _ece_key(axes: Axes, hues: Sequence[str], eces: Sequence[float], look: dict[str, Style],
             rows: int) -> None:
    """The panel's ECE per line, in the lines' styles, beside the panel (outside the axes)."""
    axes.legend(_line_handles(hues, look), [f"{ece:.3f}" for ece in eces], title="ECE",
                loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize=FONT_SIZE,
                title_fontsize=FONT_SIZE, ncols=math.ceil(len(hues) / rows), handlelength=1.5,
                borderaxespad=0.0, columnspacing=0.8)


def reliability_figure(reliabilities: Sequence[Reliability], labels: Labels,
                       eces: dict[str, float], title: str) -> Figure:
    """Reliability diagrams: per facet, each group's accuracy against its confidence in the
    non-empty bins, with the diagonal (perfect calibration); each panel's key gives the ECE of
    its lines (`eces`: group name -> mean final ECE)."""
    facets = [f for f in labels.facet_order if any(_facet_of(labels, r.group) == f
                                                   for r in reliabilities)]
    hues = _present_hues(labels, [r.group for r in reliabilities])
    look = styles(labels.hue_order)
    columns = _columns(len(facets))
    per_facet = {facet: [r for r in reliabilities if _facet_of(labels, r.group) == facet]
                 for facet in facets}
    key_rows = max(1, int((PANEL_HEIGHT - 0.6) / ROW_HEIGHT))  # ECE entries down one panel
    key_columns = max(math.ceil(len(shown) / key_rows) for shown in per_facet.values())
    panel_width = PANEL_HEIGHT + key_columns * ECE_ENTRY + 0.3  # square-ish axes, then the key
    width = max(6.5, panel_width * columns)
    height = PANEL_HEIGHT * math.ceil(len(facets) / columns) + 0.4 + _legend_height(hues, width)
    figure = _figure(width, height)
    for axes, facet in zip(_panels(figure, len(facets), sharex=True, sharey=True), facets,
                           strict=True):
        axes.plot([0, 1], [0, 1], color="0.5", linestyle=":", linewidth=1)
        shown = sorted(per_facet[facet], key=lambda r: labels.hue_order.index(
            _hue_of(labels, r.group)))
        for reliability in shown:
            style = look[_hue_of(labels, reliability.group)]
            drawn = reliability.count > 0  # empty bins are not drawn
            axes.plot(reliability.confidence[drawn], reliability.accuracy[drawn],
                      color=style.color, linestyle=style.dash, marker=style.marker,
                      markersize=3, linewidth=1.5)
        axes.set_xlim(-0.02, 1.02)  # a little room: markers at 0 and 1 are not cut in half
        axes.set_ylim(-0.02, 1.02)
        _style_axes(axes, facet, panel_width - AXIS_MARGIN, epochs=False)
        axes.set_xticks(RELIABILITY_TICKS)
        axes.set_yticks(RELIABILITY_TICKS)
        _outer_labels(axes, "confidence", "accuracy")
        _ece_key(axes, [_hue_of(labels, r.group) for r in shown],
                 [eces.get(r.group.name, math.nan) for r in shown], look, key_rows)
    figure.suptitle(title, fontsize="medium")
    _legend(figure, _line_handles(hues, look), hues, labels.hue or "")
    return figure
