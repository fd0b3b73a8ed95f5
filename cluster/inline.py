"""The inline backend: units run one after another in this process, for debugging and tests."""

from __future__ import annotations

import traceback
from collections import deque
from collections.abc import Iterator, Sequence

from cluster.backends import BackendSettings, run_entry
from cluster.base import Backend, Outcome, Resources, WorkUnit
from jobs.spec import JobSpec


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

    def capacity(self, resources: Resources, specs: Sequence[JobSpec] = ()) -> int | None:
        return 1

    def device_memory(self, specs: Sequence[JobSpec], resources: Resources) -> int | None:
        """The free memory of this process's GPU, where the jobs train on one."""
        return cuda_free_memory([spec.device for spec in specs])


def cuda_free_memory(devices: Sequence[str]) -> int | None:
    """Free bytes of the CUDA device jobs with these `device` settings train on here, or None
    when they train on the CPU."""
    import torch

    if not any(device == "cuda" or (device == "auto" and torch.cuda.is_available())
               for device in devices) or not torch.cuda.is_available():
        return None
    free, _ = torch.cuda.mem_get_info()
    return int(free)
