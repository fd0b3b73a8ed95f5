"""The figures of a comparison: tuning curves as small multiples (one panel per method, its band
filled, the other methods' curves in grey for reference, so no two bands blend), and
performance profiles across tasks (one line and band per method)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from runner.report.figure_layout import (
    AXIS_MARGIN,
    PANEL_HEIGHT,
    PANEL_WIDTH,
    axis_labels,
    columns_for,
    figure,
    figure_title,
    legend,
    legend_height,
    line_handles,
    panels,
    style_axes,
)
from runner.report.labels import Labels
from runner.report.model import ProfileCurve, TuningPanel
from runner.report.styles import styles

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BAND_LEVEL = "80 %"  # tuning.CONFIDENCE, as the titles say it
REFERENCE = "0.7"  # the grey of the other methods' curves
MAX_REFERENCE_LINES = 6  # other methods drawn as lines in a panel; more: the range they span


def _ordered(tuning: Sequence[TuningPanel], labels: Labels) -> list[TuningPanel]:
    """By facet (sorted by value), then method in grid order."""
    def rank(panel: TuningPanel) -> tuple[int, int]:
        facet = labels.facet_order.index(panel.facet) if panel.facet in labels.facet_order \
            else len(labels.facet_order)
        hue = labels.hue_order.index(panel.hue) if panel.hue in labels.hue_order \
            else len(labels.hue_order)
        return facet, hue

    return sorted(tuning, key=rank)


def tuning_figure(tuning: Sequence[TuningPanel], labels: Labels, metric: str) -> Figure:
    """One panel per method (and facet): Dodge et al.'s expected best score of k configurations
    with its simultaneous band, the other methods of the facet as grey lines."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    shown = _ordered(tuning, labels)
    hues = list(dict.fromkeys(panel.hue for panel in shown))
    look = styles(list(labels.hue_order) + [h for h in hues if h not in labels.hue_order])
    columns = columns_for(len(shown))
    width = max(6.5, PANEL_WIDTH * columns)
    names = ["expected best of k (Dodge et al. 2019)",
             f"{BAND_LEVEL} simultaneous band (Lourie et al. 2024)",
             "the other methods' curves (or their range), for reference"]
    height = PANEL_HEIGHT * math.ceil(len(shown) / columns) + 0.5 + legend_height(names, width)
    made = figure(width, height)
    for axes, panel in zip(panels(made, len(shown), sharex=True, sharey=True), shown,
                           strict=True):
        others = [other for other in shown if other is not panel and other.facet == panel.facet]
        if len(others) <= MAX_REFERENCE_LINES:
            for other in others:
                axes.plot(other.budgets, other.expected, color=REFERENCE, linewidth=0.9)
        else:  # many methods: the range their curves span, as one grey band
            curves = np.array([other.expected for other in others])
            axes.fill_between(others[0].budgets, curves.min(axis=0), curves.max(axis=0),
                              color=REFERENCE, alpha=0.35, linewidth=0)
        style = look[panel.hue]
        if np.any(np.isfinite(panel.lower)):
            axes.fill_between(panel.budgets, panel.lower, panel.upper, color=style.color,
                              alpha=0.25, linewidth=0)
        axes.plot(panel.budgets, panel.expected, color=style.color, linestyle=style.dash,
                  marker=style.marker, markersize=3, linewidth=1.6)
        title = labels.legend_name(panel.hue) + (f"; {panel.facet}" if panel.facet else "")
        style_axes(axes, title, width / columns - AXIS_MARGIN)
        axis_labels(axes, "configurations tried (k)", f"expected best {metric}")
    figure_title(made, f"Tuning curves: expected best {metric} of k configurations drawn at "
                       f"random, with {BAND_LEVEL} simultaneous confidence bands")
    handles = [Line2D([], [], color="black", marker="o", markersize=3, linewidth=1.6),
               Patch(color="black", alpha=0.25, linewidth=0),
               Line2D([], [], color=REFERENCE, linewidth=0.9)]
    legend(made, handles, names, "")
    return made


def profile_figure(profiles: Sequence[ProfileCurve], labels: Labels, tasks: str) -> Figure:
    """Performance profiles: per method, the fraction of runs (tasks weighted equally) whose
    final test accuracy exceeds tau, with its pointwise 95 % band."""
    look = styles(labels.hue_order)
    hues = [profile.hue for profile in profiles]
    names = [labels.legend_name(h) for h in hues]
    width = 6.5
    made = figure(width, PANEL_HEIGHT + 1.0 + legend_height(names, width))
    [axes] = panels(made, 1)
    for profile in profiles:
        style = look[profile.hue]
        if np.any(np.isfinite(profile.low)):
            axes.fill_between(profile.thresholds, profile.low, profile.high, color=style.color,
                              alpha=0.15, linewidth=0)
        axes.plot(profile.thresholds, profile.fraction, color=style.color,
                  linestyle=style.dash, linewidth=1.5)
    axes.set_ylim(-0.02, 1.02)
    style_axes(axes, "", width - AXIS_MARGIN, epochs=False)
    axes.set_xlabel("final test accuracy tau")
    axes.set_ylabel("fraction of runs > tau")
    figure_title(made, f"Performance profiles over {tasks} (tasks weighted equally; 95 % "
                  "stratified bootstrap bands)")
    legend(made, line_handles(hues, look), names, labels.hue or "")
    return made
