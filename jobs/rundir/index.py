"""Where every job of a grid dir stands, read from its files: the one way job state is read.

Sources, in order of authority:
- committed results files (results/*.parquet, their footers only): a job is done or diverged
  exactly when a results file holds its rows; a file's failed and cancelled members too;
- the state events of the processes that ran jobs (state/*.jsonl): a stack started (its jobs are
  running while their runner lives), a job failed or was cancelled before its stack ended, a
  stack was interrupted;
- the runners' claims (claims/): a job whose stack started but whose runner is gone is pending
  and interrupted, and the next run resumes it;
- the per-job folders of the layout before results by the stack (runs/<job_id>/).
Everything is read incrementally: `refresh` reads only files that are new or grew.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from jobs.rundir import legacy
from jobs.rundir.claims import ClaimReader
from jobs.rundir.journal import END, EPOCH, INTERRUPTED, START, JournalReader, process_start
from jobs.rundir.layout import RESULTS_SUFFIX, OutputDir
from jobs.rundir.results import Commit, read_commit
from jobs.rundir.states import (
    CANCELLED,
    FAILED,
    FINISHED,
    PENDING,
    RUNNING,
    JobRecord,
    JobState,
    Outcome,
)

Fingerprint = tuple[int, int]  # (size, mtime_ns) of a file


@dataclass(frozen=True)
class StackStart:
    """A stack's start, as its worker recorded it."""

    stack: str
    t: float
    host: str
    pid: int
    pid_start: str
    log: str
    epochs: int


@dataclass(frozen=True)
class _Latest:
    """A job's newest event that is not a committed finish."""

    t: float
    kind: str  # START, END, INTERRUPTED
    stack: str = ""
    outcome: Outcome | None = None


