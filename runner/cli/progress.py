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
    """Time left, from the pace at which this run's work gets done once it has started.

    Work is counted in jobs, with the running stacks' epochs as fractions of theirs (a stack of
    64 jobs half through its epochs has done 32 jobs' worth), so the ETA moves per epoch, not
    only when a stack ends. The first progress carries the start-up (imports, data, the
    backend's warm-up), so the pace is measured from the first progress seen on, and the ETA
    says "estimating" until MIN_PROGRESS jobs' worth has been done since.
    """

    MIN_PROGRESS = 1.0

    def __init__(self) -> None:
        self.first: tuple[float, float] | None = None  # (when, progress) at the first progress

    def update(self, counts: Counts, now: float) -> None:
        done = counts.progressed - counts.skipped
        if self.first is None and done > 0:
            self.first = (now, done)

    def text(self, counts: Counts, now: float) -> str:
        left = counts.total - counts.progressed
        if left <= 0 or counts.finished - counts.skipped <= 0 and not counts.running:
            return ""
        done = counts.progressed - counts.skipped
        if self.first is None or done - self.first[1] < self.MIN_PROGRESS \
                or now <= self.first[0]:
            return "ETA estimating"
        pace = (done - self.first[1]) / (now - self.first[0])  # jobs' worth per second
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

    On a terminal: a bar with done/total, elapsed and ETA (moving with the stacks' epochs), the
    counts by state on the line below, and a line above for each job that failed or diverged.
    Otherwise one plain line per job that failed, diverged or was cancelled, and a line with
    the counts when stacks end, at most every PLAIN_EVERY_S seconds (a grid of 100,000 jobs
    must not print 100,000 lines).
    """

    PLAIN_EVERY_S = 2.0

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
        self._units_shown = 0
        self._shown_at = float("-inf")

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
        self._eta.update(counts, now)
        eta = self._eta.text(counts, now)
        if self.live:
            self._bar.update(self._task, total=counts.total, completed=counts.progressed,
                             eta=eta)
            self._counts.plain = counts_text(counts)
            if end is not None and end.state != "done":
                self.console.print(f"{end.state} {end.job_id}: {end.error or ''}",
                                   markup=False, highlight=False, soft_wrap=True)
            return
        times = ", ".join(filter(None, (elapsed_text(counts), eta)))
        if end is not None:
            error = f" {end.error}" if end.error and end.state != "done" else ""
            self.console.print(f"[{counts.finished}/{counts.total}] {end.state} {end.job_id}"
                               f"{error} | {counts_text(counts)} | {times}",
                               markup=False, highlight=False, soft_wrap=True)
            return
        last = counts.finished == counts.total
        if counts.units_ended > self._units_shown and (
                last or now - self._shown_at >= self.PLAIN_EVERY_S):
            self._units_shown, self._shown_at = counts.units_ended, now
            self.console.print(f"[{counts.finished}/{counts.total}] {counts_text(counts)} | "
                               f"{times}", markup=False, highlight=False, soft_wrap=True)
