"""The report as a list of blocks (headings, text, tables, figures, lists), made once from the
contents: report.md and report.html write the same blocks each in its own markup.

A comparison grid's report leads with its answer: the selection (stage 1, on validation), the
final seeds' comparison with CIs and Holm-adjusted p, the tuning curves, a verdict per method;
then the results of the final runs in full, the plots, and the tuning stage apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from jobs import metric_catalogue
from jobs.rundir.states import CANCELLED, DIVERGED, DONE, FAILED, PENDING, RUNNING
from runner.report.contents import Contents
from runner.report.definitions import metric_definitions, statistics_text
from runner.report.formats import comparison_cells, display
from runner.report.labels import format_value
from runner.report.load import COMPACTED_FILE, state_counts
from runner.report.model import Summary

MAX_LISTED_JOBS = 30  # jobs listed by name in "Not done"; the rest are counted
# the titles of the figures besides those of a metric over epochs (plot_titles)
OTHER_PLOT_TITLES = {
    "targets": "Targets trained on, per class (c_i, nc_i) of strategies that move them",
    "final_acc": "Final test accuracy per group",
    "calibration": "Calibration: reliability diagrams (final epoch, pooled over seeds)",
    "tuning_curves": "Tuning curves: expected best validation score against the budget",
    "performance_profile": "Performance profiles across tasks",
}


def plot_titles() -> dict[str, str]:
    """Figure name -> its title in the report: the metrics' figures over epochs as they declare
    them (jobs.metric_catalogue), then the others."""
    return {**{name: title for name, (_, title) in metric_catalogue.curves().items()},
            **OTHER_PLOT_TITLES}


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Text:
    text: str
    note: bool = False  # a remark beside the results (greyed in HTML)


@dataclass(frozen=True)
class Table:
    headers: Sequence[str]
    cells: Sequence[Sequence[str]]
    table_id: str  # the HTML table's id
    names: int = 1  # leading columns that are names (left-aligned)


@dataclass(frozen=True)
class Figure:
    name: str  # name.png beside report.md, chart-<name> in report.html


@dataclass(frozen=True)
class Items:
    items: Sequence[tuple[str, str]]  # (bold lead or "", text)


Block = Heading | Text | Table | Figure | Items


def jobs_line(data) -> str:  # noqa: ANN001 (GridData; the console imports this too)
    counts = state_counts(data.jobs)
    order = [DONE, DIVERGED, FAILED, RUNNING, CANCELLED,
             PENDING]
    parts = [f"{counts[state]} {state}" for state in order if counts.get(state)]
    parts += [f"{n} {state}" for state, n in sorted(counts.items()) if state not in order]
    total = len(data.jobs)
    return f"{total} job{'' if total == 1 else 's'}: " + ", ".join(parts)


def made_line(contents: Contents) -> str:
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"Made by `{contents.command}` on {made}, from `{contents.data.grid_dir}`."


def _not_done(contents: Contents) -> list[Block]:
    data, summary = contents.data, contents.summary
    labels = {job.job_id: group.label for group in summary.groups for job in group.jobs}
    missing = [job for job in data.jobs.values() if job.state != DONE]
    if not missing:
        return [Text("Every job is done.")]
    cells = []
    for job in missing[:MAX_LISTED_JOBS]:
        error = (job.error or "").splitlines()[0] if job.error else ""
        cells.append([job.job_id, labels.get(job.job_id, "(tuning or outside)"), job.state,
                      error, job.log or ""])
    blocks: list[Block] = [Table(["job", "group", "state", "error", "log"], cells, "not-done",
                                 names=5)]
    if len(missing) > MAX_LISTED_JOBS:
        blocks.append(Text(f"... and {len(missing) - MAX_LISTED_JOBS} more."))
    return blocks


def _jobs(contents: Contents) -> list[Block]:
    line = jobs_line(contents.data) + "."
    if contents.stages:
        line += (f" By stage: {contents.stages_text()}; the tables and statistics use the done "
                 "final runs only, the tuning stage its validation scores only.")
    else:
        line += (" Statistics use done jobs only; diverged, failed and unfinished jobs are "
                 "counted per group (column *not done*).")
    return [Heading("Jobs"), Text(line), *_not_done(contents)]


def _results(contents: Contents) -> list[Block]:
    summary = contents.summary
    grouping = ", ".join(summary.keys) if summary.keys else "nothing (one group of all jobs)"
    which = "final runs" if contents.protocol else "runs"
    blocks: list[Block] = [
        Heading("Results of the final runs" if contents.protocol else "Results"),
        Text(f"Grouped by {grouping}; seeds are the repetitions, and only {which} are counted. "
             "Groups are named by what tells them apart (see *Groups* for every setting in "
             "full). Each cell is the mean over seeds ± the half-width of its 95 % confidence "
             "interval (Student's t); IQM: the interquartile mean with its 95 % bootstrap CI; "
             "n/a: the measure does not apply (see *Definitions*). Best group first, by final "
             f"test accuracy. *epochs to {summary.threshold:g}*: median first epoch at which "
             f"validation accuracy reached {summary.threshold:g}, over the seeds that reached "
             "it (reached/seeds)."),
        Table(*display(summary), "results", names=max(1, len(summary.keys))),
        Heading("Comparison with the baseline", 3 if contents.protocol else 2),
        *_comparison(summary),
    ]
    blocks += [Text(text, note=True) for text in summary.identical]
    return blocks


def _comparison(summary: Summary) -> list[Block]:
    if summary.baseline is None:
        return [Text(summary.baseline_note, note=True)]
    key, value = summary.baseline
    blocks: list[Block] = [
        Text(f"Each group against the group with {key}={format_value(value)} and otherwise "
             "equal settings; runs pair up by every other setting, the seed included (see "
             "*Statistics*)."),
        Table(*comparison_cells(summary), "comparison", names=3)]
    if summary.baseline_note:
        blocks.append(Text(summary.baseline_note, note=True))
    return blocks


def _answer(contents: Contents) -> list[Block]:
    """A comparison grid's answer: selection, final comparison, tuning curves, verdicts."""
    from runner.report.selection import (
        answer_cells,
        curve_cells,
        protocol_text,
        selection_cells,
    )

    protocol = contents.protocol
    assert protocol is not None
    summary = contents.summary
    blocks: list[Block] = [
        Heading("Selection (stage 1: tuning, on validation)"),
        Text(protocol_text(protocol)),
        Table(*selection_cells(protocol), "selection", names=2),
        *[Text(note, note=True) for note in protocol.notes],
        Heading("Final seeds (stage 2): the comparison"),
        Text("Each method's selected configuration on the fresh seeds: final test accuracy "
             "(mean, 95 % t CI), its IQM (95 % bootstrap CI), and against the baseline the "
             "difference with its 95 % CI, the paired t-test's p (raw and Holm-adjusted over "
             "every comparison; `*`: Holm p < 0.05) and the probability of improvement."),
        Table(*answer_cells(protocol, summary), "answer", names=1),
        *[Text(text, note=True) for text in summary.identical],
        Heading("Tuning curves"),
        Text("The expected best validation score of k configurations drawn at random from "
             "each method's tuning runs (Dodge et al. 2019), with 80 % simultaneous confidence "
             "bands (Lourie et al. 2024, opda). A method ahead at small k is easier to tune; "
             "ahead at large k, better when tuned."),
    ]
    if "tuning_curves" in contents.plots:
        blocks.append(Figure("tuning_curves"))
    blocks += [Table(*curve_cells(protocol), "tuning-curves", names=1),
               Heading("Verdicts"), Items([("", text) for text in protocol.verdicts])]
    return blocks


