"""The grid driver: dispatch a grid's unfinished jobs to a backend, stack by stack, and record
how each one ends.

Finished jobs are never dispatched. Before a stack is dispatched this runner claims its jobs
(see jobs.rundir.claims), so another runner on the same dir leaves them alone, and waits for the
jobs the other runner holds (runner.dispatch.other_runners: which jobs are free, which ended
under another runner). At most `max_parallel` units are in flight at once, whatever the
backend. A unit that crashed, or a job that failed, is dispatched again up to `retries` times,
job by job; a job that diverged is a result and is not retried. Everything the run records goes
through the grid dir's one writer (jobs.rundir.run_dir.RunDir), and job state is read through
its index.

Cancel requests (see runner.dispatch.cancel): the run clears those of its jobs and of the grid
when it starts. Once the grid's request appears it launches nothing more and ends when the units
in flight have ended (their jobs stop at their epoch end, `cancelled`); a SIGTERM (from `tvo
cancel`) with the request present stops the units in flight at once and records their jobs
cancelled. A crashed unit whose jobs were asked to stop is cancelled, not failed or retried.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from cluster.base import Backend, Outcome, Resources, WorkUnit
from jobs.engine.packing import plan_packs, plan_stacks
from jobs.request import RunSettings, StackRequest, swept_keys
from jobs.rundir.claims import ClaimBook, Holder
from jobs.rundir.index import StateIndex
from jobs.rundir.run_dir import RunDir
from jobs.rundir.states import CANCELLED, DIVERGED, DONE, FAILED, JobRecord
from jobs.spec import JobSpec
from runner.dispatch.in_flight import InFlight
from runner.dispatch.other_runners import ended_elsewhere, jobs_to_start
from runner.dispatch.run_state import Counts, JobEnd, RunOptions, RunReport

__all__ = ["Counts", "JobEnd", "RunOptions", "RunReport", "jobs_to_start", "run_grid",
           "wait_for_others"]

FINAL_STATES = (DONE.value, DIVERGED.value, CANCELLED.value)
CRASHED = "worker crashed: "  # how the error of a job whose worker died begins

Listener = Callable[[Counts, "JobEnd | None"], None]  # progress: counts, and a job that ended


class _NoBackend(Backend):
    """What a run that starts nothing is given: it only waits for other runners' jobs."""

    name = "none"

    def submit(self, units: Sequence[WorkUnit], resources: Resources) -> None:
        raise RuntimeError("a run that waits for other runners launches nothing")

    def outcomes(self) -> Iterator[Outcome]:
        return iter(())

    def cancel(self) -> None:
        pass


def wait_for_others(specs: Sequence[JobSpec], grid_name: str, grid_dir: Path,
                    resources: Resources, options: RunOptions | None = None,
                    listener: Listener | None = None) -> RunReport:
    """Follow a grid whose jobs are all finished or held by other runners, without starting a
    backend, until no other runner holds one; jobs that became free (their runner died)
    come back as `not_started`: the caller starts a backend for them."""
    options = dataclasses.replace(options or RunOptions(), launch=False)
    return run_grid(specs, grid_name, grid_dir, _NoBackend(), resources, options, listener)


def run_grid(specs: Sequence[JobSpec], grid_name: str, grid_dir: Path, backend: Backend,
             resources: Resources, options: RunOptions | None = None,
             listener: Listener | None = None) -> RunReport:
    """Run every unfinished job of `specs` on `backend`; never raises for a job's failure."""
    options = options or RunOptions()
    run_dir = RunDir(grid_dir, grid_name)
    run_dir.clear_cancel([spec.job_id for spec in specs])
    with ClaimBook(grid_dir, options.lease_s) as book:
        driver = _Driver(specs, grid_name, grid_dir, backend, book, resources, options, listener)
        try:
            with InFlight(grid_dir, driver.in_flight_progress) as in_flight:
                driver.in_flight_feed = in_flight
                driver.loop()
        except BaseException as stop:  # Ctrl-C, SIGTERM: stop what runs before giving claims away
            if isinstance(stop, KeyboardInterrupt) and run_dir.cancel_requested():
                driver.stop_for_cancel()  # SIGTERM from `tvo cancel`: the run ends, cancelled
            else:
                backend.cancel()
                raise
        lost = book.lost
    driver.index.refresh()
    run_dir.sweep(driver.index.finished_ids())
    return RunReport(grid_dir, driver.counts, driver.problems, driver.not_started, lost,
                     driver.detached, driver.cancelled, driver.cancel_requested,
                     driver.set_aside, driver.lost_checkpoints)


