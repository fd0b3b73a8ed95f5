"""`tvo aggregate`: the command line that made a summary, and what the terminal shows of it."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from jobs.rundir import results
from runner.report.formats import rich_table, to_csv, to_json, to_markdown
from runner.report.markdown import jobs_line
from runner.report.pipeline import LATEX_FILE, Aggregation

MAX_SHOWN_PROBLEMS = 5  # failed/diverged jobs named in the terminal; report.md lists more


def command_line(directory: Path, *, threshold: float, by: Sequence[str] | None,
                 baseline: str | None, plots: bool) -> str:
    """The command, spelt out with every choice, for the report's "made by" line."""
    words = ["tvo", "aggregate", str(directory), "--threshold", f"{threshold:g}"]
    if by is not None:
        words += ["--by", ",".join(by)]
    if baseline is not None:
        words += ["--baseline", baseline]
    if not plots:
        words.append("--no-plots")
    return shlex.join(words)


def machine_output(aggregation: Aggregation, fmt: str) -> str:
    summary = aggregation.summary
    if fmt == "csv":
        return to_csv(summary)
    if fmt == "latex":  # what summary/summary.tex holds
        return aggregation.rendered.files[LATEX_FILE].decode()
    if fmt == "json":
        return to_json(summary, aggregation.meta())
    return to_markdown(summary)


def print_aggregation(console: Console, notes: Console, aggregation: Aggregation,
                      fmt: str) -> None:
    """`table`: the rich table and notes on stdout; other formats: data on stdout, notes on
    stderr, so `tvo aggregate DIR --format csv > out.csv` gives a clean file."""
    if fmt == "table":
        console.print(rich_table(aggregation.summary, f"grid {aggregation.data.name}",
                                 console.width))
        notes = console
    else:
        sys.stdout.write(machine_output(aggregation, fmt))
        sys.stdout.flush()
    data, summary = aggregation.data, aggregation.summary
    notes.print(jobs_line(data) + " (statistics use done jobs only)", markup=False)
    problems = [job for job in data.jobs.values()
                if job.state in (results.FAILED, results.DIVERGED)]
    for job in problems[:MAX_SHOWN_PROBLEMS]:
        error = (job.error or "").splitlines()[0] if job.error else "no error recorded"
        notes.print(f"  {job.state} {job.job_id}: {error} (log: {job.log or '-'})",
                    markup=False, soft_wrap=True)
    if len(problems) > MAX_SHOWN_PROBLEMS:
        notes.print(f"  ... {len(problems) - MAX_SHOWN_PROBLEMS} more in report.md")
    if summary.baseline_note:
        notes.print(summary.baseline_note, markup=False, soft_wrap=True)
    for note in aggregation.rendered.plot_notes:
        notes.print(note, markup=False, soft_wrap=True)
    if aggregation.rendered.figures_kept:
        notes.print("plots unchanged since they were drawn: kept "
                    f"{', '.join(aggregation.rendered.plots)} (PNG and SVG)", markup=False,
                    soft_wrap=True)
    names = ", ".join(path.name for path in aggregation.written)
    notes.print(f"wrote {aggregation.summary_dir}/: {names}; {data.compaction}", markup=False,
                soft_wrap=True)
