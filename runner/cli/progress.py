"""Live progress of a grid run: a rich bar on a terminal, plain lines otherwise (logs, CI)."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from runner.dispatch.driver import Counts, JobEnd


def counts_text(counts: Counts) -> str:
    parts = [f"done {counts.done}", f"running {counts.running}", f"failed {counts.failed}",
             f"diverged {counts.diverged}", f"pending {counts.pending}"]
    if counts.cancelled:
        parts.insert(4, f"cancelled {counts.cancelled}")
    if counts.elsewhere:
        parts.append(f"held by another runner {counts.elsewhere}")
    return " · ".join(parts)


class Eta:
    """Time left, from the pace at which this run's jobs end once they have started ending.

    The first job to end carries the start-up (imports, data, the backend's warm-up) and jobs
    that run side by side end in waves, so one ended job says little: the ETA says
    "estimating" until MIN_ENDS jobs of this run have ended, and then measures the pace from
    the first end on, start-up excluded.
    """

    MIN_ENDS = 3

    def __init__(self) -> None:
        self.first_end_at: float | None = None
        self.ends = 0  # jobs of this run that ended since (and including) the first

    def job_ended(self, now: float) -> None:
        if self.first_end_at is None:
            self.first_end_at = now
        self.ends += 1

    def text(self, counts: Counts, now: float) -> str:
        left = counts.total - counts.finished
        if left <= 0 or counts.finished - counts.skipped <= 0 and not counts.running:
            return ""
        if self.first_end_at is None or self.ends < self.MIN_ENDS or now <= self.first_end_at:
            return "ETA estimating"
        pace = (self.ends - 1) / (now - self.first_end_at)  # jobs per second after the first
        return f"ETA {_duration(left / pace)}" if pace > 0 else "ETA estimating"


def elapsed_text(counts: Counts) -> str:
    return f"{_duration(counts.elapsed)} elapsed"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class RunProgress:
    """A listener for run_grid; use as a context manager around the run.

    On a terminal: a bar with done/total, elapsed and ETA, the counts by state on the line
    below, and a line above for each job that failed or diverged. Otherwise one plain line
    per job that ends.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = console.is_terminal
        self._bar = Progress(TextColumn("[bold]jobs"), BarColumn(bar_width=30),
                             MofNCompleteColumn(), TimeElapsedColumn(),
                             TextColumn("{task.fields[eta]}"), console=console)
        self._task = self._bar.add_task("jobs", total=None, eta="")
        self._counts = Text()
        self._screen = Live(Group(self._bar, self._counts), console=console,
                            refresh_per_second=4, transient=False)
        self._eta = Eta()

    def __enter__(self) -> RunProgress:
        if self.live:
            self._screen.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self.live:
            self._screen.stop()

    def __call__(self, counts: Counts, end: JobEnd | None) -> None:
        now = time.perf_counter()
        if end is not None:
            self._eta.job_ended(now)
        eta = self._eta.text(counts, now)
        if self.live:
            self._bar.update(self._task, total=counts.total, completed=counts.finished, eta=eta)
            self._counts.plain = counts_text(counts)
            if end is not None and end.state != "done":
                self.console.print(f"{end.state} {end.job_id}: {end.error or ''}",
                                   markup=False, highlight=False, soft_wrap=True)
            return
        if end is None:
            return
        error = f" {end.error}" if end.error and end.state != "done" else ""
        times = ", ".join(filter(None, (elapsed_text(counts), eta)))
        self.console.print(f"[{counts.finished}/{counts.total}] {end.state} {end.job_id}{error} "
                           f"| {counts_text(counts)} | {times}",
                           markup=False, highlight=False, soft_wrap=True)
