"""The inline backend: units run one after another in this process, for debugging and tests."""

from __future__ import annotations

import traceback
from collections import deque
from collections.abc import Iterator, Sequence

from cluster.backends import BackendSettings, run_entry
from cluster.base import Backend, Outcome, Resources, WorkUnit


class InlineBackend(Backend):
    """Runs each unit when its outcome is asked for; an exception escaping a unit is a crash."""

    name = "inline"

    def __init__(self, settings: BackendSettings) -> None:
        self._entry = settings.entry
        self._queue: deque[tuple[WorkUnit, Resources]] = deque()

    def submit(self, units: Sequence[WorkUnit], resources: Resources) -> None:
        self._queue.extend((unit, resources) for unit in units)

    def outcomes(self) -> Iterator[Outcome]:
        import torch

        while self._queue:
            unit, resources = self._queue.popleft()
            threads = torch.get_num_threads()
            try:
                results = run_entry(self._entry, unit, resources.cpus)
            except Exception as exc:  # the unit itself broke (run_job never raises for a job)
                yield Outcome(unit, crash=f"{type(exc).__name__}: {exc}",
                              info={"traceback": traceback.format_exc()})
                continue
            finally:  # the unit set torch's threads to its cpus: this process gets its own back
                torch.set_num_threads(threads)
            yield Outcome(unit, tuple(results))

    def cancel(self) -> None:
        self._queue.clear()

    def capacity(self, resources: Resources) -> int | None:
        return 1
