"""Units sent ahead: on a backend that queues units itself (Ray), each slot also holds its next
unit, so a worker that ends one starts the next without waiting for the runner; progress counts
only the units that have a slot as running."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path

from cluster.base import Backend, Outcome, Resources, WorkUnit
from jobs.rundir.results import JobResult
from jobs.spec import JobSpec
from runner.dispatch.driver import Counts, RunOptions, run_grid

SLOTS = 2


class QueueingBackend(Backend):
    """Two slots and a queue, like Ray: records how many units it held at once."""

    name = "queueing"
    queues_ahead = True

    def __init__(self) -> None:
        self.queued: deque[WorkUnit] = deque()
        self.most_held = 0

    def submit(self, units: Sequence[WorkUnit], resources: Resources) -> None:
        self.queued.extend(units)
        self.most_held = max(self.most_held, len(self.queued))

    def outcomes(self) -> Iterator[Outcome]:
        while self.queued:
            unit = self.queued.popleft()
            yield Outcome(unit, tuple(JobResult(spec.job_id, "done", None, 1, 0.5)
                                      for spec in unit.specs))

    def cancel(self) -> None:
        self.queued.clear()

    def capacity(self, resources: Resources, specs: Sequence[JobSpec] = ()) -> int | None:
        return SLOTS


def run(tmp_path: Path, options: RunOptions) -> tuple[QueueingBackend, list[Counts], Counts]:
    specs = [JobSpec.from_dict({"seed": seed, "epochs": 1}) for seed in range(8)]
    backend = QueueingBackend()
    seen: list[Counts] = []
    report = run_grid(specs, "ahead", tmp_path / "ahead", backend, Resources(), options,
                      lambda counts, end: seen.append(Counts(**vars(counts))))
    return backend, seen, report.counts


def test_each_slot_gets_its_next_unit_ahead_and_only_slotted_units_count_as_running(tmp_path):
    backend, seen, final = run(tmp_path, RunOptions(pack=1))
    assert backend.most_held == 2 * SLOTS
    assert max(counts.running for counts in seen) == SLOTS
    assert all(c.running + c.pending + c.finished == c.total for c in seen)
    assert (final.done, final.running, final.pending) == (8, 0, 0)


def test_max_parallel_keeps_units_in_flight_to_its_number(tmp_path):
    backend, seen, final = run(tmp_path, RunOptions(pack=1, max_parallel=SLOTS))
    assert backend.most_held == SLOTS
    assert final.done == 8
