"""What `tvo aggregate` writes for a grid with `compare:`: summary/selection.csv (one row per
method: its selected settings, their validation score, the final seeds' test accuracy with a
confidence interval, and the Holm-corrected p against the baseline method), and the tuning
curves (summary/tuning_curves.csv and .png): the expected best validation score against the
number of configurations tried, with confidence bands (runner.report.tuning).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.rundir import results
from jobs.rundir.rows import final_values
from jobs.spec import JobSpec
from runner.grid.protocol import Compare, Selection, select, stage_two

SELECTION_FILE = "selection.csv"
CURVES_FILE = "tuning_curves.csv"
CURVES_PLOT = "tuning_curves.png"
CONFIDENCE = 0.95  # of the final seeds' test-accuracy interval


@dataclass(frozen=True)
class MethodResult:
    selection: Selection
    test_accs: dict[int, float]  # final seed -> final test accuracy


def final_results(grid_dir: Path, base: dict[str, Any], sweeps: dict[str, Any],
                  compare: Compare) -> list[MethodResult]:
    """Each selected configuration's final test accuracies, by seed (finished jobs only)."""
    out = []
    selections = select(grid_dir, base, sweeps, compare)
    finals = {selection_index: stage_two([selection], compare)
              for selection_index, selection in enumerate(selections)}
    accs = final_values(grid_dir, [spec.job_id for specs in finals.values() for spec in specs],
                        "test_acc")
    for selection_index, selection in enumerate(selections):
        out.append(MethodResult(selection, {spec.seed: accs[spec.job_id]
                                            for spec in finals[selection_index]
                                            if spec.job_id in accs}))
    return out


def selection_rows(methods: list[MethodResult], compare: Compare) -> list[dict[str, Any]]:
    """The rows of selection.csv; the first method is the baseline. Seeds pair up between
    methods (same seed: same initialisation and data order), so the test is paired
    (scipy's ttest_rel over the seeds both finished); p-values are Holm-corrected over the
    comparisons with the baseline (statsmodels' multipletests)."""
    from scipy import stats
    from statsmodels.stats.multitest import multipletests

    baseline = methods[0].test_accs if methods else {}
    raw: list[float] = []
    for method in methods[1:]:
        seeds = sorted(set(method.test_accs) & set(baseline))
        pair = ([method.test_accs[s] for s in seeds], [baseline[s] for s in seeds])
        if len(seeds) < 2 or pair[0] == pair[1]:
            raw.append(1.0 if len(seeds) >= 2 else math.nan)
        else:
            raw.append(float(stats.ttest_rel(*pair).pvalue))
    finite = [p for p in raw if math.isfinite(p)]
    corrected = iter(multipletests(finite, method="holm")[1].tolist() if finite else [])
    holm = [next(corrected) if math.isfinite(p) else math.nan for p in raw]
    rows = []
    for index, method in enumerate(methods):
        accs = list(method.test_accs.values())
        mean, half = _mean_ci(accs)
        row: dict[str, Any] = {
            compare.by: JobSpec.from_dict(method.selection.context).to_dict()[compare.by],
            **{f"selected_{key}": value for key, value in method.selection.settings.items()},
            f"selected_{compare.select}": method.selection.score,
            "configurations_scored": len(method.selection.tried),
            "final_seeds": len(accs), "test_acc_mean": mean,
            "test_acc_ci_low": mean - half, "test_acc_ci_high": mean + half,
            "p_vs_baseline": None if index == 0 else raw[index - 1],
            "p_holm": None if index == 0 else holm[index - 1],
            "test": "baseline" if index == 0 else "paired t-test over shared final seeds",
        }
        rows.append(row)
    return rows


def _mean_ci(values: list[float]) -> tuple[float, float]:
    from scipy import stats

    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, math.nan
    sem = stats.sem(values)
    return mean, float(sem * stats.t.ppf((1 + CONFIDENCE) / 2, len(values) - 1))


