"""Claims: two runners on one output dir never train the same job.

The rule:
- Each runner keeps one claim file, `claims/<runner id>.jsonl`: a first line saying who it is
  (host, pid and the process's start time, lease), then one line per batch of jobs it takes
  (`{"take": [...]}`) or releases (`{"release": [...]}`). It touches the file every lease/4
  seconds (its heartbeat) and deletes it when its run ends. A runner claims whole stacks at a
  time, so a grid of 100,000 jobs costs one file per runner, not one per job.
- A runner takes jobs only while it holds the dispatch lock (`claims/lock/`), and under the lock
  it takes only jobs no live runner holds: so no job is ever taken twice. The lock is held for
  the few milliseconds of reading the other runners' files (only what they appended since) and
  appending a line.
- A runner lives while its process does (on its own host: pid and start time, so a reused pid
  does not count) or, seen from another host, while its heartbeat is fresh (lease 60 s). A
  runner that died (SIGKILL, a dead host) holds nothing: its jobs are taken over by the next
  runner, which waits TAKEOVER_GRACE_S before dispatching them.
- The lock itself is a generation of files `claims/lock/<n>`, each created under a temporary name
  and hard-linked into place (a link fails when the name exists, on a local disk and on NFS
  alike), so exactly one runner wins each generation; a lock whose holder died is taken by
  creating the next generation. The winner removes the older generations and their temp files.
- The workers of a runner that died must not write on: a worker watches its runner's claim file
  (jobs.rundir.claim_watch) and exits within WATCH_INTERVAL_S once the file is gone, its
  process is gone from this host, or its heartbeat is older than 3/4 of its lease.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.rundir.disk import naming
from jobs.rundir.journal import process_start
from jobs.rundir.layout import STATE_SUFFIX, OutputDir

DEFAULT_LEASE_S = 60.0
WATCH_INTERVAL_S = 0.25
TAKEOVER_GRACE_S = 4 * WATCH_INTERVAL_S
LOCK_DIR = "lock"
LOCK_POLL_S = 0.005
LOCK_TIMEOUT_S = 120.0

# Runners open in this process: a process may run several one after another (tests, library
# use); its pid alone cannot tell which of them still runs.
_OPEN_BOOKS: set[str] = set()


@dataclass(frozen=True)
class Runner:
    """A runner as its claim file's first line says, with the file's last heartbeat."""

    runner: str
    host: str = ""
    pid: int = 0
    pid_start: str = ""
    lease_s: float = DEFAULT_LEASE_S
    heartbeat: float = 0.0  # the file's mtime, touched by its runner

    def alive(self, now: float | None = None, lease_fraction: float = 1.0) -> bool:
        """Whether the runner still runs (its claims hold).

        Seen from another host, a runner lives while its heartbeat is fresh.
        """
        if not self.runner:
            return False
        if self.host == socket.gethostname() and self.pid == os.getpid():
            return self.runner in _OPEN_BOOKS  # a runner in this very process
        if self.host == socket.gethostname():
            return process_start(self.pid) == self.pid_start
        age = (now if now is not None else time.time()) - self.heartbeat
        return age <= self.lease_s * lease_fraction

    @property
    def name(self) -> str:
        return f"{self.host}:{self.pid}"


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) one job."""

    runner: Runner
    released: bool = False

    def is_live(self) -> bool:
        """Whether the claim still holds: not released, and its runner still runs."""
        return not self.released and self.runner.alive()

    def runner_alive(self) -> bool:
        return self.runner.alive()


@dataclass
class RunnerFile:
    """One runner's claim file, read incrementally: only what was appended since last time."""

    path: Path
    offset: int = 0
    runner: Runner | None = None
    held: set[str] = field(default_factory=set)
    released: set[str] = field(default_factory=set)

    def refresh(self) -> bool:
        """Read what is new; False when the file is gone."""
        try:
            with open(self.path, "rb") as handle:  # open() revalidates NFS's cached attributes
                stat = os.fstat(handle.fileno())
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return False
        end = data.rfind(b"\n") + 1
        self.offset += end
        for line in data[:end].splitlines():
            try:
                entry: dict[str, Any] = json.loads(line)
            except ValueError:
                continue
            if "runner" in entry:
                self.runner = Runner(str(entry["runner"]), str(entry.get("host", "")),
                                     int(entry.get("pid", 0)), str(entry.get("pid_start", "")),
                                     float(entry.get("lease_s", DEFAULT_LEASE_S)))
            for job_id in entry.get("take", ()):
                self.held.add(job_id)
                self.released.discard(job_id)
            for job_id in entry.get("release", ()):
                self.held.discard(job_id)
                self.released.add(job_id)
        if self.runner is not None:
            self.runner = Runner(self.runner.runner, self.runner.host, self.runner.pid,
                                 self.runner.pid_start, self.runner.lease_s, stat.st_mtime)
        return True