class StateIndex:
    """The state of a grid dir's jobs; call `refresh` to take in what changed on disk."""

    def __init__(self, grid_dir: Path) -> None:
        self.grid_dir = Path(grid_dir)
        self.out = OutputDir(self.grid_dir)
        self._journal = JournalReader(self.grid_dir)
        self._claims = ClaimReader(self.grid_dir)
        self._files: dict[str, tuple[Fingerprint, Commit | None]] = {}
        self._finished: dict[str, tuple[Commit, str]] = {}  # job -> its commit and file (path)
        self._latest: dict[str, _Latest] = {}
        self._attempts: Counter[str] = Counter()
        self._stacks: dict[str, StackStart] = {}
        self.stack_epochs: dict[str, tuple[int, int]] = {}  # stack -> (epoch reached, epochs)
        self.stack_saved: dict[str, int] = {}  # stack -> the last epoch it saved a checkpoint
        self._legacy: dict[str, JobRecord] | None = None
        self._held: set[str] = set()

    # -- reading --------------------------------------------------------------------------------
    def refresh(self) -> StateIndex:
        self.refresh_results()
        for event in self._journal.new_events():
            self._fold_event(event)
        self._claims.refresh()
        self._held = self._claims.live_held()
        if self._legacy is None:
            self._legacy = legacy.records(self.grid_dir)
        return self

    def refresh_results(self) -> StateIndex:
        """Read only the results files that are new (cheap enough to do before every stack)."""
        self._read_results()
        return self

    def _read_results(self) -> None:
        try:
            entries = [entry for entry in os.scandir(self.out.results)
                       if entry.name.endswith(RESULTS_SUFFIX)]
        except FileNotFoundError:
            entries = []
        names = {entry.name for entry in entries}
        if set(self._files) - names:  # a results file went away (deleted by hand): read anew
            self._rebuild_from_results()
        for entry in entries:
            try:
                stat = entry.stat()
            except FileNotFoundError:
                continue
            fingerprint = (stat.st_size, stat.st_mtime_ns)
            known = self._files.get(entry.name)
            if known is not None and known[0] == fingerprint:
                continue
            commit = read_commit(Path(entry.path))
            self._files[entry.name] = (fingerprint, commit)
            if known is not None and known[1] is not None:  # rewritten (a retried stack)
                self._rebuild_from_results()
            elif commit is not None:
                self._fold_commit(entry.name, commit)

    def _rebuild_from_results(self) -> None:
        files = dict(self._files)
        self._files.clear()
        self._finished.clear()
        self._latest = {job_id: latest for job_id, latest in self._latest.items()
                        if latest.kind != "commit"}
        for name, (fingerprint, commit) in files.items():
            if not (self.out.results / name).exists():
                continue
            self._files[name] = (fingerprint, commit)
            if commit is not None:
                self._fold_commit(name, commit)

    def _fold_commit(self, name: str, commit: Commit) -> None:
        path = str(self.out.results / name)
        finished = commit.finished()
        for job_id in finished:
            known = self._finished.get(job_id)
            if known is None or commit.committed_at < known[0].committed_at:
                self._finished[job_id] = (commit, path)
        if len(finished) < len(commit.outcomes):
            for job_id in set(commit.outcomes) - set(finished):
                self._set_latest(job_id, _Latest(commit.committed_at, "commit", commit.stack,
                                                 commit.outcome(job_id)))

    def _fold_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        t = float(event.get("t", 0.0))
        stack = str(event.get("stack", ""))
        if kind == START:
            self._stacks[stack] = StackStart(stack, t, str(event.get("host", "")),
                                             int(event.get("pid", 0)),
                                             str(event.get("pid_start", "")),
                                             str(event.get("log", "")), int(event.get("epochs", 0)))
            for job_id in event.get("jobs", ()):
                self._attempts[job_id] += 1
                self._set_latest(job_id, _Latest(t, START, stack))
        elif kind == EPOCH:
            self.stack_epochs[stack] = (int(event.get("epoch", 0)), int(event.get("epochs", 0)))
            if event.get("saved"):
                self.stack_saved[stack] = int(event.get("epoch", 0))
        elif kind == END:
            for job_id, value in dict(event.get("jobs", {})).items():
                outcome = Outcome.from_json(value)
                if outcome.state not in FINISHED:  # those count only once committed
                    self._set_latest(job_id, _Latest(t, END, stack, outcome))
        elif kind == INTERRUPTED:
            for job_id in event.get("jobs", ()):
                self._set_latest(job_id, _Latest(t, INTERRUPTED, stack))

    def _set_latest(self, job_id: str, latest: _Latest) -> None:
        known = self._latest.get(job_id)
        if known is None or latest.t >= known.t:
            self._latest[job_id] = latest

    # -- answers --------------------------------------------------------------------------------
    def finished_ids(self) -> set[str]:
        """Jobs that are done or diverged (never trained again)."""
        found = set(self._finished)
        for job_id, record in (self._legacy or {}).items():
            if record.finished:
                found.add(job_id)
        return found

    def record(self, job_id: str) -> JobRecord:
        finished = self._finished.get(job_id)
        if finished is not None:  # the common case, built directly: 100,000 jobs in 0.2 s
            commit, path = finished
            value = commit.outcomes[job_id]
            return JobRecord(job_id, JobState(value["state"]), value.get("error"),
                             max(1, self._attempts[job_id]), int(value.get("epochs_done", 0)),
                             value.get("test_acc"), stack=commit.stack, host=commit.host,
                             pid=commit.pid, ended_at=commit.committed_at, log=commit.log,
                             committed=path)
        latest = self._latest.get(job_id)
        old = (self._legacy or {}).get(job_id)
        if old is not None and (old.finished or latest is None):
            return old
        if latest is None:
            return JobRecord(job_id)
        start = self._stacks.get(latest.stack)
        attempts = self._attempts[job_id] + (old.attempts if old is not None else 0)
        base = JobRecord(job_id, PENDING, attempts=attempts, stack=latest.stack,
                         host=start.host if start else "", pid=start.pid if start else 0,
                         started_at=start.t if start else 0.0, log=start.log if start else "")
        if latest.kind == START:
            epoch, epochs = self.stack_epochs.get(latest.stack, (0, start.epochs if start else 0))
            if job_id in self._held or (start is not None and _process_alive(start)):
                return replace(base, state=RUNNING, epoch=epoch, epochs=epochs)
            return replace(base, interrupted=True)
        if latest.kind == INTERRUPTED:
            return replace(base, interrupted=True)
        assert latest.outcome is not None
        return self._from_outcome(job_id, latest.outcome, latest.t, base, "")

    @staticmethod
    def _from_outcome(job_id: str, outcome: Outcome, t: float, base: JobRecord,
                      committed: str) -> JobRecord:
        state = JobState(outcome.state)
        if state not in (*FINISHED, FAILED, CANCELLED):
            state = PENDING
        return replace(base, job_id=job_id, state=state, error=outcome.error,
                       epochs_done=outcome.epochs_done, test_acc=outcome.test_acc, ended_at=t,
                       committed=committed)

    def saved_epoch(self, job_id: str) -> int:
        """For a job that is not finished: the last epoch after which its latest attempt's
        stack saved a checkpoint (0: none saved, or the job is finished)."""
        latest = self._latest.get(job_id)
        if job_id in self._finished or latest is None or not latest.stack:
            return 0
        return self.stack_saved.get(latest.stack, 0)

    def records(self, job_ids: Iterable[str]) -> dict[str, JobRecord]:
        return {job_id: self.record(job_id) for job_id in job_ids}

    def known_ids(self) -> list[str]:
        """Every job any file of the dir mentions (for a dir without jobs.parquet)."""
        found = dict.fromkeys(self._finished)
        found.update(dict.fromkeys(self._latest))
        found.update(dict.fromkeys(self._legacy or {}))
        return list(found)

    def broken_files(self) -> list[Path]:
        """Results files that are no commit (damaged, cut short by something outside tvo):
        their jobs count as not run."""
        return [self.out.results / name for name, (_, commit) in sorted(self._files.items())
                if commit is None]

    def results_files(self) -> dict[str, Fingerprint]:
        """Every committed results file (path -> fingerprint), for the loading layer."""
        return {str(self.out.results / name): fingerprint
                for name, (fingerprint, commit) in self._files.items() if commit is not None}

    def finished_in(self) -> dict[str, set[str]]:
        """Results file (path) -> the finished jobs whose rows it holds."""
        return {str(self.out.results / name): set(commit.finished())
                for name, (_, commit) in self._files.items() if commit is not None}

    def committed_by(self) -> dict[str, str]:
        """Finished job -> the results file whose rows are its rows (one per job, always)."""
        return {job_id: path for job_id, (_, path) in self._finished.items()}

    def running_stacks(self) -> dict[str, StackStart]:
        """Stacks started and not ended, with their start (for progress per epoch)."""
        return dict(self._stacks)


def _process_alive(start: StackStart) -> bool:
    """A stack's worker process still runs (on this host; elsewhere its runner's claim says)."""
    return (start.host == socket.gethostname() and start.pid > 0
            and process_start(start.pid) == start.pid_start)


def read_index(grid_dir: Path) -> StateIndex:
    return StateIndex(grid_dir).refresh()
