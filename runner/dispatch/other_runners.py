"""Other runners on the same grid dir: which jobs are free to start here, and whether a job
another runner held has ended.

Runners share a grid dir through its claims (jobs.rundir.claims): a job held by a live runner
is left to it, and one whose runner died is free again. What a job's record means depends on
who held it: see `ended_elsewhere`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from jobs.rundir.claims import Holder, live_held
from jobs.rundir.index import StateIndex
from jobs.rundir.states import CANCELLED, FAILED, JobRecord
from jobs.spec import JobSpec


def jobs_to_start(specs: Sequence[JobSpec], grid_dir: Path) -> list[str]:
    """The jobs of `specs` that a run would dispatch now: not finished, and held by no live
    runner."""
    if not grid_dir.is_dir():
        return [spec.job_id for spec in specs]
    index = StateIndex(grid_dir).refresh()
    finished, held = index.finished_ids(), live_held(grid_dir)
    return [spec.job_id for spec in specs if spec.job_id not in finished | held]


def ended_elsewhere(record: JobRecord, holder: Holder | None, runner: str,
                    concurrent: Holder | None = None) -> JobRecord | None:
    """`record` when its job ended under another runner than `runner` (this one), None when it
    is this runner's to run; `holder` is who holds the job's claim now.

    Finished (done, diverged) means ended, whoever ran it. A job that failed or was cancelled
    under a runner that still runs ended too: it is that runner's to retry, and running it here
    as well would run it twice. So did one that ended under `concurrent`, the runner this one
    found holding it (during this run), even if that runner has ended its run since: the two
    runs ran side by side. Under any other runner that is gone, it is ours.
    """
    if record.finished:
        return record
    if record.state not in (FAILED, CANCELLED):
        return None
    if holder is not None and holder.runner.runner != runner and holder.released \
            and holder.runner_alive():
        return record
    if concurrent is not None and (holder is None or holder.runner.runner
                                   == concurrent.runner.runner):
        return record
    return None
