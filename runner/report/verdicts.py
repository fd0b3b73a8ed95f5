"""One sentence per method, in the words a paper would use: its final test accuracy with a CI,
and against the baseline the difference in points with its CI, Holm's p and the probability of
improvement, then what that allows one to say at the 5 % level (and nothing more)."""

from __future__ import annotations

import math
from typing import Any

from runner.report.model import Summary
from runner.report.stats import significant

LEVEL = 0.05


def _points(value: float) -> str:
    """A difference in accuracy as percentage points, `+0.83`."""
    return f"{100 * value:+.2f}"


def _accuracy(row: dict[str, Any]) -> str:
    mean, low, high = (row[f"final_test_acc_{s}"] for s in ("mean", "ci_low", "ci_high"))
    seeds = f"{row['seeds']} seed{'s' if row['seeds'] != 1 else ''}"
    if math.isnan(low):
        return f"{mean:.3f} final test accuracy ({seeds}, no interval)"
    return f"{mean:.3f} final test accuracy (95 % CI [{low:.3f}, {high:.3f}], {seeds})"


def verdict(row: dict[str, Any], summary: Summary, rows: dict[str, dict[str, Any]]) -> str:
    """The sentence for one group of `summary` (`rows`: every row by group name)."""
    name = row["label"]
    baseline = rows.get(row["baseline"] or "")
    if baseline is None:
        role = ("the baseline" if summary.baseline is not None
                and row.get(summary.baseline[0]) == summary.baseline[1] else "not compared")
        return f"{name} ({role}) reaches {_accuracy(row)}."
    other = baseline["label"]
    if row["test"] is None:
        reason = row["test_note"] or "no test could be made"
        return f"{name} reaches {_accuracy(row)}; against {other}: {reason}."
    diff, low, high = row["diff_final_test_acc"], row["diff_ci_low"], row["diff_ci_high"]
    interval = "" if math.isnan(low) else f", 95 % CI [{_points(low)}, {_points(high)}]"
    improvement = ""
    if not math.isnan(row["p_improvement"]):
        bounds = ("" if math.isnan(row["p_improvement_low"]) else
                  f" [{row['p_improvement_low']:.2f}, {row['p_improvement_high']:.2f}]")
        improvement = f"; P({name} > {other}) = {row['p_improvement']:.2f}{bounds}"
    holm = row["p_holm"]
    evidence = (f"{_points(diff)} points against {other}{interval}; Holm-adjusted p = "
                f"{'<0.001' if holm < 0.001 else f'{holm:.3f}'}{improvement}"
                if not math.isnan(holm) else f"{_points(diff)} points against {other}{interval}"
                "; no p-value (too few runs)")
    decided = significant(holm, LEVEL)
    if decided is None:
        conclusion = "no conclusion can be drawn"
    elif decided:
        conclusion = (f"significantly {'better' if diff > 0 else 'worse'} than {other} at the "
                      f"{LEVEL * 100:g} % level")
    else:
        conclusion = f"not significantly different from {other} at the {LEVEL * 100:g} % level"
    return f"{name} reaches {_accuracy(row)}, {evidence}: {conclusion}."
