"""How far the stacks in flight are, from their epoch events: progress and ETA move per epoch of
a stack, not only when a stack ends (a stack of 1,000 jobs may train for minutes)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from jobs.rundir.journal import EPOCH, JournalReader

POLL_S = 0.5


class InFlight:
    """Units in flight (stack id -> jobs) and the share of their epochs done, read by a thread
    every POLL_S seconds; `on_change` is called with the jobs' worth of work done in flight."""

    def __init__(self, grid_dir: Path, on_change: Callable[[float], None]) -> None:
        self._reader = JournalReader(grid_dir)
        self._on_change = on_change
        self._units: dict[str, int] = {}  # stack id -> jobs
        self._share: dict[str, float] = {}  # stack id -> share of its epochs done
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="tvo-in-flight", daemon=True)
        self._done = 0.0

    def __enter__(self) -> InFlight:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def started(self, stack: str, jobs: int) -> None:
        with self._lock:
            self._units[stack] = jobs

    def ended(self, stack: str) -> None:
        with self._lock:
            self._units.pop(stack, None)
            self._share.pop(stack, None)
        self._publish()

    def _poll(self) -> None:
        while not self._stop.wait(POLL_S):
            changed = False
            for event in self._reader.new_events():
                if event.get("event") != EPOCH:
                    continue
                stack, epochs = str(event.get("stack", "")), int(event.get("epochs", 0))
                with self._lock:
                    if stack in self._units and epochs > 0:
                        self._share[stack] = min(1.0, int(event.get("epoch", 0)) / epochs)
                        changed = True
            if changed:
                self._publish()

    def _publish(self) -> None:
        with self._lock:
            done = sum(self._units[stack] * share for stack, share in self._share.items()
                       if stack in self._units)
        if done != self._done:
            self._done = done
            self._on_change(done)
