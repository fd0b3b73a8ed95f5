"""The grid driver: dispatch a grid's unfinished jobs to a backend and record how each one ends.

Finished jobs are never dispatched. Before a job is dispatched this runner claims it (see
jobs.rundir.claims), so another runner on the same dir leaves it alone, and waits for the jobs the
other runner holds. At most `max_parallel` units are in flight at once, whatever the backend.
A unit that crashed, or a job that failed, is dispatched again up to `retries` times; a job
that diverged is a result and is not retried.

Cancel requests (see runner.dispatch.cancel): the run clears those of its jobs and of the grid
when it starts. Once the grid's request appears it launches nothing more and ends when the units in
flight have ended (their jobs stop at their epoch end, `cancelled`); a SIGTERM (from `tvo
cancel`) with the request present stops the units in flight at once and marks their jobs
cancelled. A crashed unit whose jobs were asked to stop is cancelled, not failed or retried.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cluster.base import Backend, JobRequest, Outcome, Resources, WorkUnit
from jobs.engine.packing import auto_pack_size, plan_packs
from jobs.rundir import results
from jobs.rundir.claims import ClaimBook, Holder, current_holder
from jobs.rundir.results import JobResult
from jobs.spec import JobSpec
from runner.dispatch.cancel import clear_requests
from runner.dispatch.outdir import run_dir
from runner.dispatch.run_state import Counts, JobEnd, RunOptions, RunReport

__all__ = ["Counts", "JobEnd", "RunOptions", "RunReport", "run_grid", "swept_keys"]

FINAL_STATES = (results.DONE, results.DIVERGED, results.CANCELLED)


Listener = Callable[[Counts, "JobEnd | None"], None]  # progress: counts, and the job that ended


def run_grid(specs: Sequence[JobSpec], grid_name: str, grid_dir: Path, backend: Backend,
             resources: Resources, options: RunOptions | None = None,
             listener: Listener | None = None) -> RunReport:
    """Run every unfinished job of `specs` on `backend`; never raises for a job's failure."""
    options = options or RunOptions()
    clear_requests(grid_dir, [spec.job_id for spec in specs])
    with ClaimBook(options.lease_s) as book:
        driver = _Driver(specs, grid_name, grid_dir, backend, book, resources, options, listener)
        try:
            driver.loop()
        except BaseException as stop:  # Ctrl-C, SIGTERM: stop what runs before giving claims away
            if isinstance(stop, KeyboardInterrupt) and results.cancel_requested(grid_dir):
                driver.stop_for_cancel()  # SIGTERM from `tvo cancel`: the run ends, cancelled
            else:
                backend.cancel()
                raise
        lost = [path.name for path in book.lost]
    return RunReport(grid_dir, driver.counts, driver.problems, driver.not_started, lost,
                     driver.detached, driver.cancelled, driver.cancel_requested)


