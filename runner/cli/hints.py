"""What `tvo run` tells the user to do after a fault it can recover from: a write the disk
refused, a worker that died, a checkpoint that went missing."""

from __future__ import annotations

from jobs.rundir.disk import advice_for_message
from runner.dispatch.driver import CRASHED, JobEnd, RunReport


def what_to_do(problems: list[JobEnd]) -> list[str]:
    """One line per kind of failure the user can fix and resume: a write the disk refused, a
    worker that died (killed, out of memory, cancelled by the cluster)."""
    hints = []
    disk = [end for end in problems if advice_for_message(end.error or "")]
    if disk:
        hints.append(f"{len(disk)} jobs failed writing to the grid dir: "
                     f"{advice_for_message(disk[0].error or '')}, then run the same command "
                     "again; finished jobs are kept and these resume from their last checkpoint")
    crashed = [end for end in problems
               if (end.error or "").startswith(CRASHED) and end not in disk]
    if crashed:
        hints.append(f"{len(crashed)} jobs lost their worker (killed, cancelled by the cluster, "
                     "or out of memory): run the same command again to resume them from their "
                     "last checkpoint, or add --retries N to retry them within the run")
    return hints


def lost_checkpoints_text(report: RunReport) -> str:
    """Jobs whose saved checkpoint was gone: they trained from their first epoch."""
    job_id, epoch = next(iter(report.lost_checkpoints.items()))
    more = len(report.lost_checkpoints) - 1
    return (f"warning: the checkpoint of job {job_id} (after epoch {epoch})"
            + (f" and of {more} more jobs" if more else "")
            + f" was gone from {report.grid_dir / 'checkpoints'} (deleted?): they trained "
            "again from their first epoch, to the same results")