class ClaimReader:
    """Every runner's claims on a grid dir: who holds each job, read incrementally."""

    def __init__(self, grid_dir: Path) -> None:
        self.folder = OutputDir(grid_dir).claims
        self._files: dict[str, RunnerFile] = {}

    def refresh(self) -> None:
        try:
            names = [name for name in os.listdir(self.folder) if name.endswith(STATE_SUFFIX)]
        except FileNotFoundError:
            names = []
        for gone in set(self._files) - set(names):
            del self._files[gone]
        for name in names:
            found = self._files.setdefault(name, RunnerFile(self.folder / name))
            if not found.refresh():
                del self._files[name]

    def runners(self) -> list[Runner]:
        return [f.runner for f in self._files.values() if f.runner is not None]

    def holders(self, job_ids: Iterable[str] | None = None) -> dict[str, Holder]:
        """Job id -> its holder: a live holder wins over a dead one, a holding one over one that
        released it. `job_ids`: only these (a claim of one stack looks up its own jobs, not
        every job of a 100,000-job grid: that made claiming quadratic)."""
        wanted = list(job_ids) if job_ids is not None else None
        files = [(claims, claims.runner.alive()) for claims in self._files.values()
                 if claims.runner is not None]
        found: dict[str, Holder] = {}
        ranks: dict[str, tuple[bool, bool]] = {}

        def consider(job_id: str, holder: Holder, alive: bool) -> None:
            rank = _rank(holder, alive)
            if job_id not in ranks or rank > ranks[job_id]:
                found[job_id], ranks[job_id] = holder, rank

        for claims, alive in files:
            assert claims.runner is not None
            for job_id in (wanted if wanted is not None else (*claims.released, *claims.held)):
                if job_id in claims.held:
                    consider(job_id, Holder(claims.runner, False), alive)
                elif job_id in claims.released:
                    consider(job_id, Holder(claims.runner, True), alive)
        return found

    def live_held(self) -> set[str]:
        """The jobs a live runner holds now."""
        held: set[str] = set()
        for claims in self._files.values():
            if claims.runner is not None and claims.runner.alive():
                held |= claims.held
        return held

    def dead_files(self) -> list[Path]:
        return [f.path for f in self._files.values()
                if f.runner is not None and not f.runner.alive()]


def _rank(holder: Holder, alive: bool) -> tuple[bool, bool]:
    return alive, not holder.released


def live_held(grid_dir: Path) -> set[str]:
    """The jobs of `grid_dir` a live runner holds (dispatched, outcome not recorded yet)."""
    reader = ClaimReader(grid_dir)
    reader.refresh()
    return reader.live_held()


@dataclass
class Taken:
    """What one `ClaimBook.take` got."""

    taken: list[str] = field(default_factory=list)  # this runner holds these now
    elsewhere: dict[str, Holder] = field(default_factory=dict)  # a live runner holds these
    replaced: dict[str, Holder] = field(default_factory=dict)  # taken from this holder