class _Driver:
    def __init__(self, specs: Sequence[JobSpec], grid_name: str, grid_dir: Path,
                 backend: Backend, book: ClaimBook, resources: Resources, options: RunOptions,
                 listener: Listener | None) -> None:
        self.backend = backend
        self.book = book
        self.resources = resources
        self.options = options
        self.listener = listener or (lambda counts, end: None)
        # Absolute: a worker of a joined cluster does not share this process's working dir.
        swept = swept_keys(specs)
        self.requests = {spec.job_id: JobRequest(spec, str(run_dir(grid_dir.resolve(),
                                                                   spec.job_id)), grid_name,
                                                 options.tensorboard, swept)
                         for spec in specs}
        self.grid_dir = grid_dir
        self.counts = Counts(total=len(self.requests))
        self.problems: list[JobEnd] = []
        self.queue: deque[str] = deque()
        self.deferred: dict[str, Holder] = {}  # job -> the other runner that holds it
        self.in_flight: dict[str, WorkUnit] = {}  # unit key -> unit
        # units in flight sent ahead of a free slot (see loop): counted pending until one frees
        self.waiting: deque[str] = deque()
        self.slots = 1
        self.dispatches: Counter[str] = Counter()
        self.stop_launching = False
        self.not_started = 0
        self.detached = 0
        self.cancelled: list[JobEnd] = []
        self.cancel_requested = False
        self.pack = max(options.pack, 1)  # set when the loop knows its slots (pack=auto)
        for job_id, request in self.requests.items():
            path = Path(request.run_dir)
            if results.is_finished(path):
                self.counts.skipped += 1
                status = results.read_status(path)
                self._count_end(JobEnd(job_id, status["state"], status.get("error"),
                                       self._log(job_id)), notify=False)
            else:
                self.queue.append(job_id)
        self.counts.pending = len(self.queue)

    def loop(self) -> None:
        self.listener(self.counts, None)
        if self.options.detach:  # all at once: the cluster's queue and its %max_parallel pace it
            parallel = self.options.max_parallel or max(len(self.queue), 1)
            self.pack = self.options.pack or auto_pack_size(len(self.queue), parallel)
            self.slots = max(len(self.queue), 1)  # every unit is sent now, and counted running
            self._dispatch(self.slots)
            self.detached = sum(len(unit.jobs) for unit in self.in_flight.values())
            self.not_started = len(self.queue) + len(self.deferred)
            self.counts.ended_at = time.perf_counter()
            self.listener(self.counts, None)
            return
        window = (self.options.max_parallel or self.backend.capacity(self.resources)
                  or max(len(self.queue), 1))
        self.pack = self.options.pack or auto_pack_size(len(self.queue), window)
        self.slots = window
        # Where the backend queues units itself and keeps to its slots (and no max_parallel
        # asks the runner to), each slot also gets its next unit ahead: a worker that ends one
        # starts the next at once, instead of waiting while this runner records the ended jobs
        # and claims new ones (0.5-1 s between two 64-job stacks of the headline grid).
        ahead = window if self.backend.queues_ahead and not self.options.max_parallel else 0
        stream: Iterator[Outcome] | None = None
        while True:
            self._look_for_cancel()
            submitted = self._dispatch(window)  # the free slots first: they start now
            submitted += self._dispatch(window + ahead) if ahead else 0
            if submitted:
                stream = None  # ask the backend afresh: it now has more units
            if self.in_flight:
                stream = stream or self.backend.outcomes()
                outcome = next(stream, None)
                if outcome is None:
                    raise RuntimeError(f"backend {self.backend.name!r} stopped yielding outcomes "
                                       f"with {len(self.in_flight)} units in flight")
                self._handle(outcome)
                self._look_at_deferred()
            elif self.deferred and not self.stop_launching:
                time.sleep(self.options.poll_s)
                self._look_at_deferred()
            else:
                break
        self._finish()

    def _finish(self) -> None:
        self.not_started = len(self.queue) + len(self.deferred)
        self.counts.ended_at = time.perf_counter()
        self.listener(self.counts, None)

    # -- cancel -----------------------------------------------------------------------------------
    def _look_for_cancel(self) -> None:
        """One stat per turn of the loop: the grid's cancel request stops all launching."""
        if not self.cancel_requested and results.cancel_requested(self.grid_dir):
            self.cancel_requested = self.stop_launching = True

    def stop_for_cancel(self) -> None:
        """Stop the units in flight now: their jobs keep their last checkpoint, cancelled."""
        self.cancel_requested = self.stop_launching = True
        self.backend.cancel()
        self._count_started(everything=True)
        for unit in list(self.in_flight.values()):
            for request in unit.jobs:
                path = Path(request.run_dir)
                self._move(running=-1)
                status = results.read_status(path)
                if results.is_finished(path):
                    self._count_end(JobEnd(request.spec.job_id, status["state"],
                                           status.get("error"), self._log(request.spec.job_id)))
                else:
                    _record_cancelled(path)
                    self._count_end(JobEnd(request.spec.job_id, results.CANCELLED, None,
                                           self._log(request.spec.job_id)))
                self.book.release(path)
        self.in_flight.clear()
        self._finish()

    # -- dispatch ---------------------------------------------------------------------------------
    def _dispatch(self, window: int) -> int:
        claimed: list[JobRequest] = []
        room = (window - len(self.in_flight)) * self.pack  # jobs the free slots take
        while self.queue and not self.stop_launching and len(claimed) < room:
            job_id = self.queue.popleft()
            request = self.requests[job_id]
            path = Path(request.run_dir)
            holder = self.book.acquire(path)
            if holder is not None:
                self.deferred[job_id] = holder
                self._move(pending=-1, elsewhere=+1)
                continue
            ended = self._ended_elsewhere(path, self.book.replaced(path))
            if ended is not None:  # another runner ran it to its end since we looked
                self.book.release(path)
                self._move(pending=-1)
                self._count_end(JobEnd(job_id, ended["state"], ended.get("error"),
                                       self._log(job_id)))
                continue
            claimed.append(request)
        units = self._units(claimed, window - len(self.in_flight))
        if not units:
            return 0
        time.sleep(self.book.grace_left())  # a dead runner's workers stop within the grace
        for unit in units:
            for request in unit.jobs:  # (its RunDir sweeps a killed writer's partial files)
                self.dispatches[request.spec.job_id] += 1
            self.in_flight[unit.key] = unit
            self.waiting.append(unit.key)
        self._count_started()
        self.backend.submit(units, self.resources)
        self.listener(self.counts, None)  # the units just sent run now: show them as running
        return len(units)

    def _units(self, claimed: list[JobRequest], slots: int) -> list[WorkUnit]:
        """One unit per job, or packs of compatible jobs; jobs beyond the free slots wait
        (still claimed by this runner) for the next dispatch."""
        if self.pack <= 1:
            return [WorkUnit((request,)) for request in claimed]
        by_id = {request.spec.job_id: request for request in claimed}
        packs = plan_packs([request.spec for request in claimed], self.pack)
        units = [WorkUnit(tuple(by_id[spec.job_id] for spec in pack)) for pack in packs]
        for unit in reversed(units[slots:]):
            self.queue.extendleft(reversed([request.spec.job_id for request in unit.jobs]))
        return units[:slots]

    def _look_at_deferred(self) -> None:
        for job_id in list(self.deferred):
            path = Path(self.requests[job_id].run_dir)
            holder = current_holder(path)
            ended = self._ended_elsewhere(path, holder, concurrent=self.deferred[job_id])
            if ended is not None:
                del self.deferred[job_id]
                self._move(elsewhere=-1)
                self._count_end(JobEnd(job_id, ended["state"], ended.get("error"),
                                       self._log(job_id)))
            elif holder is None or not holder.is_live():  # released, or its runner died
                del self.deferred[job_id]
                self.queue.appendleft(job_id)
                self._move(elsewhere=-1, pending=+1)

    def _ended_elsewhere(self, path: Path, holder: Holder | None,
                         concurrent: Holder | None = None) -> dict[str, Any] | None:
        """The status of a job another runner ran to its end, or None when it is ours to run.

        Finished (done, diverged) means ended, whoever ran it. A job that failed or was
        cancelled under a runner that still runs ended too: it is that runner's to retry, and
        running it here as well would run it twice. So did one that ended under `concurrent`,
        the runner this one found holding it (during this run), even if that runner has ended
        its run since: the two runs ran side by side. Under any other runner that is gone, it is
        ours.
        """
        status = results.read_status(path)
        if results.is_finished(path):
            return status
        if (holder is not None and holder.released and holder.runner != self.book.runner
                and (holder.runner_alive()
                     or (concurrent is not None and holder.runner == concurrent.runner))
                and status["state"] in (results.FAILED, results.CANCELLED)):
            return status
        return None

    # -- outcomes ---------------------------------------------------------------------------------
    def _count_started(self, everything: bool = False) -> None:
        """Count the units in flight that have a slot as running, in the order they were sent
        (or `everything` sent); the others stay pending, queued in the backend."""
        while self.waiting and (everything
                                or len(self.in_flight) - len(self.waiting) < self.slots):
            self._started(self.in_flight[self.waiting[0]])

    def _started(self, unit: WorkUnit) -> None:
        self.waiting.remove(unit.key)
        self._move(pending=-len(unit.jobs), running=+len(unit.jobs))

    def _handle(self, outcome: Outcome) -> None:
        if outcome.unit.key in self.waiting:  # it ended before its turn (a crash, a cancel)
            self._started(outcome.unit)
        self.in_flight.pop(outcome.unit.key, None)
        self._count_started()
        by_id = {result.job_id: result for result in outcome.results}
        for request in outcome.unit.jobs:
            job_id = request.spec.job_id
            path = Path(request.run_dir)
            result = by_id.get(job_id)
            self._move(running=-1)
            if result is None and results.is_finished(path):  # it ended before the crash
                status = results.read_status(path)
                result = JobResult(job_id, status["state"], str(path), status.get("error"))
            if result is not None and result.state in FINAL_STATES:
                self.book.release(path)
                self._count_end(JobEnd(job_id, result.state, result.error, self._log(job_id)))
                continue
            if result is None and (self.cancel_requested or results.cancel_requested(path)):
                _record_cancelled(path)  # stopped by force (scancel, a signal): as asked
                self.book.release(path)
                self._count_end(JobEnd(job_id, results.CANCELLED, None, self._log(job_id)))
                continue
            error = result.error if result is not None else f"worker crashed: {outcome.crash}"
            if self.dispatches[job_id] <= self.options.retries and not self.stop_launching:
                self.queue.appendleft(job_id)  # still claimed by us: no other runner takes it
                self._move(pending=+1)
                continue
            if result is None:
                _record_crash(path, error, outcome.info.get("traceback"))
            self.book.release(path)
            self._count_end(JobEnd(job_id, results.FAILED, error, self._log(job_id)))
            if self.options.fail_fast:
                self.stop_launching = True

    # -- counting ---------------------------------------------------------------------------------
    def _log(self, job_id: str) -> str:
        """The job's log path as the user named the grid dir (relative stays relative)."""
        return str(run_dir(self.grid_dir, job_id) / results.LOG_FILE)

    def _move(self, **changes: int) -> None:
        for name, change in changes.items():
            setattr(self.counts, name, getattr(self.counts, name) + change)

    def _count_end(self, end: JobEnd, notify: bool = True) -> None:
        state = end.state if end.state in FINAL_STATES else results.FAILED
        self._move(**{state: +1})
        if state in (results.FAILED, results.DIVERGED):
            self.problems.append(end)
        elif state == results.CANCELLED:
            self.cancelled.append(end)
        if notify:
            self.listener(self.counts, end)


def swept_keys(specs: Sequence[JobSpec]) -> tuple[str, ...]:
    """The settings whose values differ between jobs: what tells a grid's jobs apart."""
    values = [spec.to_dict() for spec in specs]
    if len(values) < 2:
        return ()
    return tuple(key for key in values[0] if any(other[key] != values[0][key]
                                                 for other in values[1:]))


def _record_cancelled(path: Path) -> None:
    """A job stopped from outside before run_job could say so: it is cancelled, resumable."""
    status: dict[str, Any] = results.read_status(path)
    status.update(state=results.CANCELLED, error=None,
                  log=status.get("log", str(path / results.LOG_FILE)),
                  finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    results.write_status(path, status)


def _record_crash(path: Path, error: str, trace: str | None) -> None:
    """The worker died before run_job could say how the job ended: say it for it."""
    status: dict[str, Any] = results.read_status(path)
    status.update(state=results.FAILED, error=error, crashed=True,
                  finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  log=status.get("log", str(path / results.LOG_FILE)))
    if trace:
        status["traceback"] = trace
    results.write_status(path, status)
