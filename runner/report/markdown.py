"""summary/report.md: the tables, the plots and how they were made, readable on its own."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

from jobs.rundir import results
from runner.report.definitions import METRICS, statistics_text
from runner.report.formats import comparison_cells, to_markdown
from runner.report.load import GridData, state_counts
from runner.report.tables import Summary, format_value

MAX_LISTED_JOBS = 30  # jobs listed by name in "Not done"; the rest are counted
PLOT_TITLES = {
    "test_acc": "Test accuracy over epochs",
    "train_loss": "Training loss over epochs",
    "targets": "Target trajectories (c_i, nc_i) of strategies that move them",
    "final_acc": "Final test accuracy per group",
    "calibration": "Calibration: reliability diagrams (final epoch, pooled over seeds)",
}


def jobs_line(data: GridData) -> str:
    counts = state_counts(data.jobs)
    order = [results.DONE, results.DIVERGED, results.FAILED, results.RUNNING, results.CANCELLED,
             results.PENDING]
    parts = [f"{counts[state]} {state}" for state in order if counts.get(state)]
    parts += [f"{n} {state}" for state, n in sorted(counts.items()) if state not in order]
    total = len(data.jobs)
    return f"{total} job{'' if total == 1 else 's'}: " + ", ".join(parts)


def _not_done(data: GridData, summary: Summary) -> list[str]:
    labels = {job.job_id: group.label for group in summary.groups for job in group.jobs}
    missing = [job for job in data.jobs.values() if job.state != results.DONE]
    if not missing:
        return ["Every job is done."]
    lines = ["| job | group | state | error | log |", "|---|---|---|---|---|"]
    for job in missing[:MAX_LISTED_JOBS]:
        error = (job.error or "").splitlines()[0] if job.error else ""
        cells = [job.job_id, labels[job.job_id], job.state, error, job.log or ""]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if len(missing) > MAX_LISTED_JOBS:
        lines.append(f"\n... and {len(missing) - MAX_LISTED_JOBS} more.")
    return lines


def _table(headers: Sequence[str], cells: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    return lines


def _comparison(summary: Summary) -> list[str]:
    if summary.baseline is None:
        return [summary.baseline_note]
    key, value = summary.baseline
    lines = [f"Each group against the group with {key}={format_value(value)} and otherwise "
             "equal settings.", "", *_table(*comparison_cells(summary))]
    if summary.baseline_note:
        lines += ["", summary.baseline_note]
    return lines


def _groups(summary: Summary) -> list[str]:
    """Short label -> every grouping setting in full, as the files spell them."""
    cells = [[group.label, group.name] for group in summary.groups]
    return _table(["label", "settings in full"], cells)


def render(data: GridData, summary: Summary, *, command: str, plots: Sequence[str],
           plot_notes: Sequence[str]) -> str:
    """The whole report as markdown; `plots` are the PNG file names written next to it."""
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    grouping = ", ".join(summary.keys) if summary.keys else "nothing (one group of all jobs)"
    lines = [
        f"# Results of grid {data.name}",
        "",
        f"Made by `{command}` on {made}, from `{data.grid_dir}`.",
        "",
        "## Jobs",
        "",
        jobs_line(data) + ". Statistics use done jobs only; diverged, failed and unfinished "
        "jobs are counted per group (column *not done*).",
        "",
        *_not_done(data, summary),
        "",
        "## Results",
        "",
        f"Grouped by {grouping}; seeds are the repetitions. Groups are named by what tells "
        "them apart (see *Groups* for every setting in full). Each cell is the mean over seeds "
        "± the half-width of its 95 % confidence interval; n/a: the measure does not apply "
        "(see *Definitions*). Best group first, by final test accuracy. "
        f"*epochs to {summary.threshold:g}*: median first epoch at which test accuracy reached "
        f"{summary.threshold:g}, over the seeds that reached it (reached/seeds).",
        "",
        to_markdown(summary),
        "## Comparison with the baseline",
        "",
        *_comparison(summary),
        "",
        "## Plots",
        "",
        "Each plot is also in this folder as an SVG (vector) for papers; report.html has the "
        "same data as interactive charts.",
        "",
    ]
    for name in plots:
        lines += [f"### {PLOT_TITLES[name]}", "", f"![{PLOT_TITLES[name]}]({name}.png)", ""]
    lines += [f"- {note}" for note in plot_notes]
    if not plots:
        lines.append("Plots were not made this time (--no-plots); PNG and SVG files in this "
                     "folder, if any, are from an earlier run.")
    lines += [
        "",
        "## Groups",
        "",
        *_groups(summary),
        "",
        "## Definitions",
        "",
        *[f"- **{name}**: {text}" for name, text in METRICS],
        "",
        "## Statistics",
        "",
        *[f"- {text}" for text in statistics_text(summary)],
        "",
        "## Files",
        "",
        "- `summary.parquet`, `summary.csv`: one row per group with every statistic "
        "(mean, std, ci_low, ci_high per measure), the baseline comparison (test, pairs, raw "
        "`p_value`, Holm-corrected `p_holm`, `significant`: p_holm < 0.05), the full settings "
        "(`group` and one column per setting) and the short `label`.",
        "- `summary.tex`: the table for LaTeX (`--format latex` prints it).",
        "- `report.html`: this report with interactive charts and sortable tables (opens "
        "offline).",
        f"- `metrics.parquet`: every run's metrics in one file ({data.compaction}).",
        "",
    ]
    return "\n".join(lines)