def _tasks(contents: Contents) -> list[Block]:
    from runner.report.tasks import task_cells

    tasks = contents.tasks
    if tasks is None:
        return []
    blocks: list[Block] = [
        Heading("Across tasks"),
        Text(f"The methods on {tasks.described}, as Agarwal et al. 2021 report them: the IQM "
             "of every run of every task, with a CI from resampling runs within each task, and "
             "the probability of improvement over the baseline averaged over tasks."),
        Table(*task_cells(tasks), "tasks", names=1)]
    if "performance_profile" in contents.plots:
        blocks.append(Figure("performance_profile"))
    if tasks.note:
        blocks.append(Text(tasks.note, note=True))
    return blocks


def _plots(contents: Contents) -> list[Block]:
    shown = [name for name in contents.plots
             if name not in ("tuning_curves", "performance_profile")]
    blocks: list[Block] = [
        Heading("Plots"),
        Text("Each plot is also in this folder as an SVG (vector) for papers; report.html has "
             "the same data as interactive charts.")]
    for name in shown:
        blocks += [Heading(plot_titles()[name], 3), Figure(name)]
    if contents.plot_notes:
        blocks.append(Items([("", note) for note in contents.plot_notes]))
    if not contents.plots:
        blocks.append(Text("Plots were not made this time (--no-plots); PNG and SVG files in "
                           "this folder, if any, are from an earlier run.", note=True))
    return blocks


