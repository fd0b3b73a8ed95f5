"""What the server remembers between requests, so that a page's burst of requests (and the next
refresh) costs one read of the grid, not one per request.

- `Recent`: a value read at most once per interval (the longer of MIN_AGE_S and a few times what
  the last read cost), one read at a time per key; requests that arrive during a read wait for
  it and share it. For grid_status, which reads the output dir. A value may also carry a stamp
  that says when it is out of date (load_grid's: the job counts by state, which change when a
  job's results are committed): then it is read again when the stamp changes, and otherwise
  once every STAMPED_MAX_AGE_S.
- `Memo`: values computed from one version of a grid's results (load_grid's fingerprint of
  the metrics files it read), kept until that version changes. For the aggregates.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

MIN_AGE_S = 1.0  # a page polls every 2-3 s; within a second the same read answers again
COST_FACTOR = 4.0  # a read that takes 2 s is repeated at most every 8 s: the server stays idle
STAMPED_MAX_AGE_S = 60.0  # files changed behind the counts' back (copied in, rewritten)
MEMO_ENTRIES = 256  # aggregates kept (a few kB each; the final-metrics frames are the big ones)


class Recent(Generic[T]):
    """The latest value per key, read again once it is older than its interval."""

    def __init__(self, read: Callable[[Any], T]) -> None:
        self._read = read
        # key -> (at, cost, stamp, value)
        self._values: dict[Hashable, tuple[float, float, Hashable, T]] = {}
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: Hashable, *, fresh: bool = False, stamp: Hashable = None) -> T:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            entry = self._values.get(key)
            now = time.monotonic()
            if entry is not None and not fresh:
                at, cost, stored, value = entry
                if stamp is None and now - at < max(MIN_AGE_S, COST_FACTOR * cost):
                    return value
                if stamp is not None and stamp == stored and now - at < STAMPED_MAX_AGE_S:
                    return value
            value = self._read(key)
            self._values[key] = (time.monotonic(), time.monotonic() - now, stamp, value)
            return value

    def forget(self, key: Hashable) -> None:
        self._values.pop(key, None)


class Memo:
    """Values by (grid version, question), least recently used dropped first."""

    def __init__(self, entries: int = MEMO_ENTRIES) -> None:
        self._entries = entries
        self._values: OrderedDict[Hashable, Any] = OrderedDict()
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._guard:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # one computation per key; the others wait for it
            with self._guard:
                if key in self._values:
                    return self._values[key]
            value = compute()
            with self._guard:
                self._values[key] = value
                self._locks.pop(key, None)
                while len(self._values) > self._entries:
                    self._values.popitem(last=False)
            return value