class ClaimBook:
    """The claims of one runner on one grid dir, kept alive by a heartbeat while it is open."""

    def __init__(self, grid_dir: Path, lease_s: float = DEFAULT_LEASE_S) -> None:
        self.grid_dir = Path(grid_dir)
        self.lease_s = lease_s
        self.runner = uuid.uuid4().hex
        self.path = OutputDir(self.grid_dir).claims / f"{self.runner}{STATE_SUFFIX}"
        self._identity = {"runner": self.runner, "host": socket.gethostname(),
                          "pid": os.getpid(), "pid_start": process_start(os.getpid()) or "",
                          "lease_s": lease_s}
        self._reader = ClaimReader(self.grid_dir)
        self._held: set[str] = set()
        self._last_takeover = float("-inf")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="tvo-claims", daemon=True)
        self.lost = False  # another runner thought this one dead and removed its claims

    def __enter__(self) -> ClaimBook:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _OPEN_BOOKS.add(self.runner)
        self._append(self._identity)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        with self._lock:
            self._held.clear()
        self.path.unlink(missing_ok=True)
        _OPEN_BOOKS.discard(self.runner)
        try:  # the files of runners that died (their jobs are free) go with the last look
            with DispatchLock(self.grid_dir, self._identity):
                self._reader.refresh()
                for path in self._reader.dead_files():
                    path.unlink(missing_ok=True)
        except OSError:
            pass

    def take(self, job_ids: Iterable[str]) -> Taken:
        """Claim these jobs where no live runner holds them; see Taken for the answer."""
        if self.runner not in _OPEN_BOOKS:
            raise RuntimeError("open the book before claiming: with ClaimBook(...) as book: ...")
        result = Taken()
        with DispatchLock(self.grid_dir, self._identity):
            self._reader.refresh()
            job_ids = list(job_ids)
            holders = self._reader.holders(job_ids)
            abandoned = False
            for job_id in job_ids:
                holder = holders.get(job_id)
                if holder is not None and holder.runner.runner == self.runner:
                    if not holder.released:
                        result.taken.append(job_id)
                        continue
                elif holder is not None and holder.is_live():
                    result.elsewhere[job_id] = holder
                    continue
                if holder is not None:
                    result.replaced[job_id] = holder
                    abandoned = abandoned or not holder.released
                result.taken.append(job_id)
            fresh = [job_id for job_id in result.taken if job_id not in self._held]
            if fresh:
                self._append({"take": fresh})
                with self._lock:
                    self._held.update(fresh)
        if abandoned:
            self._last_takeover = time.monotonic()
        return result

    def release(self, job_ids: Iterable[str]) -> None:
        """Let these jobs go (their outcome is recorded): the next runner takes them at once."""
        with self._lock:
            chosen = [job_id for job_id in job_ids if job_id in self._held]
            self._held.difference_update(chosen)
        if chosen:
            self._append({"release": chosen})

    def holds(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._held

    def holders(self, job_ids: Iterable[str] | None = None) -> dict[str, Holder]:
        """Who holds each job (of `job_ids`, default all) now, as the claim files say (read
        afresh)."""
        self._reader.refresh()
        return self._reader.holders(job_ids)

    def grace_left(self) -> float:
        """Seconds to wait before dispatching a job taken over from a dead runner."""
        return max(0.0, self._last_takeover + TAKEOVER_GRACE_S - time.monotonic())

    def _append(self, entry: dict[str, Any]) -> None:
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        with naming(self.path):
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)

    def _beat(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            try:
                os.utime(self.path)
            except FileNotFoundError:  # removed by a runner that thought this one dead
                self.lost = True


class DispatchLock:
    """The grid dir's dispatch lock, held while a runner reads claims and takes jobs."""

    def __init__(self, grid_dir: Path, identity: dict[str, Any]) -> None:
        self.folder = OutputDir(grid_dir).claims / LOCK_DIR
        self.identity = identity
        self.path: Path | None = None

    def __enter__(self) -> DispatchLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            generations = _generations(self.folder)
            newest = generations[-1] if generations else -1
            if newest >= 0:
                holder = _read_lock(self.folder / str(newest))
                if holder is not None and holder.is_live():
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{self.folder}: held by runner {holder.runner.name} "
                                           f"for over {LOCK_TIMEOUT_S:.0f} s")
                    time.sleep(LOCK_POLL_S)
                    continue
            path = self.folder / str(newest + 1)
            if _link_new(path, {**self.identity, "released": False}):
                self.path = path
                _remove_older(self.folder, newest + 1)
                return self
            # another runner won this generation at the same moment: look again

    def __exit__(self, *exc: object) -> None:
        if self.path is None:
            return
        content = {**self.identity, "released": True}
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{self.path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(content, handle)
        try:
            os.replace(tmp, self.path)
        except FileNotFoundError:
            pass  # taken over meanwhile by a runner that thought this one dead: nothing to free
        self.path = None


def _remove_older(folder: Path, generation: int) -> None:
    """Remove the generations before `generation`, and the temp files (`.<n>.<random>.tmp`) of
    any up to it, which runners killed while writing or racing for one leave behind."""
    for name in os.listdir(folder):
        if name.isdigit() and int(name) < generation:
            (folder / name).unlink(missing_ok=True)
        elif name.startswith(".") and name.endswith(".tmp"):
            number = name.split(".")[1]
            if number.isdigit() and int(number) <= generation:
                (folder / name).unlink(missing_ok=True)


def _generations(folder: Path) -> list[int]:
    try:
        return sorted(int(name) for name in os.listdir(folder) if name.isdigit())
    except FileNotFoundError:
        return []


def _read_lock(path: Path) -> Holder | None:
    try:
        with open(path) as handle:
            heartbeat = os.fstat(handle.fileno()).st_mtime
            content: dict[str, Any] = json.loads(handle.read())
    except (OSError, ValueError):
        return None  # unreadable or vanished: free
    runner = Runner(str(content.get("runner", "")), str(content.get("host", "")),
                    int(content.get("pid", 0)), str(content.get("pid_start", "")),
                    float(content.get("lease_s", DEFAULT_LEASE_S)), heartbeat)
    return Holder(runner, bool(content.get("released", False)))


def _link_new(path: Path, content: dict[str, Any]) -> bool:
    """Create `path` with `content` atomically; False when it already exists."""
    with naming(path):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # not fsynced: after an OS crash an empty or missing lock reads as free, as a dead one
        with naming(path), os.fdopen(fd, "w") as handle:
            json.dump(content, handle)
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except FileNotFoundError:  # a newer generation's winner removed this late temp file
        return False
    finally:
        Path(tmp).unlink(missing_ok=True)
