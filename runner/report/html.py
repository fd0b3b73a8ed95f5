"""summary/report.html: the report with interactive charts and sortable tables, in one file.

plotly.js is embedded (read from the plotly package, about 4.8 MB), so the page opens offline
and fetches nothing. Every chart zooms (drag; double-click resets) and toggles groups from its
legend; every table sorts by a click on a column header. The text is that of report.md.
"""

from __future__ import annotations

import html
import importlib.util
import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runner.report.definitions import METRICS, statistics_text
from runner.report.formats import comparison_cells, display
from runner.report.load import GridData
from runner.report.markdown import jobs_line
from runner.report.model import PlotData
from runner.report.tables import Summary

MAX_TARGET_PANELS = 12  # as targets.png: the best groups whose targets move

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em;
       color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.6em; text-align: right;
         white-space: nowrap; }
.scroll { overflow-x: auto; } td.name, th.name { text-align: left; }
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
    """A sortable table; its first `names` columns are names (left-aligned), the rest numbers."""
    def kind(index: int) -> str:
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
    from runner.report.plots import CALIBRATION_TITLE, final_eces

    if not plot_data.groups:
        return {}
    curves = plot_data.curves
    made = {
        "test_acc": chart.curves_chart(curves["test_acc"], summary.labels,
                                       "Test accuracy over epochs (mean over seeds, 95 % CI)",
                                       "test accuracy"),
        "train_loss": chart.curves_chart(curves["train_loss"], summary.labels,
                                         "Training loss over epochs (mean over seeds, 95 % CI)",
                                         "training loss"),
        "final_acc": chart.dots_chart(summary, "final_test_acc", "Final test accuracy (mean over "
                                      "seeds, 95 % CI)", "final test accuracy"),
    }
    if plot_data.reliability:
        made["calibration"] = chart.reliability_chart(
            plot_data.reliability, summary.labels, final_eces(summary), CALIBRATION_TITLE)
    if plot_data.trajectories:
        made["targets"] = chart.targets_chart(plot_data.trajectories[:MAX_TARGET_PANELS])
    return made


def render(data: GridData, summary: Summary, *, command: str,
           specs: dict[str, dict[str, Any]], notes: Sequence[str]) -> str:
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = f"Results of grid {data.name}"
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Made by <code>{html.escape(command)}</code> on {made}, from "
        f"<code>{html.escape(str(data.grid_dir))}</code>. {html.escape(jobs_line(data))}. "
        "Click a column header to sort; drag on a chart to zoom (double-click resets); click a "
        "legend entry to hide or show a group.</p>",
        "<h2>Results</h2>",
        _table(*display(summary), "results", names=max(1, len(summary.keys))),
        "<h2>Comparison with the baseline</h2>",
    ]
    if summary.baseline is None:
        parts.append(f'<p class="note">{html.escape(summary.baseline_note)}</p>')
    else:
        parts.append(_table(*comparison_cells(summary), "comparison", names=3))
        if summary.baseline_note:
            parts.append(f'<p class="note">{html.escape(summary.baseline_note)}</p>')
    parts.append("<h2>Charts</h2>")
    parts += [_chart(name, spec) for name, spec in specs.items()]
    if not specs:
        parts.append('<p class="note">Charts were not made this time (--no-plots).</p>')
    parts += [f'<p class="note">{html.escape(note)}</p>' for note in notes]
    parts += ["<h2>Groups</h2>",
              _table(["label", "settings in full"],
                     [[g.label, g.name] for g in summary.groups], "groups", names=2),
              "<h2>Definitions</h2><ul>",
              *[f"<li><b>{html.escape(name)}</b>: {html.escape(text)}</li>"
                for name, text in METRICS],
              "</ul><h2>Statistics</h2><ul>",
              *[f"<li>{html.escape(text)}</li>" for text in statistics_text(summary)], "</ul>"]
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style>"
            f"<script>{plotly_js()}</script></head><body>{''.join(parts)}"
            f"<script>{SORT_SCRIPT}</script></body></html>\n")