class _Driver:
    def __init__(self, specs: Sequence[JobSpec], grid_name: str, grid_dir: Path,
                 backend: Backend, book: ClaimBook, resources: Resources, options: RunOptions,
                 listener: Listener | None) -> None:
        self.backend = backend
        self.book = book
        self.resources = resources
        self.options = options
        self._listener = listener or (lambda counts, end: None)
        self._notify_lock = threading.Lock()
        self.grid_dir = grid_dir
        self.run_dir = RunDir(grid_dir, grid_name)
        self.index = StateIndex(grid_dir).refresh()
        self.set_aside = self.run_dir.set_aside(self.index.broken_files())
        if self.set_aside:  # their jobs are not done: train them again
            self.index = StateIndex(grid_dir).refresh()
        self.specs = {spec.job_id: spec for spec in specs}
        # Absolute: a worker of a joined cluster does not share this process's working dir.
        self.unit_dir = str(grid_dir.resolve())
        self.settings = RunSettings(grid_name, options.tensorboard, swept_keys(specs),
                                    options.checkpoint_seconds, book.runner)
        self.counts = Counts(total=len(self.specs))
        self.problems: list[JobEnd] = []
        self.queue: deque[str] = deque()  # in the order of the planned stacks
        self.stack_of: dict[str, int] = {}  # job -> its planned stack (jobs of one go together)
        self.deferred: dict[str, Holder] = {}  # job -> the other runner that holds it
        self.in_flight: dict[str, WorkUnit] = {}  # unit key -> unit
        self.in_flight_feed: InFlight | None = None
        # units in flight sent ahead of a free slot (see loop): counted pending until one frees
        self.waiting: deque[str] = deque()
        self.slots = 1
        self.dispatches: Counter[str] = Counter()
        self.stop_launching = False
        self.not_started = 0
        self.detached = 0
        self.cancelled: list[JobEnd] = []
        self.cancel_requested = False
        finished = self.index.finished_ids()
        for job_id in self.specs:
            if job_id in finished:
                self.counts.skipped += 1
                self._count_end(self._end_of(self.index.record(job_id)), notify=False)
            else:
                self.queue.append(job_id)
        self.counts.pending = len(self.queue)
        self.lost_checkpoints = self.run_dir.lost_checkpoints(self.queue, self.index)

    def loop(self) -> None:
        self.notify(None)
        if self.options.detach:  # all at once: the cluster's queue and its %max_parallel pace it
            self._plan(self.options.max_parallel or max(len(self.queue), 1))
            self.slots = max(len(self.queue), 1)  # every unit is sent now, and counted running
            self._dispatch(self.slots)
            self.detached = sum(len(unit.specs) for unit in self.in_flight.values())
            self.not_started = len(self.queue) + len(self.deferred)
            self.counts.ended_at = time.perf_counter()
            self.notify(None)
            return
        if not self.options.launch:  # only follow the jobs other runners hold
            self._defer_held()
        window = (self.options.max_parallel
                  or self.backend.capacity(self.resources,
                                           [self.specs[job_id] for job_id in self.queue])
                  or max(len(self.queue), 1))
        self._plan(window)
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

    def _plan(self, slots: int) -> None:
        """Put the queue in the order of its stacks: `pack` N cuts compatible jobs into stacks
        of at most N; auto (0) balances their work over the slots, sized to the device."""
        specs = [self.specs[job_id] for job_id in self.queue]
        if self.options.pack:
            stacks = plan_packs(specs, self.options.pack)
        else:
            memory = self.backend.device_memory(specs, self.resources) if specs else None
            stacks = plan_stacks(specs, slots, device_memory=memory)
        self.queue = deque(spec.job_id for stack in stacks for spec in stack)
        self.stack_of = {spec.job_id: index for index, stack in enumerate(stacks)
                         for spec in stack}

    def notify(self, end: JobEnd | None) -> None:
        with self._notify_lock:
            self._listener(self.counts, end)

    def in_flight_progress(self, done: float) -> None:
        self.counts.in_flight_done = done
        self.notify(None)

    def _finish(self) -> None:
        self.not_started = len(self.queue) + len(self.deferred)
        self.counts.in_flight_done = 0.0
        self.counts.ended_at = time.perf_counter()
        self.notify(None)

    # -- cancel -----------------------------------------------------------------------------------
    def _look_for_cancel(self) -> None:
        """One stat per turn of the loop: the grid's cancel request stops all launching."""
        if not self.cancel_requested and self.run_dir.cancel_requested():
            self.cancel_requested = self.stop_launching = True

    def stop_for_cancel(self) -> None:
        """Stop the units in flight now: their jobs keep their last checkpoint, cancelled."""
        self.cancel_requested = self.stop_launching = True
        self.backend.cancel()
        self._count_started(everything=True)
        self.index.refresh()
        stopped = []
        for unit in list(self.in_flight.values()):
            for job_id in unit.job_ids:
                self._move(running=-1)
                record = self.index.record(job_id)
                if record.finished:
                    self._count_end(self._end_of(record))
                else:
                    stopped.append(job_id)
                    self._count_end(JobEnd(job_id, CANCELLED.value, None, record.log))
            self.book.release(unit.job_ids)
        self.run_dir.record_cancelled(stopped)
        self.in_flight.clear()
        self._finish()

    # -- dispatch ---------------------------------------------------------------------------------
    def _dispatch(self, window: int) -> int:
        """Claim jobs for the free slots and send them as units; returns how many were sent.
        Jobs another runner holds, or ran to their end meanwhile, are set aside and more are
        claimed in their place."""
        units: list[WorkUnit] = []
        while not units and self.queue and not self.stop_launching and self.options.launch:
            free = window - len(self.in_flight)
            if free <= 0:
                break
            wanted: list[str] = []  # the jobs of the next `free` planned stacks
            stacks: set[int] = set()
            while self.queue and (len(stacks) < free
                                  or self.stack_of.get(self.queue[0]) in stacks):
                job_id = self.queue.popleft()
                stacks.add(self.stack_of.get(job_id, -1))
                wanted.append(job_id)
            units = self._units(self._claim(wanted), free)
        if not units:
            return 0
        time.sleep(self.book.grace_left())  # a dead runner's workers stop within the grace
        for unit in units:
            for job_id in unit.job_ids:
                self.dispatches[job_id] += 1
            self.in_flight[unit.key] = unit
            self.waiting.append(unit.key)
            if self.in_flight_feed is not None:
                self.in_flight_feed.started(unit.key, len(unit.specs))
        self._count_started()
        self.backend.submit(units, self.resources)
        self.notify(None)  # the units just sent run now: show them as running
        return len(units)

    def _claim(self, wanted: list[str]) -> list[str]:
        """The jobs of `wanted` this runner now holds and should run."""
        taken = self.book.take(wanted)
        for job_id, holder in taken.elsewhere.items():
            self.deferred[job_id] = holder
            self._move(pending=-1, elsewhere=+1)
        claimed = taken.taken
        if taken.replaced:  # another runner had them: it may have run some to their end since
            self.index.refresh()
            ended = {job_id: record for job_id, holder in taken.replaced.items()
                     if (record := ended_elsewhere(self.index.record(job_id), holder,
                                                     self.book.runner)) is not None}
            if ended:
                self.book.release(ended)
                for record in ended.values():
                    self._move(pending=-1)
                    self._count_end(self._end_of(record))
                claimed = [job_id for job_id in claimed if job_id not in ended]
        return claimed

    def _units(self, claimed: list[str], slots: int) -> list[WorkUnit]:
        """The claimed jobs as the stacks they were planned in; stacks beyond the free slots
        wait (still claimed by this runner) for the next dispatch."""
        stacks: dict[int, list[JobSpec]] = {}
        for job_id in claimed:
            stacks.setdefault(self.stack_of.get(job_id, -1), []).append(self.specs[job_id])
        units = [StackRequest(self.unit_dir, tuple(pack), self.settings)
                 for specs in stacks.values() for pack in plan_packs(specs, len(specs))]
        for unit in reversed(units[slots:]):
            self.queue.extendleft(reversed(unit.job_ids))
        return units[:slots]

    def _defer_held(self) -> None:
        """Set aside (to wait for) every queued job a live runner holds, without claiming."""
        holders = self.book.holders()
        for job_id in list(self.queue):
            holder = holders.get(job_id)
            if holder is not None and holder.is_live() and holder.runner.runner != self.book.runner:
                self.queue.remove(job_id)
                self.deferred[job_id] = holder
                self._move(pending=-1, elsewhere=+1)

    def _look_at_deferred(self) -> None:
        if not self.deferred:
            return
        holders = self.book.holders(list(self.deferred))
        self.index.refresh()
        for job_id in list(self.deferred):
            holder = holders.get(job_id)
            ended = ended_elsewhere(self.index.record(job_id), holder, self.book.runner,
                                    concurrent=self.deferred[job_id])
            if ended is not None:
                del self.deferred[job_id]
                self._move(elsewhere=-1)
                self._count_end(self._end_of(ended))
            elif holder is None or not holder.is_live():  # released, or its runner died
                del self.deferred[job_id]
                self.queue.appendleft(job_id)
                self._move(elsewhere=-1, pending=+1)

    # -- outcomes ---------------------------------------------------------------------------------
    def _count_started(self, everything: bool = False) -> None:
        """Count the units in flight that have a slot as running, in the order they were sent
        (or `everything` sent); the others stay pending, queued in the backend."""
        while self.waiting and (everything
                                or len(self.in_flight) - len(self.waiting) < self.slots):
            self._started(self.in_flight[self.waiting[0]])

    def _started(self, unit: WorkUnit) -> None:
        self.waiting.remove(unit.key)
        self._move(pending=-len(unit.specs), running=+len(unit.specs))

    def _handle(self, outcome: Outcome) -> None:
        unit = outcome.unit
        if unit.key in self.waiting:  # it ended before its turn (a crash, a cancel)
            self._started(unit)
        self.in_flight.pop(unit.key, None)
        if self.in_flight_feed is not None:
            self.in_flight_feed.ended(unit.key)
        self._count_started()
        by_id = {result.job_id: result for result in outcome.results}
        if len(by_id) < len(unit.specs):  # a crash: what did the worker commit before it?
            self.index.refresh()
        whole_grid, asked = self.run_dir.cancel_requests()
        force_cancelled = by_id == {} and any(job_id in asked for job_id in unit.job_ids)
        error = f"{CRASHED}{outcome.crash}"
        released, cancelled, crashed = [], [], []
        for job_id in unit.job_ids:
            self._move(running=-1)
            result = by_id.get(job_id)
            record = self.index.record(job_id) if result is None else None
            if record is not None and record.finished:  # it ended before the crash
                released.append(job_id)
                self._count_end(self._end_of(record))
                continue
            if result is not None and result.state in FINAL_STATES:
                released.append(job_id)
                self._count_end(JobEnd(job_id, result.state, result.error, result.log))
                continue
            if result is None and (self.cancel_requested or whole_grid or job_id in asked):
                cancelled.append(job_id)  # stopped by force (scancel, a signal): as asked
                released.append(job_id)
                self._count_end(JobEnd(job_id, CANCELLED.value, None, ""))
                continue
            if result is None and force_cancelled:  # a mate was stopped by force: not its fault
                self.dispatches[job_id] -= 1
            if self.dispatches[job_id] <= self.options.retries and not self.stop_launching:
                self.queue.appendleft(job_id)  # still claimed by us: no other runner takes it
                self._move(pending=+1)
                continue
            released.append(job_id)
            if result is None:
                crashed.append(job_id)
            self._count_end(JobEnd(job_id, FAILED.value, result.error if result else error,
                                   result.log if result else ""))
            if self.options.fail_fast:
                self.stop_launching = True
        self.run_dir.record_cancelled(cancelled)
        if crashed:
            self.run_dir.record_crash(crashed, error, outcome.info.get("traceback"))
        self.book.release(released)
        self.counts.units_ended += 1
        self.notify(None)

    # -- counting ---------------------------------------------------------------------------------
    def _end_of(self, record: JobRecord) -> JobEnd:
        return JobEnd(record.job_id, record.state.value, record.error, record.log)

    def _move(self, **changes: int) -> None:
        for name, change in changes.items():
            setattr(self.counts, name, getattr(self.counts, name) + change)

    def _count_end(self, end: JobEnd, notify: bool = True) -> None:
        state = end.state if end.state in FINAL_STATES else FAILED.value
        self._move(**{state: +1})
        if state in (FAILED.value, DIVERGED.value):
            self.problems.append(end)
        elif state == CANCELLED.value:
            self.cancelled.append(end)
        if notify and state != DONE.value:  # done jobs are shown once per unit, not each
            self.notify(end)
