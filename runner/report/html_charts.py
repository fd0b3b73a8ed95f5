"""The interactive charts of report.html as plotly.js figure specs (plain dicts).

The specs are written directly, not through plotly's Python figure classes: those validate every
attribute of every trace, about 10 ms a trace, which at 40 groups costs more than the whole
aggregation. tests/test_aggregate_html.py feeds each spec to plotly.graph_objects.Figure, which
rejects any attribute plotly.js does not know. Colours and dashes are those of the PNG figures
(styles), and a strategy's traces in every facet share one legend entry (legendgroup), so one
click on the legend shows or hides it everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from runner.report.labels import Labels
from runner.report.model import Curve, Reliability, Summary, Trajectory
from runner.report.styles import COLORS, styles

MAX_COLUMNS = 3
PANEL_HEIGHT = 300  # pixels per row of facets
SIGNIFICANT_DIGITS = 6  # numbers in the page: enough for any plot, a third of the bytes


def _numbers(values: np.ndarray) -> list[float | None]:
    """Numbers to SIGNIFICANT_DIGITS (vectorised: 40 curves of 1,000 epochs), NaN as null."""
    values = np.asarray(values, dtype=float)
    with np.errstate(all="ignore"):
        magnitude = np.floor(np.log10(np.abs(values)))
        scale = 10.0 ** (SIGNIFICANT_DIGITS - 1 - np.where(np.isfinite(magnitude), magnitude, 0))
        rounded = np.round(values * scale) / scale
    return [None if math.isnan(v) else v for v in rounded.tolist()]


def _axis_name(kind: str, index: int) -> str:
    return kind if index == 0 else f"{kind}{index + 1}"


def _facet_layout(facets: Sequence[str], title: str, xlabel: str, ylabel: str,
                  max_columns: int = MAX_COLUMNS) -> dict[str, Any]:
    columns = min(max_columns, len(facets))
    rows = math.ceil(len(facets) / columns)
    layout: dict[str, Any] = {
        "title": {"text": title}, "height": 120 + PANEL_HEIGHT * rows,
        "grid": {"rows": rows, "columns": columns, "pattern": "independent"},
        # traceorder: filled CI bands would otherwise turn the legend upside down
        "legend": {"groupclick": "togglegroup", "traceorder": "normal"},
        "margin": {"t": 80}, "hovermode": "closest",
    }
    annotations = []
    for index, facet in enumerate(facets):
        layout[_axis_name("xaxis", index)] = {"title": {"text": xlabel}}
        layout[_axis_name("yaxis", index)] = {"title": {"text": ylabel}}
        if facet:
            annotations.append({
                "text": facet, "showarrow": False, "xref": f"{_axis_name('x', index)} domain",
                "yref": f"{_axis_name('y', index)} domain", "x": 0.5, "y": 1.0,
                "xanchor": "center", "yanchor": "bottom", "font": {"size": 12}})
    layout["annotations"] = annotations
    return layout


def curves_chart(curves: Sequence[Curve], labels: Labels, title: str,
                 ylabel: str) -> dict[str, Any]:
    facets = [f for f in labels.facet_order
              if any(labels.facet_label(c.group.key) == f for c in curves)]
    look = styles(labels.hue_order)
    shown: set[str] = set()
    data = []
    for curve in curves:
        hue = labels.hue_label(curve.group.key)
        index = facets.index(labels.facet_label(curve.group.key))
        axes = {"xaxis": _axis_name("x", index), "yaxis": _axis_name("y", index)}
        style = look[hue]
        if np.any(np.isfinite(curve.low)):
            data.append({
                "type": "scatter", "mode": "lines", "legendgroup": hue, "showlegend": False,
                "x": _numbers(np.concatenate([curve.epochs, curve.epochs[::-1]])),
                "y": _numbers(np.concatenate([curve.high, curve.low[::-1]])),
                "fill": "toself", "fillcolor": style.color, "opacity": 0.15,
                "line": {"width": 0}, "hoverinfo": "skip", **axes})
        data.append({
            "type": "scatter", "mode": "lines", "name": hue, "legendgroup": hue,
            "legendrank": labels.hue_order.index(hue) + 1,  # grid order, as in the PNGs
            "showlegend": hue not in shown, "x": _numbers(curve.epochs),
            "y": _numbers(curve.mean), "line": {"color": style.color,
                                                "dash": style.plotly_dash, "width": 2},
            "hovertemplate": f"{curve.group.label}<br>epoch %{{x}}: %{{y:.4f}}<extra></extra>",
            **axes})
        shown.add(hue)
    return {"data": data, "layout": _facet_layout(facets, title, "epoch", ylabel)}


def dots_chart(summary: Summary, measure: str, title: str, xlabel: str) -> dict[str, Any]:
    """Per facet, each group's mean and 95 % CI, one row per compared value."""
    labels = summary.labels
    rows = [(row, group) for row, group in zip(summary.rows, summary.groups, strict=True)
            if not math.isnan(row[f"{measure}_mean"])]
    facets = [f for f in labels.facet_order
              if any(labels.facet_label(g.key) == f for _, g in rows)]
    look = styles(labels.hue_order)
    hues = [h for h in labels.hue_order if any(labels.hue_label(g.key) == h for _, g in rows)]
    shown: set[str] = set()
    data = []
    for row, group in rows:
        hue = labels.hue_label(group.key)
        index = facets.index(labels.facet_label(group.key))
        mean, low, high = (row[f"{measure}_{s}"] for s in ("mean", "ci_low", "ci_high"))
        error = ({"type": "data", "symmetric": False, "array": [high - mean],
                  "arrayminus": [mean - low]} if math.isfinite(low) else {"visible": False})
        data.append({
            "type": "scatter", "mode": "markers", "name": hue, "legendgroup": hue,
            "legendrank": labels.hue_order.index(hue) + 1, "showlegend": hue not in shown,
            "x": [mean], "y": [hue], "error_x": error,
            "marker": {"color": look[hue].color, "symbol": look[hue].plotly_marker, "size": 9},
            "hovertemplate": f"{group.label}<br>{xlabel}: %{{x:.4f}}<extra></extra>",
            "xaxis": _axis_name("x", index), "yaxis": _axis_name("y", index)})
        shown.add(hue)
    # one facet per row: the group names need the width
    layout = _facet_layout(facets, title, xlabel, "", max_columns=1)
    layout["height"] = 120 + (100 + 24 * len(hues)) * len(facets)
    layout["grid"]["ygap"] = 0.4  # room for a panel's axis title above the next one's title
    for index in range(len(facets)):
        layout[_axis_name("yaxis", index)].update(
            {"type": "category", "categoryorder": "array", "categoryarray": hues,
             "autorange": "reversed", "automargin": True})
    return {"data": data, "layout": layout}


