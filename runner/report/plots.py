"""Which figures a summary gets, what they are called, and their files (PNG, and SVG for papers).

The figures themselves are in figures.py, the data they draw in plot_data.py.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from jobs import metric_catalogue
from runner.report.labels import Labels
from runner.report.model import Curve, PlotData, Summary

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# the figures besides those of a metric over epochs (curve_figures), in report order
OTHER_FIGURES = ("targets", "final_acc", "calibration", "tuning_curves", "performance_profile")
# PNG for the reports, SVG (vector, text kept as text) for papers; SVG rather than PDF as it
# takes a third of the time to write (0.2 s against 0.3-0.6 s per figure, measured on the 1,000
# job benchmark grid) and the aggregation has 3 s in all
FORMATS = ("png", "svg")
CALIBRATION_TITLE = ("Reliability at the final epoch (bins pooled over seeds; dotted: perfect "
                     "calibration; ECE beside each line)")
FINAL_TITLE = "Final test accuracy (mean over seeds, 95 % t CI, cut at 1)"


def curve_figures() -> dict[str, tuple[str, str]]:
    """The figures of a metric over epochs (each a plot_data.curves column) -> y label and
    title, as the metrics declare them (jobs.metric_catalogue)."""
    return {name: (ylabel, f"{title} (mean over seeds, 95 % CI)")
            for name, (ylabel, title) in metric_catalogue.curves().items()}


def all_figures() -> tuple[str, ...]:
    return (*metric_catalogue.curves(), *OTHER_FIGURES)


def plot_files() -> tuple[str, ...]:
    return tuple(f"{name}.{fmt}" for name in all_figures() for fmt in FORMATS)


def calibrated(summary: Summary) -> list[int]:
    """Indices of the rows that have an ECE (null ECE: not applicable to that output)."""
    return [i for i, row in enumerate(summary.rows) if not math.isnan(row["ece_mean"])]


def final_eces(summary: Summary) -> dict[str, float]:
    """Group name -> its mean final ECE, as the tables give it (NaN: not applicable)."""
    return {group.name: row["ece_mean"] for group, row in zip(summary.groups, summary.rows,
                                                              strict=True)}


def plot_notes(summary: Summary, plot_data: PlotData) -> list[str]:
    """What the report says about plots left out, and why."""
    from runner.report.figures import MAX_TARGET_PANELS

    notes = []
    if summary.identical:
        notes.append("groups with bit-identical runs are drawn once (see the comparison); a "
                     "legend names `a = b` where b is a copy of a in every panel")
    moving = len(plot_data.trajectories)
    if moving > MAX_TARGET_PANELS:
        notes.append(f"targets shows the best {MAX_TARGET_PANELS} of {moving} groups whose "
                     "targets move")
    if not moving:
        notes.append("no target trajectories: no strategy in this grid moved c_i or nc_i")
    drawn = set(summary.drawn())
    lacking = len(drawn) - len([i for i in calibrated(summary) if i in drawn])
    if lacking:
        notes.append(f"ECE and NLL are not applicable to {lacking} group(s) (tanh, lecun_tanh "
                     "or linear outputs are no probabilities): left out of the calibration "
                     "plots")
    binned = {r.group.name for r in plot_data.reliability}
    unbinned = [i for i in calibrated(summary) if summary.groups[i].name not in binned
                and summary.groups[i].done_ids and i in drawn]
    if unbinned:
        notes.append(f"{len(unbinned)} group(s) with an ECE have no reliability bins (metrics "
                     "written before tvo recorded them): left out of the calibration plots")
    return notes


def figure_names(summary: Summary, plot_data: PlotData) -> list[str]:
    """The figures this summary gets, in report order."""
    names = []
    if plot_data.tuning:
        names.append("tuning_curves")
    if plot_data.groups:
        names += list(metric_catalogue.curves())
    if plot_data.trajectories:
        names.append("targets")
    if plot_data.groups:
        names.append("final_acc")
    if plot_data.reliability:
        names.append("calibration")
    if plot_data.profiles:
        names.append("performance_profile")
    return names


def curve_figure(name: str, curves: Sequence[Curve], labels: Labels) -> Figure:
    """The figure of a metric over epochs (a name of curve_figures), from its curves alone."""
    from runner.report import figures as draw

    ylabel, title = curve_figures()[name]
    return draw.curves_figure(curves, labels, ylabel, title)


def make_figures(summary: Summary, plot_data: PlotData,
                 only: Sequence[str] | None = None) -> dict[str, Figure]:
    """Figure name -> figure (those of `only` when given); plot_notes says what is left out."""
    from runner.report import figures as draw

    wanted = [name for name in figure_names(summary, plot_data) if only is None or name in only]
    made: dict[str, Figure] = {name: curve_figure(name, plot_data.curves[name], summary.labels)
                               for name in curve_figures() if name in wanted}
    if "targets" in wanted:
        made["targets"] = draw.targets_figure(plot_data.trajectories)
    if "final_acc" in wanted:
        made["final_acc"] = draw.dots_figure(summary, "final_test_acc", "final test accuracy",
                                             FINAL_TITLE)
    if "calibration" in wanted:
        from runner.report.calibration_figure import reliability_figure

        made["calibration"] = reliability_figure(
            plot_data.reliability, summary.labels, final_eces(summary), CALIBRATION_TITLE)
    if "tuning_curves" in wanted or "performance_profile" in wanted:
        from runner.report.tuning_figures import profile_figure, tuning_figure

        if "tuning_curves" in wanted:
            made["tuning_curves"] = tuning_figure(plot_data.tuning, summary.labels,
                                                  plot_data.tuning_metric)
        if "performance_profile" in wanted:
            made["performance_profile"] = profile_figure(plot_data.profiles, summary.labels,
                                                         plot_data.profile_tasks)
    return made


def figure_files(name: str, figure: Figure) -> dict[str, bytes]:
    """`name.png` and `name.svg`, the SVG with its text as text (editable, searchable).

    The figure is laid out once, here, and then has no layout engine: savefig() draws a figure
    that has one twice, once without output to run it, and that pass (a third of a figure's
    drawing time) would be repeated for each format. Same files as savefig with the engine.
    """
    from matplotlib import rc_context

    files = {}
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "tvo",  # same input, same file
                     "figure.autolayout": False, "figure.constrained_layout.use": False}):
        engine = figure.get_layout_engine()
        if engine is not None:
            engine.execute(figure)
        figure.set_layout_engine(None)  # (with the two rc settings above: no engine at all)
        for fmt in FORMATS:
            buffer = io.BytesIO()
            figure.savefig(buffer, format=fmt)
            files[f"{name}.{fmt}"] = buffer.getvalue()
    return files
