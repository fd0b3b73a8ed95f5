"""`tvo status --watch`: a grid's status, refreshed until none of its jobs runs any more.

On a terminal the status redraws in place (rich Live), with a table of the running jobs and the
epoch each has reached (its stack's epoch events, read through the state index); otherwise one
plain line is printed whenever the counts change, then the full status at the end. A grid is
still going while a live runner holds one of its jobs (see jobs.rundir.claims); with jobs left
pending and none held, one more look after an interval tells a finished run from a runner
between two dispatches.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from jobs.rundir.claims import live_held
from jobs.rundir.index import StateIndex
from jobs.rundir.states import PENDING, RUNNING
from runner.cli.run import print_status
from runner.dispatch.status import GridStatus, JobStatus, grid_status

RUNNING_ROWS = 30  # the table of running jobs; the counts say how many there are


def is_going(status: GridStatus) -> bool:
    """Whether a live runner holds one of the grid's jobs (running, or dispatched to start)."""
    return bool(live_held(status.grid_dir) & {job.job_id for job in status.jobs})


def epoch_reached(job: JobStatus) -> str:
    """"7/30": the epoch the job's stack has reached, or "" before its first."""
    epoch, epochs = job.epoch
    return f"{epoch}/{epochs}" if epoch else ""


def status_view(status: GridStatus, width: int, note: str) -> RenderableType:
    """The same lines as `tvo status`, then the running jobs, then `note`."""
    text = io.StringIO()
    print_status(status, Console(file=text, width=width, highlight=False, color_system=None))
    parts: list[RenderableType] = [Text(text.getvalue().rstrip("\n"))]
    running = [job for job in status.jobs if job.state == RUNNING.value]
    if running:
        table = Table(show_edge=False, pad_edge=False, box=None)
        for column in ("running", "stack", "host", "epoch"):
            table.add_column(column)
        for job in running[:RUNNING_ROWS]:
            record = job.record
            table.add_row(job.job_id, record.stack if record else "",
                          record.host if record else "", epoch_reached(job))
        parts.append(table)
        if len(running) > RUNNING_ROWS:
            parts.append(Text(f"... and {len(running) - RUNNING_ROWS} more running"))
    parts.append(Text(note, style="dim"))
    return Group(*parts)


def watch_status(grid_dir: Path, interval_s: float, console: Console) -> GridStatus:
    """Show the grid's status until it stops going, or until Ctrl-C; returns the last status.

    Raises runner.dispatch.outdir.OutDirError when `grid_dir` is not a grid's output dir.
    """
    index = StateIndex(grid_dir)
    first = status = grid_status(grid_dir, index)
    if console.is_terminal:
        note = f"refreshed every {interval_s:g}s until no job runs · Ctrl-C stops watching"
        with Live(status_view(status, console.width, note), console=console,
                  auto_refresh=False) as live:
            try:
                for status in _refreshes(grid_dir, index, first, interval_s):
                    live.update(status_view(status, console.width, note), refresh=True)
            except KeyboardInterrupt:
                pass
        return status
    shown = ""
    try:
        for status in _refreshes(grid_dir, index, first, interval_s):
            line = _counts_line(status)
            if line != shown:
                console.print(f"{time.strftime('%H:%M:%S')} {line}", markup=False,
                              highlight=False, soft_wrap=True)
                shown = line
    except KeyboardInterrupt:
        pass
    print_status(status, console)
    return status


def _refreshes(grid_dir: Path, index: StateIndex, status: GridStatus,
               interval_s: float) -> Iterator[GridStatus]:
    """Yield the status now, then once every interval for as long as the grid is going."""
    quiet_looks = 0
    while True:
        yield status
        if is_going(status):
            quiet_looks = 0
        else:
            quiet_looks += 1
            if not status.counts[PENDING.value] or quiet_looks >= 2:
                return
        time.sleep(interval_s)
        status = grid_status(grid_dir, index)


def _counts_line(status: GridStatus) -> str:
    return " · ".join(f"{state} {count}" for state, count in status.counts.items())
