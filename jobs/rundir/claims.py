"""Per-job claims: two runners on one output dir never run the same job twice.

The rule:
- The runner that dispatches a job claims it first, and holds the claim until the job's outcome
  is recorded (then it releases it). The worker that trains the job, wherever it runs, takes
  no claim: the dispatching runner answers for it.
- A claim is a file `runs/<job_id>/claim-<n>`. It is written under a temporary name and then
  hard-linked to its final name; a link fails when the name exists, so exactly one runner wins
  each generation n, on a local disk and on NFS alike.
- A claim is live while its runner lives. On the runner's own host: while the runner's process
  exists (pid and process start time, so a reused pid does not count). Seen from another host:
  while its lease is fresh; the runner touches the file every lease/4 seconds (lease 60 s by
  default), so a runner on a host that died frees its jobs one lease later.
- A released or stale claim (dead process, expired lease) is taken over by creating generation
  n+1; the winner deletes the older generations. Claims are never deleted while they are the
  newest, so a slow runner can never recreate a generation that was already won.
- The workers of a runner that died must not write on: a worker watches its runner's claims
  (ClaimWatch) and exits within WATCH_INTERVAL_S once a claim is superseded, released, held by a
  process gone from this host, or not renewed for 3/4 of its lease. A runner that took a claim
  over waits TAKEOVER_GRACE_S before dispatching the job, so those workers are gone by then.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLAIM_PREFIX = "claim-"
DEFAULT_LEASE_S = 60.0
WATCH_INTERVAL_S = 0.25
TAKEOVER_GRACE_S = 4 * WATCH_INTERVAL_S
WORKER_LEASE_FRACTION = 0.75  # a worker gives up before anyone may take its job over
WATCH_EXIT_CODE = 75  # a worker that stopped because its runner is gone


@dataclass(frozen=True)
class Holder:
    """A claim as read from its file: who holds a job, and whether that runner still lives."""

    path: Path
    generation: int
    runner: str = ""
    host: str = ""
    pid: int = 0
    pid_start: str = ""
    lease_s: float = DEFAULT_LEASE_S
    released: bool = False
    heartbeat: float = 0.0  # the file's mtime, touched by the holder

    def is_live(self, now: float | None = None, lease_fraction: float = 1.0) -> bool:
        """Whether the claim still holds: not released, and its runner still runs."""
        return not self.released and self.runner_alive(now, lease_fraction)

    def runner_alive(self, now: float | None = None, lease_fraction: float = 1.0) -> bool:
        """Whether the runner that wrote the claim still runs, released or not.

        A released claim is no longer renewed: seen from another host, its runner counts as
        alive for one lease after the release.
        """
        if not self.runner:
            return False
        if self.host == socket.gethostname() and self.pid == os.getpid():
            return self.runner in _OPEN_BOOKS  # a runner in this very process
        if self.host == socket.gethostname():
            return process_start(self.pid) == self.pid_start
        age = (now if now is not None else time.time()) - self.heartbeat
        return age <= self.lease_s * lease_fraction


def process_start(pid: int) -> str | None:
    """A process's start time (clock ticks since boot) or None when it does not exist.

    Start time tells a live runner from an unrelated process that reused its pid. Where there
    is no /proc, existence alone counts.
    """
    if pid <= 0:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[19]  # field 22 of stat(5); the two before it were cut off with ")"
    except FileNotFoundError:
        return None
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return ""


def generations(run_dir: Path) -> list[int]:
    found = []
    try:
        names = os.listdir(run_dir)
    except FileNotFoundError:
        return []
    for name in names:
        if name.startswith(CLAIM_PREFIX) and name[len(CLAIM_PREFIX):].isdigit():
            found.append(int(name[len(CLAIM_PREFIX):]))
    return sorted(found)


def claim_path(run_dir: Path, generation: int) -> Path:
    return run_dir / f"{CLAIM_PREFIX}{generation}"


def read_holder(run_dir: Path, generation: int) -> Holder:
    """The claim of one generation; an unreadable or vanished one reads as released."""
    path = claim_path(run_dir, generation)
    try:
        with open(path) as handle:  # open() revalidates NFS's cached attributes: fresh mtime
            heartbeat = os.fstat(handle.fileno()).st_mtime
            content: dict[str, Any] = json.loads(handle.read())
    except (OSError, ValueError):
        return Holder(path, generation, released=True)
    return Holder(path, generation, runner=str(content.get("runner", "")),
                  host=str(content.get("host", "")), pid=int(content.get("pid", 0)),
                  pid_start=str(content.get("pid_start", "")),
                  lease_s=float(content.get("lease_s", DEFAULT_LEASE_S)),
                  released=bool(content.get("released", False)), heartbeat=heartbeat)


def current_holder(run_dir: Path) -> Holder | None:
    """The newest claim on a job, or None when nobody ever claimed it."""
    found = generations(run_dir)
    return read_holder(run_dir, found[-1]) if found else None


def _link_new(path: Path, content: dict[str, Any]) -> bool:
    """Create `path` with `content` atomically; False when it already exists."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:  # not fsynced: after an OS crash an empty or
            json.dump(content, handle)  # missing claim reads as released, as a dead one would
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        Path(tmp).unlink(missing_ok=True)