def _tuning(contents: Contents) -> list[Block]:
    from runner.report.selection import tuning_cells

    assert contents.protocol is not None
    return [Heading("Tuning stage: every configuration, by its validation score"),
            Text("Single-seed runs that chose each method's configuration, ranked by the "
                 "validation score they were selected on (ties broken as in *Selection*). "
                 "They are never ranked on test, and never pooled with the final runs."),
            Table(*tuning_cells(contents.protocol), "tuning", names=3)]


def _reference(contents: Contents) -> list[Block]:
    summary = contents.summary
    files = [
        ("", "`summary.parquet`, `summary.csv`: one row per group with every statistic (mean, "
         "std, ci_low, ci_high per measure; runs and distinct seeds; bootstrap CIs and IQM), "
         "the baseline comparison (test, pairs, raw `p_value`, Holm-corrected `p_holm`, "
         "`significant`: p_holm < 0.05, `p_improvement` with its CI, `test_note`), "
         "`identical_to`, the full settings (`group` and one column per setting) and the "
         "short `label`."),
        ("", "`summary.tex`: the tables for LaTeX (`--format latex` prints them)."),
        ("", "`report.html`: this report with interactive charts and sortable tables (opens "
         "offline)."),
        ("", f"`{COMPACTED_FILE}` in summary/: every run's metrics in one file "
         f"({contents.data.compaction})."),
    ]
    if contents.protocol is not None:
        files.insert(1, ("", "`selection.csv` (per method: the selected settings, the "
                         "validation score, ties and how they were broken, the final seeds' "
                         "statistics), `tuning.csv` (every tuning configuration with its "
                         "validation scores), `tuning_curves.csv`."))
    return [
        Heading("Groups"),
        Table(["label", "settings in full"], [[g.label, g.name] for g in summary.groups],
              "groups", names=2),
        Heading("Definitions"), Items(metric_definitions()),
        Heading("Statistics"), Items([("", text) for text in statistics_text(contents)]),
        Heading("Files"), Items(files),
    ]


def blocks(contents: Contents) -> list[Block]:
    """The whole report, in order."""
    made = [Heading(contents.title, 1), Text(made_line(contents))]
    if contents.protocol is not None:
        return [*made, *_answer(contents), *_results(contents), *_tasks(contents),
                *_plots(contents), *_tuning(contents), *_jobs(contents), *_reference(contents)]
    return [*made, *_jobs(contents), *_results(contents), *_tasks(contents), *_plots(contents),
            *_reference(contents)]
