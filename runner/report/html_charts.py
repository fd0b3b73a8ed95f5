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
from runner.report.model import Curve, ProfileCurve, Reliability, Summary, Trajectory, TuningPanel
from runner.report.styles import class_colors, styles

MAX_COLUMNS = 3
PANEL_HEIGHT = 300  # pixels per row of facets
TITLE_CHARACTERS = 120  # characters of panel titles across the page (wrapped per column)
ECE_LABEL_GAP = 0.065  # accuracy units between two ECE labels of a panel (about 16 pixels)
ECE_LABEL_X, ECE_ROOM = 1.1, 1.32  # confidence units: where ECE labels start, the axis end
TICKS = [0, 0.2, 0.4, 0.6, 0.8, 1]
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


def _wrapped(text: str, width: int) -> str:
    """Text broken into lines of at most `width` characters (plotly's <br>)."""
    import textwrap

    return "<br>".join(textwrap.wrap(text, width)) or text


def _facet_layout(facets: Sequence[str], title: str, xlabel: str, ylabel: str,
                  max_columns: int = MAX_COLUMNS, *, shared: bool = True) -> dict[str, Any]:
    """Panels in a grid; `shared`: every panel's axes match the first's (values compared).
    Panel titles are wrapped to their column and the rows spaced for them."""
    columns = 2 if len(facets) == 4 and max_columns >= 2 else min(max_columns, len(facets))
    rows = math.ceil(len(facets) / columns)
    width = TITLE_CHARACTERS // columns
    titles = [_wrapped(facet, width) for facet in facets]
    lines = max((title.count("<br>") + 1 for title in titles if title), default=0)
    layout: dict[str, Any] = {
        "title": {"text": title}, "height": 120 + (PANEL_HEIGHT + 16 * lines) * rows,
        "grid": {"rows": rows, "columns": columns, "pattern": "independent",
                 "ygap": min(0.6, 0.25 + 0.08 * lines)},
        # traceorder: filled CI bands would otherwise turn the legend upside down
        "legend": {"groupclick": "togglegroup", "traceorder": "normal"},
        "margin": {"t": 80}, "hovermode": "closest",
    }
    annotations = []
    for index, facet in enumerate(titles):
        layout[_axis_name("xaxis", index)] = {"title": {"text": xlabel}}
        layout[_axis_name("yaxis", index)] = {"title": {"text": ylabel}}
        if shared and index:
            layout[_axis_name("xaxis", index)]["matches"] = "x"
            layout[_axis_name("yaxis", index)]["matches"] = "y"
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
            "type": "scatter", "mode": "lines", "name": labels.legend_name(hue),
            "legendgroup": hue,
            "legendrank": labels.hue_order.index(hue) + 1,  # grid order, as in the PNGs
            "showlegend": hue not in shown, "x": _numbers(curve.epochs),
            "y": _numbers(curve.mean), "line": {"color": style.color,
                                                "dash": style.plotly_dash, "width": 2},
            "hovertemplate": f"{curve.group.label}<br>epoch %{{x}}: %{{y:.4f}}<extra></extra>",
            **axes})
        shown.add(hue)
    return {"data": data, "layout": _facet_layout(facets, title, "epoch", ylabel)}


def dots_chart(summary: Summary, measure: str, title: str, xlabel: str) -> dict[str, Any]:
    """Per facet, a panel of a grid with a shared x axis: each group's mean and 95 % CI, one
    row per compared value (one group per identical cluster)."""
    labels = summary.labels
    rows = [(summary.rows[i], summary.groups[i]) for i in summary.drawn()
            if not math.isnan(summary.rows[i][f"{measure}_mean"])]
    facets = [f for f in labels.facet_order
              if any(labels.facet_label(g.key) == f for _, g in rows)]
    look = styles(labels.hue_order)
    hues = [h for h in labels.hue_order if any(labels.hue_label(g.key) == h for _, g in rows)]
    names = {hue: labels.legend_name(hue) for hue in hues}
    shown: set[str] = set()
    data = []
    for row, group in rows:
        hue = labels.hue_label(group.key)
        index = facets.index(labels.facet_label(group.key))
        mean, low, high = (row[f"{measure}_{s}"] for s in ("mean", "ci_low", "ci_high"))
        error = ({"type": "data", "symmetric": False, "array": [min(high, 1.0) - mean],
                  "arrayminus": [mean - max(low, 0.0)]} if math.isfinite(low)
                 else {"visible": False})
        data.append({
            "type": "scatter", "mode": "markers", "name": names[hue], "legendgroup": hue,
            "legendrank": labels.hue_order.index(hue) + 1, "showlegend": hue not in shown,
            "x": [mean], "y": [names[hue]], "error_x": error,
            "marker": {"color": look[hue].color, "symbol": look[hue].plotly_marker, "size": 9},
            "hovertemplate": f"{group.label}<br>{xlabel}: %{{x:.4f}}<extra></extra>",
            "xaxis": _axis_name("x", index), "yaxis": _axis_name("y", index)})
        shown.add(hue)
    layout = _facet_layout(facets, title, xlabel, "")
    columns = layout["grid"]["columns"]
    layout["height"] = 160 + (100 + 24 * len(hues)) * layout["grid"]["rows"]
    for index in range(len(facets)):
        layout[_axis_name("yaxis", index)].update(
            {"type": "category", "categoryorder": "array",
             "categoryarray": [names[h] for h in hues], "autorange": "reversed",
             "automargin": True, "showticklabels": index % columns == 0})
    return {"data": data, "layout": layout}


