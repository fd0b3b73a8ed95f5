"""What the report says of a comparison grid, answer first: each method's selected configuration
with its validation score and ties, the final seeds' comparison (from the summary of the final
runs alone), the tuning curves, and one verdict per method; then the tuning stage on its own
(every configuration by its validation score: tuning runs are never ranked on test).

The cells are made here once for every output (console, report.md, report.html, summary.tex)
and the CSV files (selection.csv, tuning.csv, tuning_curves.csv) as bytes for the pipeline to
write with the rest.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any

from runner.grid.protocol import SECONDARY, TIE_RULE, Compare, Scored
from runner.report.formats import interval_text, number, p_text
from runner.report.labels import format_value, short_value
from runner.report.model import Summary
from runner.report.stages import OUTSIDE, Method, Stages
from runner.report.tuning import TuningCurve, tuning_curve
from runner.report.verdicts import verdict

SELECTION_FILE = "selection.csv"
TUNING_FILE = "tuning.csv"
CURVES_FILE = "tuning_curves.csv"


@dataclass(frozen=True)
class Chosen:
    """One method's way through the protocol, and its final-seed row of the summary."""

    method: Method
    final_done: int
    row: dict[str, Any] | None  # None until a final run of the selection is done


@dataclass(frozen=True)
class ProtocolReport:
    compare: Compare
    keys: list[str]  # the settings that name a method and its context (Protocol.keys)
    chosen: list[Chosen]
    curves: list[tuple[str, TuningCurve]]  # method label -> its tuning curve
    verdicts: list[str]
    notes: list[str]  # outside jobs, methods without a selection or final runs


def _settings_text(settings: dict[str, Any]) -> str:
    """`lr=14.9`: tuned values to three significant digits (the files keep them whole)."""
    return ", ".join(f"{key}={value:.3g}" if isinstance(value, float)
                     else f"{key}={short_value(value)}" for key, value in settings.items())


def tie_text(method: Method, compare: Compare) -> str:
    """`3 tied at 0.9779: lr=14.9 (val_loss 0.0064), lr=9.66 (0.0070), lr=6.27 (0.0083);
    broken by the lowest val_loss`, best first, or "" without a tie."""
    selection = method.selection
    if selection is None or not selection.tied:
        return ""
    metric = SECONDARY[compare.select][0]
    tied = [f"{_settings_text(item.settings)} ({number(item.secondary)})"
            for item in _ranked(selection.tied, compare)]
    return (f"{len(selection.tied)} tied at {selection.score:.4f}: {', '.join(tied)} "
            f"(in parentheses: {metric}); broken by the {selection.tie_break}")


def tuning_curves(stages: Stages) -> list[tuple[str, TuningCurve]]:
    """Each selected method's tuning curve (Dodge et al.), with bands where scores are bounded."""
    compare = stages.protocol.compare
    bounds = (0.0, 1.0) if compare.select == "val_acc" else None
    budgets = list(range(1, compare.budget + 1))
    return [(method.label, tuning_curve(method.selection.tried, budgets,
                                        minimize=compare.minimize, bounds=bounds))
            for method in stages.methods if method.selection is not None]


def build(stages: Stages, summary: Summary, jobs: dict[str, Any],
          curves: list[tuple[str, TuningCurve]]) -> ProtocolReport:
    """The protocol's part of the report, the final runs' `summary` and the tuning `curves`
    given."""
    compare = stages.protocol.compare
    keys = summary.keys
    rows = {tuple(row.get(key) for key in keys): row for row in summary.rows}
    chosen, notes = [], []
    for method in stages.methods:
        done = len(method.final_done(jobs))
        row = rows.get(tuple(method.context.get(key) for key in keys)) if done else None
        chosen.append(Chosen(method, done, row))
        if method.selection is None:
            notes.append(f"{method.label}: no configuration has a validation score yet: nothing "
                         f"selected (see `tvo status`)")
        elif done < len(compare.final_seeds):
            notes.append(f"{method.label}: {done} of {len(compare.final_seeds)} final seeds "
                         "done; `tvo run` the grid again to train the rest")
    outside = stages.count(OUTSIDE)
    if outside:
        notes.append(f"{outside} job(s) in this dir are in neither stage (e.g. the final seeds "
                     "of an earlier selection, or jobs of another grid): left out of every "
                     "table")
    by_name = {row["group"]: row for row in summary.rows}
    verdicts = [verdict(item.row, summary, by_name) for item in chosen if item.row is not None]
    return ProtocolReport(compare, stages.protocol.keys(), chosen, curves, verdicts, notes)


