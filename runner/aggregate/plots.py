"""Which figures a summary gets, what they are called, and their files (PNG, and PDF for papers).

The figures themselves are in figures.py, the data they draw in plot_data.py.
"""

from __future__ import annotations

import dataclasses
import io
import math
from typing import TYPE_CHECKING

from runner.aggregate.plot_data import PlotData
from runner.aggregate.tables import Summary

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIGURES = ("test_acc", "train_loss", "targets", "final_acc", "calibration")
FORMATS = ("png", "pdf")  # PNG for the reports, PDF (vector) for \includegraphics
PLOT_FILES = tuple(f"{name}.{fmt}" for name in FIGURES for fmt in FORMATS)
CALIBRATION = (("ece", "ECE (lower is better)"), ("test_nll", "test NLL (lower is better)"))


def calibrated(summary: Summary) -> list[int]:
    """Indices of the rows that have an ECE (null ECE: not applicable to that output)."""
    return [i for i, row in enumerate(summary.rows) if not math.isnan(row["ece_mean"])]


def plot_notes(summary: Summary, plot_data: PlotData) -> list[str]:
    """What the report says about plots left out, and why."""
    from runner.aggregate.figures import MAX_TARGET_PANELS

    notes = []
    moving = len(plot_data.trajectories)
    if moving > MAX_TARGET_PANELS:
        notes.append(f"targets shows the best {MAX_TARGET_PANELS} of {moving} groups whose "
                     "targets move")
    if not moving:
        notes.append("no target trajectories: no strategy in this grid moved c_i or nc_i")
    lacking = len(summary.rows) - len(calibrated(summary))
    if lacking:
        notes.append(f"ECE and NLL are not applicable to {lacking} group(s) (tanh, lecun_tanh "
                     "or linear outputs are no probabilities): left out of the calibration "
                     "plots")
    return notes


def make_figures(summary: Summary, plot_data: PlotData) -> dict[str, Figure]:
    """Figure name -> figure; plot_notes says what is left out."""
    from runner.aggregate import figures as draw

    made: dict[str, Figure] = {}
    curves = plot_data.curves
    if plot_data.groups:
        labels = summary.labels
        made["test_acc"] = draw.curves_figure(
            curves["test_acc"], labels, "test accuracy",
            "Test accuracy over epochs (mean over seeds, 95 % CI)")
        made["train_loss"] = draw.curves_figure(
            curves["train_loss"], labels, "training loss",
            "Training loss over epochs (mean over seeds, 95 % CI)")
    trajectories = plot_data.trajectories
    if trajectories:
        made["targets"] = draw.targets_figure(trajectories)
    if plot_data.groups:
        made["final_acc"] = draw.dots_figure(summary, [("final_test_acc", "final test accuracy")],
                                             "Final test accuracy (mean over seeds, 95 % CI)")
    with_ece = calibrated(summary)
    if with_ece:
        calibrated_summary = dataclasses.replace(
            summary, rows=[summary.rows[i] for i in with_ece],
            groups=[summary.groups[i] for i in with_ece])
        made["calibration"] = draw.dots_figure(
            calibrated_summary, CALIBRATION, "Calibration (mean over seeds, 95 % CI)")
    return made


def figure_files(name: str, figure: Figure) -> dict[str, bytes]:
    """`name.png` and `name.pdf`. PDF text stays text (Type 42 fonts), for papers."""
    from matplotlib import rc_context

    files = {}
    with rc_context({"pdf.fonttype": 42}):
        for fmt in FORMATS:
            buffer = io.BytesIO()
            figure.savefig(buffer, format=fmt)
            files[f"{name}.{fmt}"] = buffer.getvalue()
    return files
