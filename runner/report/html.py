"""summary/report.html: the report with interactive charts and sortable tables, in one file.

plotly.js is embedded (read from the plotly package, about 4.8 MB), so the page opens offline
and fetches nothing. Every chart zooms (drag; double-click resets) and toggles groups from its
legend; every table sorts by a click on a column header. The text is that of report.md.
"""

from __future__ import annotations

import html
import importlib.util
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runner.report.contents import Contents
from runner.report.document import Block, Figure, Heading, Items, Table, Text, blocks
from runner.report.model import PlotData, Summary

MAX_TARGET_PANELS = 12  # as targets.png: the best groups whose targets move
EMPHASIS = re.compile(r"\*([^*\s][^*]*?)\*")
WORDY_CELL = 60  # characters: a column with a longer cell is text, wrapped

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em;
       color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.6em; text-align: right;
         white-space: nowrap; }
.scroll { overflow-x: auto; } td.name, th.name { text-align: left; }
td.text, th.text { text-align: left; white-space: normal; min-width: 18em; }
th { cursor: pointer; user-select: none; background: #f5f5f5; position: sticky; top: 0; }
th[data-order=asc]::after { content: " \\25B2"; } th[data-order=desc]::after { content: " \\25BC"; }
.chart { margin: 1em 0 2em; } .note { color: #555; } code { font-size: 0.9em; }
"""

# Sorts a table by the clicked column: numbers ("0.96 ± 0.01", "+0.04 [...]", "<0.001 *") by
# their leading value, anything else as text; a second click reverses.
SORT_SCRIPT = """
function sortValue(text) {
  const number = parseFloat(text.replace(/^[<>+]/, ""));
  return isNaN(number) ? null : number;
}
document.querySelectorAll("table.sortable").forEach(table => {
  table.querySelectorAll("thead th").forEach((header, column) => {
    header.addEventListener("click", () => {
      const ascending = header.dataset.order !== "asc";
      table.querySelectorAll("thead th").forEach(other => delete other.dataset.order);
      header.dataset.order = ascending ? "asc" : "desc";
      const body = table.tBodies[0];
      const cell = row => row.cells[column].textContent.trim();
      const rows = Array.from(body.rows).sort((a, b) => {
        const x = sortValue(cell(a)), y = sortValue(cell(b));
        let order;
        if (x !== null && y !== null) order = x - y;
        else if (x !== null || y !== null) order = x !== null ? -1 : 1;
        else order = cell(a).localeCompare(cell(b));
        return ascending ? order : -order;
      });
      rows.forEach(row => body.appendChild(row));
    });
  });
});
"""


def plotly_js() -> str:
    """plotly.js as the installed plotly package ships it (found without importing plotly)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("plotly is not installed; pip install plotly")
    folder = Path(next(iter(spec.submodule_search_locations)))
    return (folder / "package_data" / "plotly.min.js").read_text(encoding="utf-8")


def _table(headers: Sequence[str], cells: Sequence[Sequence[str]], table_id: str,
           names: int = 1) -> str:
    """A sortable table; its first `names` columns are names (left-aligned), the rest numbers,
    but for columns of sentences (left-aligned and wrapped)."""
    wordy = {i for i in range(len(headers))
             if any(len(row[i]) > WORDY_CELL for row in cells if i < len(row))}

    def kind(index: int) -> str:
        if index in wordy:
            return ' class="text"'
        return ' class="name"' if index < names else ""

    head = "".join(f"<th{kind(i)}>{html.escape(h)}</th>" for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td{kind(i)}>{html.escape(c)}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in cells)
    return (f'<div class="scroll"><table class="sortable" id="{table_id}"><thead><tr>{head}'
            f"</tr></thead><tbody>{body}</tbody></table></div>")


def _chart(name: str, spec: dict[str, Any]) -> str:
    # "</" inside a script would end it early; "<\/" means the same to JavaScript
    data = json.dumps(spec, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return (f'<div class="chart" id="chart-{name}"></div><script>(function () {{'
            f"const spec = {data}; Plotly.newPlot('chart-{name}', spec.data, spec.layout, "
            "{responsive: true, displaylogo: false});})();</script>")


def charts(summary: Summary, plot_data: PlotData) -> dict[str, dict[str, Any]]:
    """Chart name -> plotly.js spec, the same set of charts as the PNG figures."""
    from runner.report import html_charts as chart
    from runner.report.plots import CALIBRATION_TITLE, FINAL_TITLE, curve_figures, final_eces

    made: dict[str, dict[str, Any]] = {}
    if plot_data.tuning:
        made["tuning_curves"] = chart.tuning_chart(plot_data.tuning, summary.labels,
                                                   plot_data.tuning_metric)
    if plot_data.groups:
        for name, (ylabel, title) in curve_figures().items():
            made[name] = chart.curves_chart(plot_data.curves[name], summary.labels, title, ylabel)
    if plot_data.trajectories:
        made["targets"] = chart.targets_chart(plot_data.trajectories[:MAX_TARGET_PANELS])
    if plot_data.groups:
        made["final_acc"] = chart.dots_chart(summary, "final_test_acc", FINAL_TITLE,
                                             "final test accuracy")
    if plot_data.reliability:
        made["calibration"] = chart.reliability_chart(
            plot_data.reliability, summary.labels, final_eces(summary), CALIBRATION_TITLE)
    if plot_data.profiles:
        made["performance_profile"] = chart.profile_chart(plot_data.profiles, summary.labels,
                                                          plot_data.profile_tasks)
    return made


def _items(block: Items) -> str:
    return "<ul>" + "".join(
        f"<li><b>{html.escape(lead)}</b>: {_inline(text)}</li>" if lead
        else f"<li>{_inline(text)}</li>" for lead, text in block.items) + "</ul>"


def _inline(text: str) -> str:
    """Text with markdown's `code` spans as <code> and *emphasis* as <em>."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{part}</code>" if i % 2 else EMPHASIS.sub(r"<em>\1</em>", part)
                   for i, part in enumerate(parts))


def _block(block: Block, specs: dict[str, dict[str, Any]]) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{html.escape(block.text)}</h{block.level}>"
    if isinstance(block, Text):
        kind = ' class="note"' if block.note else ""
        return f"<p{kind}>{_inline(block.text)}</p>"
    if isinstance(block, Table):
        return _table(block.headers, block.cells, block.table_id, block.names)
    if isinstance(block, Figure):
        if block.name not in specs:
            return ""
        return _chart(block.name, specs[block.name])
    assert isinstance(block, Items)
    return _items(block)


def render(contents: Contents, specs: dict[str, dict[str, Any]]) -> str:
    """The report's blocks as one page: charts from `specs` (chart name -> plotly spec)."""
    parts = []
    for block in blocks(contents):
        parts.append(_block(block, specs))
        if isinstance(block, Heading) and block.level == 1:
            parts.append("<p>Click a column header to sort; drag on a chart to zoom "
                         "(double-click resets); click a legend entry to hide or show a group."
                         "</p>")
    title = contents.title
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style>"
            f"<script>{plotly_js()}</script></head><body>{''.join(parts)}"
            f"<script>{SORT_SCRIPT}</script></body></html>\n")
