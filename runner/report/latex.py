"""The summary as LaTeX booktabs tables, ready for \\input (needs \\usepackage{booktabs}).

A comparison grid's file leads with its answer: the selection (selected configuration,
validation score, ties) and the final seeds' comparison (CIs, Holm-adjusted p, probability of
improvement), then the table of results. In the results, rows are ordered by facet (the
settings other than the compared one), then by the compared value in grid order, with a
\\midrule between facets. Per facet, the best value of each column among the groups with two
seeds or more is bold (highest accuracy, lowest NLL and ECE): a single run is no result to
single out. The final accuracy carries Holm-corrected significance marks against the baseline.
"""

from __future__ import annotations

import math
import re
from typing import Any

from jobs import metric_catalogue
from runner.report.contents import Contents
from runner.report.formats import NOT_APPLICABLE
from runner.report.labels import format_value
from runner.report.model import Summary

SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
           "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
           "^": r"\textasciicircum{}"}
MARKS = ((0.001, "***"), (0.01, "**"), (0.05, "*"))  # Holm-corrected p below -> mark
MIN_SEEDS_BOLD = 2  # a group of one run is never set in bold


def columns() -> list[tuple[str, str, int, bool]]:
    """(header, measure, digits, higher is better) of each column: the final accuracy, then the
    summaries the metrics declare for LaTeX (jobs.metric_catalogue)."""
    return [("final acc.", "final_test_acc", 4, True)] + [
        (summary.header, summary.name, summary.digits, metric.better != metric_catalogue.LOWER)
        for metric, summary in metric_catalogue.summaries() if summary.latex]


def escape(text: str) -> str:
    """Text with LaTeX's special characters escaped, for labels like label_smoothing(eps=0.1)."""
    return "".join(SPECIAL.get(char, char) for char in text)


def mark(p_holm: float | None) -> str:
    if p_holm is None or math.isnan(p_holm):
        return ""
    return next((stars for level, stars in MARKS if p_holm < level), "")


def _mean_ci(row: dict[str, Any], measure: str, digits: int) -> str:
    mean, low = row[f"{measure}_mean"], row[f"{measure}_ci_low"]
    if math.isnan(mean):
        return NOT_APPLICABLE if row["seeds"] else "--"
    if math.isnan(low):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} $\\pm$ {(row[f'{measure}_ci_high'] - low) / 2:.{digits}f}"


def _best(rows: list[dict[str, Any]], measure: str, higher: bool) -> float:
    values = [r[f"{measure}_mean"] for r in rows
              if not math.isnan(r[f"{measure}_mean"]) and r["seeds"] >= MIN_SEEDS_BOLD]
    if not values:
        return math.nan
    return max(values) if higher else min(values)


def _p_text(p_holm: float) -> str:
    if p_holm is None or math.isnan(p_holm):
        return "--"
    return "$<$0.001" if p_holm < 0.001 else f"{p_holm:.3f}"


