"""A comparison grid's answer (a `compare:` section) as `tvo aggregate` reports it, answer
first: the verdict per method, the selection (its ties and how they were broken), the final
seeds' comparison, the tuning stage, and the tuning curves, computed by the report's own
functions (runner.report.pipeline.scope, runner.report.summary, runner.report.selection) and
sent as the tables the report prints."""

from __future__ import annotations

from typing import Any

from runner.report.load import GridData
from runner.ui.metrics import plain

THRESHOLD = 0.9  # `tvo aggregate`'s default; the comparison does not depend on it


def comparison(data: GridData) -> dict[str, Any] | None:
    """The comparison of a grid, or None when it has no `compare:` section."""
    from runner.report.baseline import DEFAULT_BASELINE
    from runner.report.pipeline import scope
    from runner.report.selection import (
        answer_cells,
        build,
        curve_cells,
        selection_cells,
        tuning_cells,
        tuning_curves,
    )
    from runner.report.summary import compare_groups, describe, group_jobs, measure

    covered = scope(data)
    stages = covered.stages
    if stages is None:
        return None
    keys, groups, labels = group_jobs(covered.jobs, None, covered.default_keys)
    grouping = measure(data, keys, groups, labels, threshold=THRESHOLD)
    summary = describe(grouping, threshold=THRESHOLD, baseline=None,
                       default_baseline=covered.default_baseline or DEFAULT_BASELINE,
                       method_settings=covered.method_settings)
    summary = compare_groups(summary, grouping.measures)
    report = build(stages, summary, data.jobs, tuning_curves(stages))
    compare = report.compare
    tables = [("Selection", selection_cells(report)),
              ("Final seeds against the baseline", answer_cells(report, summary)),
              ("Tuning curves at a few budgets", curve_cells(report)),
              ("Tuning stage (never ranked on test)", tuning_cells(report))]
    return {"by": compare.by, "select": compare.select, "budget": compare.budget,
            "final_seeds": list(compare.final_seeds),
            "tune": {key: str(space) for key, space in compare.tune.items()},
            "verdicts": report.verdicts, "notes": report.notes,
            "tables": [{"title": title, "headers": headers, "rows": rows}
                       for title, (headers, rows) in tables],
            "curves": [{"method": label, "budgets": curve.budgets,
                        "expected": plain(curve.expected), "lower": plain(curve.lower),
                        "upper": plain(curve.upper), "band": curve.method}
                       for label, curve in report.curves]}
