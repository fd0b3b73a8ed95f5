"""The summary as a LaTeX booktabs table, ready for \\input (needs \\usepackage{booktabs}).

Rows are ordered by facet (the settings other than the compared one), then by the compared
value in grid order, with a \\midrule between facets. Per facet, the best value of each column
is bold (highest accuracy, lowest NLL and ECE). The final accuracy carries Holm-corrected
significance marks against the baseline.
"""

from __future__ import annotations

import math
from typing import Any

from runner.report.formats import NOT_APPLICABLE
from runner.report.labels import format_value
from runner.report.tables import Summary

SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
           "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
           "^": r"\textasciicircum{}"}
MARKS = ((0.001, "***"), (0.01, "**"), (0.05, "*"))  # Holm-corrected p below -> mark
# column: (header, measure, digits, higher is better)
COLUMNS = (("final acc.", "final_test_acc", 4, True), ("NLL", "test_nll", 3, False),
           ("ECE", "ece", 3, False))


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
    values = [r[f"{measure}_mean"] for r in rows if not math.isnan(r[f"{measure}_mean"])]
    if not values:
        return math.nan
    return max(values) if higher else min(values)


def _p_text(p_holm: float) -> str:
    if p_holm is None or math.isnan(p_holm):
        return "--"
    return "$<$0.001" if p_holm < 0.001 else f"{p_holm:.3f}"


def to_latex(summary: Summary, *, grid: str, command: str) -> str:
    labels = summary.labels
    keys = [k for k in (labels.hue, *labels.facets) if k] or ["group"]
    pairs = list(zip(summary.rows, summary.groups, strict=True))
    hue_rank = {hue: i for i, hue in enumerate(labels.hue_order)}
    facet_rank = {facet: i for i, facet in enumerate(labels.facet_order)}
    pairs.sort(key=lambda p: (facet_rank.get(labels.facet_label(p[1].key), 0),
                              hue_rank.get(labels.hue_label(p[1].key), 0)))
    comparing = summary.baseline is not None
    headers = [escape(k) for k in keys] + ["seeds"] + [h for h, *_ in COLUMNS[:1]]
    if comparing:
        headers += [r"$\Delta$ acc.", r"$p$ (Holm)"]
    headers += [h for h, *_ in COLUMNS[1:]]
    lines = [
        f"% tvo aggregate: grid {grid}; made by {command}",
        "% mean $\\pm$ half-width of the 95 % CI over seeds; bold: best of each column within "
        "its block of equal settings",
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
        for header, measure, digits, higher in COLUMNS:
            text = _mean_ci(row, measure, digits)
            if row[f"{measure}_mean"] == _best(block, measure, higher):
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
        out += [cells[h] for h, *_ in COLUMNS[1:]]
        lines.append(" & ".join(out) + r" \\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"