def targets_chart(trajectories: Sequence[Trajectory]) -> dict[str, Any]:
    """One panel per group: the class value (solid) and non-class value (dashed) of each class
    as trained on, a legend per class."""
    titles = [t.group.label + ("" if t.trained_on else " (raw c_i, nc_i)")
              for t in trajectories]
    data = []
    colors = class_colors(trajectories[0].target_class.shape[1]) if trajectories else []
    for index, trajectory in enumerate(trajectories):
        axes = {"xaxis": _axis_name("x", index), "yaxis": _axis_name("y", index)}
        for i, color in enumerate(colors):
            for values, dash, kind in ((trajectory.target_class, "solid", "class value"),
                                       (trajectory.target_nonclass, "dash", "non-class value")):
                data.append({
                    "type": "scatter", "mode": "lines", "name": f"class {i}",
                    "legendgroup": f"class {i}",
                    "showlegend": index == 0 and kind == "class value",
                    "x": _numbers(trajectory.epochs), "y": _numbers(values[:, i]),
                    "line": {"color": color, "dash": dash},
                    "hovertemplate": f"class {i}, {kind}, epoch %{{x}}: %{{y:.4f}}"
                                     "<extra></extra>",
                    **axes})
    title = ("Targets trained on, per class: class value solid, non-class value dashed (mean "
             "over seeds; normalised where the strategy normalises)")
    return {"data": data, "layout": _facet_layout(titles, title, "epoch", "target value")}


def tuning_chart(tuning: Sequence[TuningPanel], labels: Labels, metric: str) -> dict[str, Any]:
    """One panel per method: its expected best score of k configurations and its band; the
    other methods' curves of the same facet in grey."""
    look = styles(list(labels.hue_order) + [p.hue for p in tuning
                                            if p.hue not in labels.hue_order])
    titles = [labels.legend_name(p.hue) + (f"; {p.facet}" if p.facet else "") for p in tuning]
    data = []
    for index, panel in enumerate(tuning):
        axes = {"xaxis": _axis_name("x", index), "yaxis": _axis_name("y", index)}
        for other in tuning:
            if other is not panel and other.facet == panel.facet:
                data.append({"type": "scatter", "mode": "lines", "showlegend": False,
                             "x": _numbers(other.budgets), "y": _numbers(other.expected),
                             "line": {"color": "#b3b3b3", "width": 1},
                             "hovertemplate": f"{other.label}: %{{y:.4f}}<extra></extra>",
                             **axes})
        style = look[panel.hue]
        if np.any(np.isfinite(panel.lower)):
            data.append({"type": "scatter", "mode": "lines", "showlegend": False,
                         "legendgroup": panel.hue, "fill": "toself", "fillcolor": style.color,
                         "opacity": 0.25, "line": {"width": 0}, "hoverinfo": "skip",
                         "x": _numbers(np.concatenate([panel.budgets, panel.budgets[::-1]])),
                         "y": _numbers(np.concatenate([panel.upper, panel.lower[::-1]])),
                         **axes})
        data.append({"type": "scatter", "mode": "lines+markers",
                     "name": labels.legend_name(panel.hue), "legendgroup": panel.hue,
                     "x": _numbers(panel.budgets), "y": _numbers(panel.expected),
                     "line": {"color": style.color, "dash": style.plotly_dash, "width": 2},
                     "marker": {"symbol": style.plotly_marker, "size": 5},
                     "hovertemplate": f"{panel.label}<br>k = %{{x}}: %{{y:.4f}}<extra></extra>",
                     **axes})
    title = (f"Tuning curves: expected best {metric} of k configurations (Dodge et al. 2019), "
             "80 % simultaneous bands (Lourie et al. 2024); grey: the other methods")
    return {"data": data, "layout": _facet_layout(titles, title, "configurations tried (k)",
                                                  f"expected best {metric}")}