# ---------------------------------------------------------------------------------------------
# Cells, for every output


def selection_cells(report: ProtocolReport) -> tuple[list[str], list[list[str]]]:
    """The selection: per method its chosen configuration, validation score and ties."""
    compare = report.compare
    headers = ["method", "selected", compare.select, "tie", "configurations scored",
               "final seeds done"]
    cells = []
    for item in report.chosen:
        selection = item.method.selection
        if selection is None:
            cells.append([item.method.label, "—", "—", "", f"0/{compare.budget}",
                          f"0/{len(compare.final_seeds)}"])
            continue
        cells.append([item.method.label, _settings_text(selection.settings),
                      f"{selection.score:.4f}", tie_text(item.method, compare) or "no tie",
                      f"{len(selection.tried)}/{compare.budget}",
                      f"{item.final_done}/{len(compare.final_seeds)}"])
    return headers, cells


def answer_cells(report: ProtocolReport, summary: Summary) -> tuple[list[str], list[list[str]]]:
    """The final seeds' comparison: per method its final test accuracy with CIs, and against
    the baseline the difference, paired t p-values (raw and Holm) and P(method > baseline)."""
    headers = ["method", "seeds", "final test acc [95% t CI]", "IQM [95% bootstrap CI]",
               "Δ vs baseline [95% CI]", "p", "p (Holm)", "P(method > baseline) [95% CI]"]
    cells = []
    for item in report.chosen:
        row = item.row
        if row is None:
            cells.append([item.method.label, "0", "not run yet", "", "", "", "", ""])
            continue
        is_baseline = row["baseline"] is None and summary.baseline is not None and row.get(
            summary.baseline[0]) == summary.baseline[1]
        diff = "baseline" if is_baseline else interval_text(
            row["diff_final_test_acc"], row["diff_ci_low"], row["diff_ci_high"], signed=True)
        cells.append([
            item.method.label, str(row["seeds"]),
            interval_text(row["final_test_acc_mean"], row["final_test_acc_ci_low"],
                          row["final_test_acc_ci_high"]),
            interval_text(row["final_test_acc_iqm"], row["final_test_acc_iqm_low"],
                          row["final_test_acc_iqm_high"]),
            diff, "" if is_baseline else p_text(row["p_value"]),
            "" if is_baseline else p_text(row["p_holm"], mark=True),
            "" if is_baseline else interval_text(row["p_improvement"], row["p_improvement_low"],
                                                 row["p_improvement_high"], 2)])
    return headers, cells


