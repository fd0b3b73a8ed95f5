"""The summary as files and text: Arrow table (for Parquet), CSV, JSON, markdown and rich table."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import pyarrow as pa

from jobs import metric_catalogue
from jobs.rundir import results
from runner.report.labels import format_value
from runner.report.model import Summary
from runner.report.tables import COMPARISON_COLUMNS, ROBUST_COLUMNS, STATE_COLUMNS, summary_measures

STAT_SUFFIXES = ("mean", "std", "ci_low", "ci_high")


def summary_columns(keys: list[str]) -> list[tuple[str, pa.DataType]]:
    """Column names and types of summary.parquet / summary.csv, in order."""
    setting_types = {f.name: f.type for f in results.jobs_schema()}
    columns = [(key, setting_types[key]) for key in keys]
    columns += [("group", pa.string()), ("label", pa.string()), ("jobs", pa.int64()),
                ("runs", pa.int64()), ("seeds", pa.int64())]
    columns += [(state, pa.int64()) for state in STATE_COLUMNS]
    columns += [(f"{name}_{suffix}", pa.float64()) for name in summary_measures()
                for suffix in STAT_SUFFIXES]
    columns += [(name, pa.float64()) for name in ROBUST_COLUMNS]
    columns += [("epochs_to_threshold", pa.float64()), ("threshold_reached", pa.int64()),
                ("threshold_never", pa.int64())]
    kinds = {"baseline": pa.string(), "test": pa.string(), "pairs": pa.int64(),
             "test_note": pa.string(), "significant": pa.bool_()}
    columns += [(name, kinds.get(name, pa.float64())) for name in COMPARISON_COLUMNS]
    columns += [("identical_to", pa.string())]
    return columns


def _plain(value: Any) -> Any:
    """JSON/Arrow-friendly: tuples as lists, NaN as None."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def summary_table(summary: Summary, figures: dict[str, str] | None = None) -> pa.Table:
    """`figures`: what figure_cache keeps of the figures drawn with it, if any."""
    columns = summary_columns(summary.keys)
    schema = pa.schema(columns, metadata={
        "tvo.schema": "summary", "tvo.schema_version": results.SCHEMA_VERSION,
        "tvo.threshold": str(summary.threshold),
        "tvo.baseline": "" if summary.baseline is None else
        f"{summary.baseline[0]}={format_value(summary.baseline[1])}",
        **(figures or {}),
    })
    records = [{name: _plain(row[name]) for name, _ in columns} for row in summary.rows]
    return pa.Table.from_pylist(records, schema=schema)


def to_csv(summary: Summary) -> str:
    names = [name for name, _ in summary_columns(summary.keys)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    for row in summary.rows:
        writer.writerow([_csv_cell(row[name]) for name in names])
    return buffer.getvalue()


def _csv_cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return repr(value)
    return format_value(value)


def to_json(summary: Summary, meta: dict[str, Any]) -> str:
    names = [name for name, _ in summary_columns(summary.keys)]
    groups = [{name: _plain(row[name]) for name in names} for row in summary.rows]
    return json.dumps({**meta, "groups": groups}, indent=2) + "\n"


# ---------------------------------------------------------------------------------------------
# Human-readable cells, shared by the markdown and the terminal table


NOT_APPLICABLE = "n/a"  # a measure with no value for any done seed (ECE of a tanh output)
SIGNIFICANCE = 0.05  # the level `*` marks, on Holm-corrected p-values


def number(value: float | None, digits: int = 4) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value:.{digits}f}"


def mean_ci(row: dict[str, Any], name: str, digits: int = 4, sep: str = " ") -> str:
    mean, low, high = row[f"{name}_mean"], row[f"{name}_ci_low"], row[f"{name}_ci_high"]
    if math.isnan(mean) and row["seeds"]:
        return NOT_APPLICABLE
    if math.isnan(low):
        return number(mean, digits)
    return f"{number(mean, digits)}{sep}± {number((high - low) / 2, digits)}"


def mean_text(row: dict[str, Any], name: str, digits: int = 3) -> str:
    mean = row[f"{name}_mean"]
    return NOT_APPLICABLE if math.isnan(mean) and row["seeds"] else number(mean, digits)


