"""`tvo cancel`: say what was asked to stop, how it stopped, and where the grid stands now."""

from __future__ import annotations

from rich.console import Console

from runner.cli.run import say
from runner.dispatch.cancel import CancelReport, CancelRequest
from runner.dispatch.status import grid_status


def print_request(request: CancelRequest, grace_s: float, console: Console) -> None:
    what = "" if request.whole_grid else f" ({', '.join(request.targets) or 'finished'})"
    if not request.targets:
        say(console, f"{request.grid_dir}: nothing to cancel, the jobs asked for are finished")
        return
    runners = f" by {', '.join(request.drivers)}" if request.drivers else ""
    say(console, f"cancel requested for {len(request.targets)} unfinished jobs of "
                 f"{request.grid_dir}{what}; {len(request.running)} running{runners}")
    if request.running:
        say(console, f"waiting up to {grace_s:g}s for them to stop at their epoch end ...")


def print_report(report: CancelReport, console: Console) -> None:
    request = report.request
    if report.scancelled_pending:
        say(console, f"scancel of queued SLURM jobs: {' '.join(report.scancelled_pending)}")
    if report.forced:
        stopped = [*report.signalled, *(f"scancel {i}" for i in report.scancelled)]
        say(console, "still running after the grace, stopped at once (back to their last "
                     "checkpoint): " + ("; ".join(stopped) or "nothing here to stop"))
    if report.still_running:
        say(console, f"{len(report.still_running)} jobs still run, on a host this command "
                     f"cannot signal: {', '.join(report.still_running)}; they stop at their next "
                     "epoch end")
    if not request.targets:
        return
    status = grid_status(request.grid_dir)
    say(console, " · ".join(f"{state} {count}" for state, count in status.counts.items())
        + f" ({report.seconds:.1f}s)")
    say(console, "`tvo run` on the same grid resumes the cancelled jobs from their checkpoints")
