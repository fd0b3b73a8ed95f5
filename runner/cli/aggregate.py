"""`tvo aggregate`: the command line that made a summary, and what the terminal shows of it."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from jobs.rundir.states import DIVERGED, FAILED
from runner.report.document import jobs_line
from runner.report.formats import rich_table, to_csv, to_json, to_markdown
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


def _table(title: str, headers: list[str], cells: list[list[str]], names: int = 1) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for index, header in enumerate(headers):
        table.add_column(header, justify="left" if index < names else "right",
                         style="bold" if index == 0 else None, overflow="fold")
    for row in cells:
        table.add_row(*row)
    return table


def print_answer(console: Console, aggregation: Aggregation) -> None:
    """A comparison grid's answer, first: selection, final comparison, tuning curves, verdicts."""
    from runner.report.selection import answer_cells, curve_cells, selection_cells

    protocol = aggregation.contents.protocol
    assert protocol is not None
    headers, cells = selection_cells(protocol)
    tie = headers.index("tie")  # sentences: below the table, a line each
    console.print(_table("selection (stage 1: tuning, on validation)",
                         [h for i, h in enumerate(headers) if i != tie],
                         [[c for i, c in enumerate(row) if i != tie] for row in cells], names=2))
    for row in cells:
        if row[tie] and row[tie] != "no tie":
            console.print(f"{row[0]}: {row[tie]}", markup=False, soft_wrap=True)
    for note in protocol.notes:
        console.print(note, markup=False, soft_wrap=True)
    console.print(_table("final seeds (stage 2): against the baseline (Holm-adjusted p; * < "
                         "0.05)", *answer_cells(protocol, aggregation.summary)))
    for text in aggregation.summary.identical:
        console.print(text, markup=False, soft_wrap=True)
    console.print(_table("tuning curves: expected best validation score of k configurations "
                         "[80 % simultaneous band]", *curve_cells(protocol)))
    for text in protocol.verdicts:
        console.print(f"- {text}", markup=False, soft_wrap=True)
    console.print()


def print_aggregation(console: Console, notes: Console, aggregation: Aggregation,
                      fmt: str) -> None:
    """`table`: the rich table and notes on stdout; other formats: data on stdout, notes on
    stderr, so `tvo aggregate DIR --format csv > out.csv` gives a clean file."""
    data, summary = aggregation.data, aggregation.summary
    if fmt == "table":
        if aggregation.contents.protocol is not None:
            print_answer(console, aggregation)
        title = f"grid {data.name}" + (": final runs" if aggregation.contents.protocol else "")
        console.print(rich_table(summary, title, console.width))
        notes = console
    else:
        sys.stdout.write(machine_output(aggregation, fmt))
        sys.stdout.flush()
    notes.print(jobs_line(data) + (f" ({aggregation.contents.stages_text()})"
                                   if aggregation.contents.stages else "")
                + " (statistics use done jobs only)", markup=False)
    problems = [job for job in data.jobs.values()
                if job.state in (FAILED, DIVERGED)]
    for job in problems[:MAX_SHOWN_PROBLEMS]:
        error = (job.error or "").splitlines()[0] if job.error else "no error recorded"
        notes.print(f"  {job.state} {job.job_id}: {error} (log: {job.log or '-'})",
                    markup=False, soft_wrap=True)
    if len(problems) > MAX_SHOWN_PROBLEMS:
        notes.print(f"  ... {len(problems) - MAX_SHOWN_PROBLEMS} more in report.md")
    if summary.baseline_note:
        notes.print(summary.baseline_note, markup=False, soft_wrap=True)
    if fmt != "table" or aggregation.contents.protocol is None:
        for text in summary.identical:
            notes.print(text, markup=False, soft_wrap=True)
    for note in aggregation.rendered.plot_notes:
        notes.print(note, markup=False, soft_wrap=True)
    if aggregation.rendered.figures_kept:
        notes.print("plots unchanged since they were drawn: kept "
                    f"{', '.join(aggregation.rendered.plots)} (PNG and SVG)", markup=False,
                    soft_wrap=True)
    names = ", ".join(path.name for path in aggregation.written)
    notes.print(f"wrote {aggregation.summary_dir}/: {names}; {data.compaction}", markup=False,
                soft_wrap=True)