def curve_cells(report: ProtocolReport) -> tuple[list[str], list[list[str]]]:
    """The tuning curves at a few budgets: 1, a quarter, half, and the whole budget."""
    budget = report.compare.budget
    shown = sorted({1, max(1, budget // 4), max(1, budget // 2), budget})
    headers = ["method", *(f"k = {k}" for k in shown)]
    cells = []
    for label, curve in report.curves:
        values = dict(zip(curve.budgets, zip(curve.expected, curve.lower, curve.upper,
                                             strict=True), strict=True))
        cells.append([label, *(interval_text(*values[k]) for k in shown)])
    return headers, cells


def tuning_cells(report: ProtocolReport) -> tuple[list[str], list[list[str]]]:
    """The tuning stage: every configuration of every method, best validation score first."""
    compare = report.compare
    secondary = SECONDARY[compare.select][0]
    headers = ["method", "rank", "configuration", compare.select, secondary, "selected"]
    cells = []
    for item in report.chosen:
        selection = item.method.selection
        if selection is None:
            continue
        for rank, scored in enumerate(_ranked(selection.scored, compare), start=1):
            mark = ""
            if scored.settings == selection.settings:
                mark = "selected" + (" (tie broken)" if selection.tied else "")
            elif any(scored.index == tied.index for tied in selection.tied):
                mark = "tied"
            cells.append([item.method.label, str(rank), _settings_text(scored.settings),
                          f"{scored.score:.4f}", number(scored.secondary), mark])
    return headers, cells


def _ranked(scored: tuple[Scored, ...], compare: Compare) -> list[Scored]:
    sign = 1 if compare.minimize else -1
    lower = SECONDARY[compare.select][1]
    return sorted(scored, key=lambda item: (
        sign * item.score,
        (1 if lower else -1) * (item.secondary if item.secondary is not None else math.inf),
        item.index))


def protocol_text(report: ProtocolReport) -> str:
    """The protocol in one paragraph, for the reports."""
    compare = report.compare
    tuned = ", ".join(f"{key} ~ {space}" for key, space in compare.tune.items())
    return (f"Each {compare.by} tried the same {compare.budget} configurations of {tuned} with "
            f"one seed (stage 1, tuning) and kept the one with the best final {compare.select} "
            f"on the validation split, never the test set; {TIE_RULE}. The selected "
            f"configuration was trained again on the fresh seeds "
            f"{', '.join(map(str, compare.final_seeds))} (stage 2, final). Only final runs "
            "enter the comparison and the tables of results; tuning runs are listed apart, by "
            "their validation score.")


# ---------------------------------------------------------------------------------------------
# Files


def files(report: ProtocolReport) -> dict[str, bytes]:
    """selection.csv, tuning.csv and tuning_curves.csv, name -> content."""
    compare = report.compare
    secondary = SECONDARY[compare.select][0]
    selection_rows, tuning_rows = [], []
    for item in report.chosen:
        selection, row = item.method.selection, item.row or {}
        context = {key: format_value(item.method.context.get(key)) for key in report.keys}
        selection_rows.append({
            **context, "method": item.method.label,
            **{f"selected_{key}": (selection.settings[key] if selection else None)
               for key in compare.tune},
            f"selected_{compare.select}": selection.score if selection else None,
            "tied_configurations": len(selection.tied) if selection else 0,
            "tie_broken_by": selection.tie_break if selection else "",
            "configurations_scored": len(selection.tried) if selection else 0,
            "final_seeds": item.final_done,
            **{name: row.get(name) for name in (
                "final_test_acc_mean", "final_test_acc_ci_low", "final_test_acc_ci_high",
                "final_test_acc_boot_low", "final_test_acc_boot_high", "final_test_acc_iqm",
                "final_test_acc_iqm_low", "final_test_acc_iqm_high", "baseline", "test",
                "pairs", "diff_final_test_acc", "diff_ci_low", "diff_ci_high", "p_value",
                "p_holm", "p_improvement", "p_improvement_low", "p_improvement_high")},
        })
        for scored in (selection.scored if selection else ()):
            tuning_rows.append({
                **context, "method": item.method.label,
                "draw": scored.index, **scored.settings, compare.select: scored.score,
                secondary: scored.secondary,
                "selected": scored.settings == selection.settings if selection else False,
                "tied": any(scored.index == t.index for t in selection.tied) if selection
                else False})
    curve_rows = [{"method": label, "configurations": k,
                   f"expected_best_{compare.select}": expected, "band_low": low,
                   "band_high": high, "band": curve.method}
                  for label, curve in report.curves
                  for k, expected, low, high in zip(curve.budgets, curve.expected, curve.lower,
                                                    curve.upper, strict=True)]
    return {SELECTION_FILE: _csv(selection_rows), TUNING_FILE: _csv(tuning_rows),
            CURVES_FILE: _csv(curve_rows)}


def _csv(rows: list[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({key: _cell(value) for key, value in row.items()} for row in rows)
    return buffer.getvalue().encode()


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(value) if isinstance(value, float) else value
