"""A comparison grid's answer (a `compare:` section): the selection, the final seeds' test
accuracy against the baseline method with Holm's correction, the tuning curves and a verdict per
method, computed by the functions `tvo aggregate` writes summary/selection.csv and
summary/tuning_curves.csv with (runner.report.selection, runner.report.tuning)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from runner.report.labels import Labels
from runner.ui.metrics import plain

ALPHA = 0.05  # as the report's `*`: a Holm-corrected p below this is significant


def comparison(grid_dir: Path) -> dict[str, Any] | None:
    """The comparison of `grid_dir`, or None when its grid has no `compare:` section."""
    from runner.report.selection import compared_grid, final_results, selection_rows
    from runner.report.tuning import tuning_curve

    grid = compared_grid(grid_dir)
    if grid is None:
        return None
    compare = grid.compare
    methods = final_results(grid_dir, dict(grid.base), dict(grid.sweeps), compare)
    rows = selection_rows(methods, compare) if methods else []
    bounds = (0.0, 1.0) if compare.select == "val_acc" else None
    budgets = list(range(1, compare.budget + 1))
    names = Labels.of([compare.by], [(row[compare.by],) for row in rows])
    curves = []
    for method, row in zip(methods, rows, strict=True):
        curve = tuning_curve(method.selection.tried, budgets, minimize=compare.minimize,
                             bounds=bounds)
        curves.append({"method": names.value(compare.by, row[compare.by]),
                       "budgets": curve.budgets,
                       "expected": plain(curve.expected), "lower": plain(curve.lower),
                       "upper": plain(curve.upper), "band": curve.method})
    return {"by": compare.by, "select": compare.select, "budget": compare.budget,
            "final_seeds": list(compare.final_seeds),
            "tune": {key: str(space) for key, space in compare.tune.items()},
            "rows": [plain(row) for row in rows], "curves": curves,
            "verdicts": verdicts(rows, compare.by, names), "notes": [],
            "tables": [{"title": "Selection and final seeds",
                        "headers": list(rows[0]) if rows else [],
                        "rows": [plain(list(row.values())) for row in rows]}]}


def verdicts(rows: list[dict[str, Any]], by: str, names: Labels) -> list[str]:
    """One sentence per method against the first (the baseline), from the selection rows."""
    if not rows:
        return []
    baseline = rows[0]
    name = names.value(by, baseline[by])
    sentences = []
    for row in rows[1:]:
        method = names.value(by, row[by])
        difference = row["test_acc_mean"] - baseline["test_acc_mean"]
        p = row.get("p_holm")
        if p is None or not math.isfinite(p) or not math.isfinite(difference):
            sentences.append(f"{method} vs {name}: too few shared final seeds to test.")
            continue
        points = f"{abs(difference) * 100:.1f} points"
        direction = "above" if difference > 0 else "below"
        if p < ALPHA:
            sentences.append(f"{method} is {points} {direction} {name} in final test accuracy "
                             f"(paired t over {row['final_seeds']} seeds, Holm p = {p:.3g}): a "
                             "significant difference.")
        else:
            sentences.append(f"{method} is {points} {direction} {name} in final test accuracy, "
                             f"not significant (Holm p = {p:.3g}).")
    return sentences