def p_text(p_value: float, *, mark: bool = False) -> str:
    """A p-value to three places; `mark`: with ` *` below SIGNIFICANCE (for Holm's)."""
    if p_value is None or math.isnan(p_value):
        return "—"
    shown = "<0.001" if p_value < 0.001 else f"{p_value:.3f}"
    return f"{shown} *" if mark and p_value < SIGNIFICANCE else shown


def diff_text(row: dict[str, Any], summary: Summary, sep: str = " ") -> str:
    if summary.baseline is not None and row.get(summary.baseline[0]) == summary.baseline[1]:
        return "baseline"
    diff = row["diff_final_test_acc"]
    if math.isnan(diff):
        return "—"
    if math.isnan(row["diff_ci_low"]):
        return f"{diff:+.4f}"
    return f"{diff:+.4f}{sep}[{row['diff_ci_low']:+.4f}, {row['diff_ci_high']:+.4f}]"


def threshold_text(row: dict[str, Any]) -> str:
    seeds = row["threshold_reached"] + row["threshold_never"]
    if seeds == 0:
        return "—"
    if row["threshold_reached"] == 0:
        return f"never (0/{seeds})"
    return f"{row['epochs_to_threshold']:g} ({row['threshold_reached']}/{seeds})"


def problems_text(row: dict[str, Any], sep: str = ", ") -> str:
    return sep.join(f"{row[state]} {state}" for state in STATE_COLUMNS if row[state])


def runs_text(row: dict[str, Any]) -> str:
    """Seeds done (of the group's jobs); a group that pools other settings has more runs than
    seeds, and says both."""
    seeds, runs, jobs = row["seeds"], row["runs"], row["jobs"]
    if runs == seeds:
        return f"{seeds}" if runs == jobs else f"{seeds}/{jobs}"
    return f"{runs} runs, {seeds} seeds" + ("" if runs == jobs else f" of {jobs}")


def interval_text(value: float, low: float, high: float, digits: int = 4, *,
                  signed: bool = False) -> str:
    """`0.9600 [0.9500, 0.9700]`, the value alone without an interval, — without a value;
    `signed`: differences, `+0.0100 [-0.0020, +0.0220]`."""
    if value is None or math.isnan(value):
        return "—"

    def shown(number_: float) -> str:
        return f"{number_:+.{digits}f}" if signed else number(number_, digits)

    if math.isnan(low):
        return shown(value)
    return f"{shown(value)} [{shown(low)}, {shown(high)}]"


def iqm_text(row: dict[str, Any]) -> str:
    return interval_text(row["final_test_acc_iqm"], row["final_test_acc_iqm_low"],
                         row["final_test_acc_iqm_high"])


def improvement_text(row: dict[str, Any]) -> str:
    return interval_text(row["p_improvement"], row["p_improvement_low"],
                         row["p_improvement_high"], 2)


CI_HEADER = "final acc ± 95% CI"  # the ± of every table is the half-width of a 95 % t CI


