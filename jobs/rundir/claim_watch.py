"""In a worker: stop this process once the runner that dispatched its jobs is gone (the
worker's side of jobs.rundir.claims: a worker whose runner died must not write on)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from jobs.rundir.claims import WATCH_INTERVAL_S, RunnerFile
from jobs.rundir.layout import STATE_SUFFIX, OutputDir

WORKER_LEASE_FRACTION = 0.75  # a worker gives up before anyone may take its jobs over
WATCH_EXIT_CODE = 75  # a worker that stopped because its runner is gone


class ClaimWatch:
    """In a worker: stop this process once the runner that dispatched its jobs is gone.

    Use around the work: `with ClaimWatch(grid_dir, runner_id): ...`. `on_lost` is called with
    the reason; the default exits the process at once, because a worker whose runner is gone
    must not write another byte into a grid dir that a new runner may now own.
    """

    def __init__(self, grid_dir: Path, runner: str, interval_s: float = WATCH_INTERVAL_S,
                 on_lost: Callable[[str], None] | None = None) -> None:
        self._file = RunnerFile(OutputDir(grid_dir).claims / f"{runner}{STATE_SUFFIX}")
        self._runner = runner
        self._interval_s = interval_s
        self._on_lost = on_lost or _exit_worker
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="tvo-claim-watch", daemon=True)

    def __enter__(self) -> ClaimWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def lost(self) -> str | None:
        """Why this worker must stop, or None while its runner lives."""
        if not self._file.refresh():
            return f"{self._file.path} is gone: its runner ended or was thought dead"
        runner = self._file.runner
        if runner is None or runner.runner != self._runner:
            return f"{self._file.path} does not name runner {self._runner}"
        if not runner.alive(lease_fraction=WORKER_LEASE_FRACTION):
            return f"its runner {runner.name} is gone"
        return None

    def _watch(self) -> None:
        while not self._stop.wait(self._interval_s):
            reason = self.lost()
            if reason is not None:
                self._on_lost(reason)
                return


def _exit_worker(reason: str) -> None:
    os.write(2, f"tvo: stopping this worker: {reason}\n".encode())
    os._exit(WATCH_EXIT_CODE)