def results_table(summary: Summary, *, grid: str, command: str) -> str:
    labels = summary.labels
    keys = [k for k in (labels.hue, *labels.facets) if k] or ["group"]
    pairs = list(zip(summary.rows, summary.groups, strict=True))
    hue_rank = {hue: i for i, hue in enumerate(labels.hue_order)}
    facet_rank = {facet: i for i, facet in enumerate(labels.facet_order)}
    pairs.sort(key=lambda p: (facet_rank.get(labels.facet_label(p[1].key), 0),
                              hue_rank.get(labels.hue_label(p[1].key), 0)))
    comparing = summary.baseline is not None
    shown = columns()
    headers = [escape(k) for k in keys] + ["seeds"] + [h for h, *_ in shown[:1]]
    if comparing:
        headers += [r"$\Delta$ acc.", r"$p$ (Holm)"]
    headers += [escape(h) for h, *_ in shown[1:]]
    lines = [
        f"% tvo aggregate: grid {grid}; made by {command}",
        "% mean $\\pm$ half-width of the 95 % CI over seeds; bold: best of each column within "
        "its block of equal settings (groups of two seeds or more)",
    ]
    if comparing:
        lines.append(f"% Delta and p against {summary.baseline[0]}="
                     f"{format_value(summary.baseline[1])} with otherwise equal settings "
                     "(paired t-test where seeds pair up, else Welch); p Holm-corrected over "
                     "all comparisons; * p < 0.05, ** p < 0.01, *** p < 0.001")
    lines += ["% needs \\usepackage{booktabs}",
              "\\begin{tabular}{" + "l" * len(keys) + "r" * (len(headers) - len(keys)) + "}",
              "\\toprule", " & ".join(headers) + r" \\", "\\midrule"]
    facet = None
    for row, group in pairs:
        this_facet = labels.facet_label(group.key)
        block = [r for r, g in pairs if labels.facet_label(g.key) == this_facet]
        if facet is not None and this_facet != facet:
            lines.append("\\midrule")
        facet = this_facet
        names = ([escape(labels.value(k, row[k])) for k in keys] if summary.keys
                 else [escape(row["group"])])
        cells = {}
        for header, measure, digits, higher in shown:
            text = _mean_ci(row, measure, digits)
            if row["seeds"] >= MIN_SEEDS_BOLD and row[f"{measure}_mean"] == _best(
                    block, measure, higher):
                text = f"\\textbf{{{text}}}"
            cells[header] = text
        stars = mark(row["p_holm"])
        cells["final acc."] += f"$^{{{stars}}}$" if stars else ""
        out = [*names, str(row["seeds"]), cells["final acc."]]
        if comparing:
            is_baseline = row["test"] is None and row.get(summary.baseline[0]) == \
                summary.baseline[1]
            diff = row["diff_final_test_acc"]
            out += ["baseline" if is_baseline else
                    ("--" if math.isnan(diff) else f"{diff:+.4f}"),
                    "" if is_baseline else _p_text(row["p_holm"])]
        out += [cells[h] for h, *_ in shown[1:]]
        lines.append(" & ".join(out) + r" \\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


TEXT_SYMBOLS = {"Δ": r"$\Delta$", "<": "$<$", ">": "$>$", "—": "--", "±": r"$\pm$"}
MINUS = re.compile(r"(?<![\w.])-(?=\d)")  # a negative number's sign, not a hyphen
WORDY = 40  # characters: a column with a longer cell is set as a paragraph column
PARAGRAPH = "p{7cm}"


def _text(text: str) -> str:
    """A table cell of the shared tables (selection): escaped, its symbols as LaTeX writes them."""
    escaped = "".join(TEXT_SYMBOLS.get(char, char) for char in escape(text))
    return MINUS.sub("$-$", escaped)


def _tabular(headers: list[str], cells: list[list[str]], names: int, comment: str) -> list[str]:
    def kind(index: int) -> str:
        if any(len(row[index]) > WORDY for row in cells):
            return PARAGRAPH
        return "l" if index < names else "r"

    spec = "".join(kind(index) for index in range(len(headers)))
    return [f"% {comment}", "\\begin{tabular}{" + spec + "}", "\\toprule",
            " & ".join(_text(h) for h in headers) + r" \\", "\\midrule",
            *(" & ".join(_text(c) for c in row) + r" \\" for row in cells),
            "\\bottomrule", "\\end{tabular}", ""]


def to_latex(contents: Contents) -> str:
    """summary.tex: a comparison grid's selection and final comparison, then the results."""
    results = results_table(contents.summary, grid=contents.data.name, command=contents.command)
    protocol = contents.protocol
    if protocol is None:
        return results
    from runner.report.selection import answer_cells, selection_cells

    lines = [f"% tvo aggregate: grid {contents.data.name}; made by {contents.command}",
             "% needs \\usepackage{booktabs}; three tables: selection, final comparison, results",
             ""]
    headers, cells = selection_cells(protocol)
    lines += _tabular(headers, cells, 2, "selection on validation (stage 1), ties and how they "
                      "were broken")
    headers, cells = answer_cells(protocol, contents.summary)
    lines += _tabular(headers, cells, 1, "final seeds (stage 2): mean [95 % t CI], IQM [95 % "
                      "bootstrap CI], paired t-test against the baseline, Holm-adjusted p "
                      "(* < 0.05), P(method > baseline) [95 % CI]")
    return "\n".join(lines) + results