def display(summary: Summary, *, compact: bool = False) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the summary table as people read it, best group first.

    One column per grouping setting (its short label), then the final accuracy and its
    comparison, then the summaries the metrics declare for the tables (jobs.metric_catalogue).
    Compact, for the terminal: short headers, CIs on a second line, the CI of the final accuracy
    only, the summaries shown in the terminal only (the report and the files have everything).
    """
    sep = "\n" if compact else " "
    keys = summary.keys or ["group"]
    shown = shown_summaries(compact=compact)
    if compact:
        headers = [*keys, "seeds", "final acc\n± 95% CI", "Δ vs baseline", "p", "p Holm",
                   *(s.header for s in shown), f"epochs\nto {summary.threshold:g}", "not done"]
    else:
        headers = [*keys, "seeds", CI_HEADER, "IQM [95% CI]", "Δ acc vs baseline [95% CI]",
                   "p", "p (Holm)", *(s.header for s in shown),
                   f"epochs to {summary.threshold:g}", "not done"]
    cells = []
    for row in summary.rows:
        names = [summary.labels.value(key, row[key]) for key in summary.keys] or [row["group"]]
        measures = [mean_text(row, s.name, s.digits) if compact else mean_ci(row, s.name, s.digits)
                    for s in shown]
        robust = [] if compact else [iqm_text(row)]
        cells.append([
            *names, runs_text(row), mean_ci(row, "final_test_acc", 4, sep), *robust,
            diff_text(row, summary, sep), p_text(row["p_value"]),
            p_text(row["p_holm"], mark=True), *measures,
            threshold_text(row), problems_text(row, "\n" if compact else ", "),
        ])
    return headers, cells


def shown_summaries(*, compact: bool) -> list[metric_catalogue.Summary]:
    """The declared summaries the table shows: in the terminal's (compact) or the report's."""
    wanted = (metric_catalogue.TERMINAL,) if compact else (metric_catalogue.TERMINAL,
                                                            metric_catalogue.REPORT)
    return [summary for _, summary in metric_catalogue.summaries() if summary.shown in wanted]


def comparison_cells(summary: Summary) -> tuple[list[str], list[list[str]]]:
    """The comparison with the baseline, one row per compared group, best first."""
    headers = ["group", "baseline", "test", "Δ final acc [95% CI]", "p", "p (Holm)",
               "P(group > baseline) [95% CI]", "note"]
    labels = {group.name: group.label for group in summary.groups}
    cells = []
    for row in summary.rows:
        if row["baseline"] is None:
            continue
        test = (row["test"] or "none") + (f" ({row['pairs']} pairs)" if row["pairs"] else "")
        cells.append([row["label"], labels[row["baseline"]], test, diff_text(row, summary),
                      p_text(row["p_value"]), p_text(row["p_holm"], mark=True),
                      improvement_text(row), row["test_note"] or ""])
    return headers, cells


def to_markdown(summary: Summary) -> str:
    headers, cells = display(summary)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


# Terminal columns after the grouping settings, most important first: on a narrow terminal the
# ones that do not fit are left out (report.md and the files have them all); the declared
# summaries the terminal shows come after these, in catalogue order.
TERMINAL_PRIORITY = ("final acc", "Δ vs baseline", "p Holm", "seeds", "not done", "p", "epochs")
MAX_KEY_WIDTH = 60  # a longer label folds onto several lines


def _width(texts: list[str]) -> int:
    return max(len(line) for text in texts for line in text.splitlines() or [""])


def rich_table(summary: Summary, title: str, width: int = 200) -> Any:
    """The compact table, with as many measure columns as fit in `width` characters."""
    from rich import box
    from rich.table import Table

    headers, cells = display(summary, compact=True)
    keys = len(summary.keys or ["group"])
    widths = [_width([h, *(row[i] for row in cells)]) for i, h in enumerate(headers)]
    # each column takes its width + 2 padding + 1 separator; the table edges 2 more
    used = 2 + sum(min(w, MAX_KEY_WIDTH) + 3 for w in widths[:keys])
    shown = set(range(keys))
    hidden = []
    for name in (*TERMINAL_PRIORITY, *(s.header for s in shown_summaries(compact=True))):
        if summary.baseline is None and name in ("Δ vs baseline", "p", "p Holm"):
            continue  # all empty: the notes say why there is no comparison
        index = next(i for i, h in enumerate(headers) if h.split("\n")[0] == name)
        if used + widths[index] + 3 <= width:
            shown.add(index)
            used += widths[index] + 3
        else:
            hidden.append(headers[index].replace("\n", " "))
    caption = (f"not shown for lack of width: {', '.join(hidden)} (see summary/report.md)"
               if hidden else None)
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  caption=caption, caption_justify="left")
    for index in sorted(shown):
        is_key = index < keys
        table.add_column(headers[index], overflow="fold", justify="left" if is_key else "right",
                         style="bold" if is_key else None, no_wrap=not is_key,
                         max_width=MAX_KEY_WIDTH if is_key else None)
    for row in cells:
        table.add_row(*(row[i] for i in sorted(shown)))
    return table