def write_comparison(grid_dir: Path, base: dict[str, Any], sweeps: dict[str, Any],
                     compare: Compare, summary_dir: Path, plots: bool = True) -> list[Path]:
    """selection.csv, tuning_curves.csv and (with `plots`) tuning_curves.png; the paths."""
    from runner.report.tuning import tuning_curve

    methods = final_results(grid_dir, base, sweeps, compare)
    summary_dir.mkdir(parents=True, exist_ok=True)
    written = [_write_csv(summary_dir / SELECTION_FILE, selection_rows(methods, compare))]
    bounds = (0.0, 1.0) if compare.select == "val_acc" else None
    budgets = list(range(1, compare.budget + 1))
    curves = []
    for method in methods:
        label = JobSpec.from_dict(method.selection.context).to_dict()[compare.by]
        curve = tuning_curve(method.selection.tried, budgets, minimize=compare.minimize,
                             bounds=bounds)
        curves.append((label, curve))
    rows = [{compare.by: label, "configurations": k, f"expected_best_{compare.select}": e,
             "band_low": low, "band_high": high, "band": curve.method}
            for label, curve in curves
            for k, e, low, high in zip(curve.budgets, curve.expected, curve.lower, curve.upper,
                                       strict=True)]
    written.append(_write_csv(summary_dir / CURVES_FILE, rows))
    if plots and curves:
        written.append(_plot(summary_dir / CURVES_PLOT, curves, compare))
    return written


def compared_grid(grid_dir: Path) -> Any | None:
    """The grid of `grid_dir` (its grid.yaml) when it has a `compare:` section, else None
    (found without importing torch: only a compared grid pays for its strategies)."""
    path = grid_dir / "grid.yaml"
    try:
        text = path.read_text()
    except OSError:
        return None
    if "\ncompare:" not in text:
        return None
    from runner.grid.expand import GridError, load_grid

    try:
        grid = load_grid(str(path))
    except GridError:
        return None
    return grid if grid.compare is not None else None


def add_comparison(grid_dir: Path, summary_dir: Path, plots: bool) -> list[Path]:
    """For a compared grid, the comparison's files, and its section appended to report.md."""
    grid = compared_grid(grid_dir)
    if grid is None:
        return []
    written = write_comparison(grid_dir, dict(grid.base), dict(grid.sweeps), grid.compare,
                               summary_dir, plots)
    report = summary_dir / "report.md"
    if report.exists():
        section = _report_section(summary_dir / SELECTION_FILE, grid.compare, plots)
        results.atomic_write_bytes(report, (report.read_text() + section).encode())
    return written


def _report_section(selection: Path, compare: Compare, plots: bool) -> str:
    rows = list(csv.DictReader(selection.open()))
    lines = ["", "## Comparison protocol", "",
             f"Each {compare.by} tried the same {compare.budget} configurations of "
             f"{', '.join(f'{k} ~ {v}' for k, v in compare.tune.items())}; the one with the best "
             f"final {compare.select} (validation, never test) was trained again with seeds "
             f"{', '.join(map(str, compare.final_seeds))}. p: paired t-test against the first "
             f"{compare.by} over the shared seeds, Holm-corrected (statsmodels).", "",
             f"| {compare.by} | selected | {compare.select} | test acc (95 % CI) | p | p Holm |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        score = f"selected_{compare.select}"
        chosen = ", ".join(f"{key[len('selected_'):]}={_short(value)}"
                           for key, value in row.items()
                           if key.startswith("selected_") and key != score)
        lines.append(f"| {row[compare.by]} | {chosen} | {_short(row[score])} "
                     f"| {_short(row['test_acc_mean'])} [{_short(row['test_acc_ci_low'])}, "
                     f"{_short(row['test_acc_ci_high'])}] | {_short(row['p_vs_baseline'])} "
                     f"| {_short(row['p_holm'])} |")
    if plots:
        lines += ["", f"![tuning curves]({CURVES_PLOT})", "",
                  "Tuning curves: the expected best validation score of k configurations drawn "
                  "at random (Dodge et al. 2019), with 80 % simultaneous bands (Lourie et al. "
                  "2024, opda)."]
    return "\n".join(lines) + "\n"


def _short(value: str) -> str:
    try:
        return f"{float(value):.4g}"
    except ValueError:
        return value or "-"


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    import io

    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    results.atomic_write_bytes(path, buffer.getvalue().encode())
    return path


def _plot(path: Path, curves: list[tuple[str, Any]], compare: Compare) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(figsize=(7, 4.8), constrained_layout=True)
    for label, curve in curves:
        line = axes.plot(curve.budgets, curve.expected, marker="o", markersize=3, label=label)[0]
        if not all(math.isnan(value) for value in curve.lower):
            axes.fill_between(curve.budgets, curve.lower, curve.upper, alpha=0.15,
                              color=line.get_color(), linewidth=0)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("configurations tried (tuning budget)")
    axes.set_ylabel(f"expected best {compare.select}")
    figure.suptitle("Tuning curves: Dodge et al. 2019; bands: Lourie et al. 2024", fontsize=10)
    figure.legend(loc="outside lower center", fontsize=8, ncols=2)
    results.atomic_write_with(path, lambda tmp: figure.savefig(tmp, format="png", dpi=130))
    plt.close(figure)
    return path