# Runners open in this process: a process may run several one after another (tests, library
# use); its pid alone cannot tell which of them still runs.
_OPEN_BOOKS: set[str] = set()


class ClaimBook:
    """The claims one runner holds, kept alive by a heartbeat thread while the book is open."""

    def __init__(self, lease_s: float = DEFAULT_LEASE_S) -> None:
        self.lease_s = lease_s
        self.runner = uuid.uuid4().hex
        self._identity = {"runner": self.runner, "host": socket.gethostname(),
                          "pid": os.getpid(), "pid_start": process_start(os.getpid()) or "",
                          "lease_s": lease_s}
        self._held: dict[Path, Path] = {}  # run dir -> claim file
        self._replaced: dict[Path, Holder] = {}  # run dir -> the claim ours took the place of
        self._last_takeover = float("-inf")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="tvo-claims", daemon=True)
        self.lost: list[Path] = []  # claims another runner took over (we were thought dead)

    def __enter__(self) -> ClaimBook:
        _OPEN_BOOKS.add(self.runner)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.release_all()
        _OPEN_BOOKS.discard(self.runner)

    def acquire(self, run_dir: Path) -> Holder | None:
        """Claim a job: None when this runner now holds it, else the live runner that does."""
        if self.runner not in _OPEN_BOOKS:
            raise RuntimeError("open the book before claiming: with ClaimBook() as book: ...")
        run_dir.mkdir(parents=True, exist_ok=True)
        while True:
            found = generations(run_dir)
            generation = 0
            abandoned = False  # taken from a runner that died holding it
            holder = None
            if found:
                holder = read_holder(run_dir, found[-1])
                if holder.runner == self.runner and not holder.released:
                    return None
                if holder.is_live():
                    return holder
                generation, abandoned = found[-1] + 1, not holder.released
            path = claim_path(run_dir, generation)
            content = {**self._identity, "claimed_at": time.time(), "released": False}
            if _link_new(path, content):
                with self._lock:
                    self._held[run_dir] = path
                    if holder is not None:
                        self._replaced[run_dir] = holder
                    if abandoned:
                        self._last_takeover = time.monotonic()
                for older in found:
                    claim_path(run_dir, older).unlink(missing_ok=True)
                return None
            # another runner won this generation at the same moment: look again

    def replaced(self, run_dir: Path) -> Holder | None:
        """The claim this runner's claim on `run_dir` took the place of, as it was then
        (released, or its runner dead), or None when the job had never been claimed.

        Read at the takeover, not before: a claim read before acquiring may be released in
        between, and then says nothing about how its job ended."""
        with self._lock:
            return self._replaced.get(run_dir)

    def release(self, run_dir: Path) -> None:
        """Mark the claim released, so the next runner takes the job without waiting."""
        with self._lock:
            self._replaced.pop(run_dir, None)
            path = self._held.pop(run_dir, None)
        if path is None:
            return
        try:
            content = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        if content.get("runner") != self.runner:
            return
        content["released"] = True
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(content, handle)
        os.replace(tmp, path)

    def release_all(self) -> None:
        with self._lock:
            run_dirs = list(self._held)
        for run_dir in run_dirs:
            self.release(run_dir)

    def grace_left(self) -> float:
        """Seconds to wait before dispatching a job taken over from a dead runner."""
        return max(0.0, self._last_takeover + TAKEOVER_GRACE_S - time.monotonic())

    def holds(self, run_dir: Path) -> bool:
        with self._lock:
            return run_dir in self._held

    def _beat(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            with self._lock:
                held = list(self._held.items())
            for run_dir, path in held:
                try:
                    os.utime(path)
                except FileNotFoundError:  # a newer generation replaced ours
                    with self._lock:
                        if self._held.pop(run_dir, None) is not None:
                            self.lost.append(run_dir)


class ClaimWatch:
    """In a worker: stop this process once the runner that dispatched its jobs is gone.

    Use around the work: `with ClaimWatch(run_dirs): ...`. The claims to watch are the newest
    ones when the watch starts (the dispatching runner took them just before). `on_lost` is
    called with the reason; the default exits the process at once, because a worker whose
    runner is gone must not write another byte into a run dir that a new runner now owns.
    """

    def __init__(self, run_dirs: list[Path], interval_s: float = WATCH_INTERVAL_S,
                 on_lost: Callable[[str], None] | None = None) -> None:
        self._interval_s = interval_s
        self._on_lost = on_lost or _exit_worker
        self._watched = [holder for holder in map(current_holder, run_dirs)
                         if holder is not None and not holder.released]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="tvo-claim-watch", daemon=True)

    def __enter__(self) -> ClaimWatch:
        if self._watched:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def lost(self) -> str | None:
        """Why this worker must stop, or None while every claim is held by a live runner."""
        for watched in self._watched:
            now = read_holder(watched.path.parent, watched.generation)
            if now.runner != watched.runner:
                return f"{watched.path} was taken over by another runner"
            if now.released:
                return f"{watched.path} was released: its runner stopped"
            if not now.is_live(lease_fraction=WORKER_LEASE_FRACTION):
                return f"{watched.path}: its runner {watched.host}:{watched.pid} is gone"
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