def targets_chart(trajectories: Sequence[Trajectory]) -> dict[str, Any]:
    """One panel per group: c_i (solid) and nc_i (dashed) of each class, a legend per class."""
    titles = [t.group.label for t in trajectories]
    data = []
    for index, trajectory in enumerate(trajectories):
        axes = {"xaxis": _axis_name("x", index), "yaxis": _axis_name("y", index)}
        for i in range(trajectory.target_class.shape[1]):
            color = COLORS[i % len(COLORS)]
            for values, dash, kind in ((trajectory.target_class, "solid", "c"),
                                       (trajectory.target_nonclass, "dash", "nc")):
                data.append({
                    "type": "scatter", "mode": "lines", "name": f"class {i}",
                    "legendgroup": f"class {i}", "showlegend": index == 0 and kind == "c",
                    "x": _numbers(trajectory.epochs), "y": _numbers(values[:, i]),
                    "line": {"color": color, "dash": dash},
                    "hovertemplate": f"{kind}_{i}, epoch %{{x}}: %{{y:.4f}}<extra></extra>",
                    **axes})
    title = "Targets per class over epochs: c_i solid, nc_i dashed (mean over seeds)"
    return {"data": data, "layout": _facet_layout(titles, title, "epoch", "target value")}


def reliability_chart(reliabilities: Sequence[Reliability], labels: Labels,
                      eces: dict[str, float], title: str) -> dict[str, Any]:
    """Per facet, each group's accuracy against its confidence in the non-empty bins, and the
    diagonal (perfect calibration); hovering a point shows its bin's count and the group's ECE."""
    facets = [f for f in labels.facet_order
              if any(labels.facet_label(r.group.key) == f for r in reliabilities)]
    look = styles(labels.hue_order)
    data: list[dict[str, Any]] = [{
        "type": "scatter", "mode": "lines", "x": [0, 1], "y": [0, 1], "showlegend": False,
        "line": {"color": "#888888", "dash": "dot", "width": 1}, "hoverinfo": "skip",
        "xaxis": _axis_name("x", index), "yaxis": _axis_name("y", index)}
        for index in range(len(facets))]
    shown: set[str] = set()
    ordered = sorted(reliabilities, key=lambda r: labels.hue_order.index(
        labels.hue_label(r.group.key)))
    for reliability in ordered:
        hue = labels.hue_label(reliability.group.key)
        index = facets.index(labels.facet_label(reliability.group.key))
        style = look[hue]
        drawn = reliability.count > 0  # empty bins are not drawn
        ece = eces.get(reliability.group.name, math.nan)
        data.append({
            "type": "scatter", "mode": "lines+markers", "name": hue, "legendgroup": hue,
            "legendrank": labels.hue_order.index(hue) + 1, "showlegend": hue not in shown,
            "x": _numbers(reliability.confidence[drawn]),
            "y": _numbers(reliability.accuracy[drawn]),
            "customdata": _numbers(reliability.count[drawn]),
            "line": {"color": style.color, "dash": style.plotly_dash, "width": 2},
            "marker": {"color": style.color, "symbol": style.plotly_marker, "size": 6},
            "hovertemplate": f"{reliability.group.label} (ECE {ece:.3f})<br>confidence %{{x:.3f}}"
                             ", accuracy %{y:.3f}, n = %{customdata}<extra></extra>",
            "xaxis": _axis_name("x", index), "yaxis": _axis_name("y", index)})
        shown.add(hue)
    layout = _facet_layout(facets, title, "confidence", "accuracy")
    for index in range(len(facets)):
        for kind in ("xaxis", "yaxis"):
            layout[_axis_name(kind, index)]["range"] = [-0.02, 1.02]
    return {"data": data, "layout": layout}