def profile_chart(profiles: Sequence[ProfileCurve], labels: Labels, tasks: str) -> dict[str, Any]:
    """Performance profiles: per method the fraction of runs above tau, with its band."""
    look = styles(labels.hue_order)
    data = []
    for profile in profiles:
        style = look[profile.hue]
        if np.any(np.isfinite(profile.low)):
            data.append({"type": "scatter", "mode": "lines", "showlegend": False,
                         "legendgroup": profile.hue, "fill": "toself", "fillcolor": style.color,
                         "opacity": 0.15, "line": {"width": 0}, "hoverinfo": "skip",
                         "x": _numbers(np.concatenate([profile.thresholds,
                                                       profile.thresholds[::-1]])),
                         "y": _numbers(np.concatenate([profile.high, profile.low[::-1]]))})
        data.append({"type": "scatter", "mode": "lines", "name": labels.legend_name(profile.hue),
                     "legendgroup": profile.hue, "x": _numbers(profile.thresholds),
                     "y": _numbers(profile.fraction),
                     "line": {"color": style.color, "dash": style.plotly_dash, "width": 2},
                     "hovertemplate": "tau %{x:.4f}: %{y:.3f}<extra></extra>"})
    title = (f"Performance profiles over {tasks} (tasks weighted equally; 95 % stratified "
             "bootstrap bands)")
    layout = _facet_layout([""], title, "final test accuracy tau", "fraction of runs > tau")
    layout["yaxis"]["range"] = [-0.02, 1.02]
    return {"data": data, "layout": layout}


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
    ends: dict[int, list[tuple[Reliability, str, float]]] = {}  # panel -> its lines' ends
    ordered = sorted(reliabilities, key=lambda r: labels.hue_order.index(
        labels.hue_label(r.group.key)))
    for reliability in ordered:
        hue = labels.hue_label(reliability.group.key)
        index = facets.index(labels.facet_label(reliability.group.key))
        style = look[hue]
        drawn = reliability.count > 0  # empty bins are not drawn
        ece = eces.get(reliability.group.name, math.nan)
        data.append({
            "type": "scatter", "mode": "lines+markers", "name": labels.legend_name(hue),
            "legendgroup": hue,
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
        if np.any(drawn):
            ends.setdefault(index, []).append((reliability, style.color, ece))
    layout = _facet_layout(facets, title, "confidence", "accuracy")
    for index in range(len(facets)):
        # confidence runs to 1; the axis on to ECE_ROOM, where the ECE labels stand
        layout[_axis_name("xaxis", index)].update(range=[-0.02, ECE_ROOM], tickvals=TICKS)
        layout[_axis_name("yaxis", index)].update(range=[-0.02, 1.02], tickvals=TICKS)
    layout["annotations"] += _ece_labels(ends)
    return {"data": data, "layout": layout}


def _ece_labels(ends: dict[int, list[tuple[Reliability, str, float]]]) -> list[dict[str, Any]]:
    """Each line's ECE right of its panel, level with the line's last point and joined to it
    by a leader in its colour (spread so that no two labels overlap)."""
    from runner.report.figure_layout import spread

    labels = []
    for index, lines in ends.items():
        last = [int(np.flatnonzero(r.count > 0)[-1]) for r, _, _ in lines]
        points = [(float(r.confidence[i]), float(r.accuracy[i]))
                  for (r, _, _), i in zip(lines, last, strict=True)]
        places = spread([y for _, y in points], ECE_LABEL_GAP, -0.02, 1.02)
        axes = {"xref": _axis_name("x", index), "yref": _axis_name("y", index),
                "axref": _axis_name("x", index), "ayref": _axis_name("y", index)}
        for (_, color, ece), (x, y), place in zip(lines, points, places, strict=True):
            labels.append({"x": x, "y": y, "ax": ECE_LABEL_X, "ay": place, "text": f"{ece:.3f}",
                           "showarrow": True, "arrowhead": 0, "arrowwidth": 1,
                           "arrowcolor": color, "font": {"color": color, "size": 10},
                           "xanchor": "left", **axes})
    return labels
