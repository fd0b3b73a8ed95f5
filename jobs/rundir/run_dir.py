"""RunDir: the one writer of a grid's output dir (see jobs.rundir.layout for what lives where).

Every file a run leaves is written here, whoever asks: a worker's stack (its start, epochs,
checkpoints, its members' ends and its results file, through `StackFiles`), a runner recording
a unit that crashed or was stopped, `tvo cancel` asking jobs to stop. Job state is read back
through `index()` (jobs.rundir.index), never by parsing logs. The log files themselves (which
file a record goes to, a job's lines read back) are jobs.rundir.logs's.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.rundir import legacy
from jobs.rundir.checkpoint import (
    CheckpointError,
    CheckpointWriter,
    read_checkpoint,
    read_checkpoint_index,
    read_stack_checkpoint,
)
from jobs.rundir.index import StateIndex
from jobs.rundir.journal import (
    END,
    EPOCH,
    INTERRUPTED,
    START,
    JournalReader,
    append_event,
    writer_name,
)
from jobs.rundir.journal import process_start as _process_start
from jobs.rundir.layout import CHECKPOINT_SUFFIX, OutputDir
from jobs.rundir.logs import attach, detach, tagged_lines, tagged_logger
from jobs.rundir.results import (
    Commit,
    atomic_write_json,
    read_json,
    remove_partial_writes,
    stack_table,
    write_stack_results,
)
from jobs.rundir.states import CANCELLED, FAILED, Outcome
from jobs.spec import JobSpec

BROKEN_SUFFIX = ".broken"  # a results file set aside: outside the dataset's *.parquet glob
CLUSTER_ENV = {"slurm_job_id": "SLURM_JOB_ID", "slurm_array_task_id": "SLURM_ARRAY_TASK_ID"}


@dataclass(frozen=True)
class Saved:
    """A job's checkpointed state, and the file it was read from (for messages)."""

    path: Path
    state: dict[str, Any]


class RunDir:
    """A grid's output dir, and every write into it."""

    def __init__(self, grid_dir: str | os.PathLike[str], grid: str = "") -> None:
        self.path = Path(grid_dir)
        self.out = OutputDir(self.path)
        self.grid = grid
        self._cancel_seen: tuple[int, int] | None = None
        self._cancel: tuple[bool, frozenset[str]] = (False, frozenset())

    # -- logs -----------------------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        """This process's log file in the grid dir."""
        return self.out.log_file(writer_name())

    def logger(self, **context: str) -> logging.LoggerAdapter:
        """A logger whose lines go to this process's log file while it is open (`open_log`),
        each tagged with `context` (stack=..., job=...)."""
        return tagged_logger(self.log_path, **context)

    def open_log(self) -> None:
        attach(self.log_path)

    def close_log(self) -> None:
        detach(self.log_path)

    def job_log(self, job_id: str) -> str:
        """Every line any process logged about a job: its own lines and its stacks' lines, file
        by file, plus its folder's log in the layout before results by the stack."""
        stacks = {str(event.get("stack")) for event in JournalReader(self.path).new_events()
                  if event.get("event") == START and job_id in event.get("jobs", ())}
        tags = (f"[job {job_id}]", *(f"[stack {stack}]" for stack in sorted(stacks)))
        return tagged_lines(self.out.logs, tags, legacy.log_text(self.path, job_id))

    # -- state ----------------------------------------------------------------------------------
    def index(self) -> StateIndex:
        return StateIndex(self.path).refresh()

    def record_ended(self, outcomes: dict[str, Outcome], *, error_trace: str | None = None,
                     stack: str = "") -> None:
        """Jobs that ended outside a results file: failed (a unit that crashed), or cancelled
        (stopped by force, or before they started). Recorded by the caller's process."""
        if not outcomes:
            return
        append_event(self.path, END, stack=stack, jobs={job_id: outcome.to_json()
                                                          for job_id, outcome in outcomes.items()})
        if error_trace:
            self.open_log()
            try:
                for job_id, outcome in outcomes.items():
                    self.logger(job=job_id).error("%s: %s\n%s", outcome.state, outcome.error,
                                                  error_trace)
            finally:
                self.close_log()

    def record_crash(self, job_ids: Iterable[str], error: str, trace: str | None = None) -> None:
        """The worker died before it could say how these jobs ended."""
        self.record_ended({job_id: Outcome(FAILED, error) for job_id in job_ids},
                          error_trace=trace or error)

    def record_cancelled(self, job_ids: Iterable[str],
                         epochs: dict[str, int] | None = None) -> None:
        """These jobs stopped because they were asked to; they resume from their checkpoint."""
        epochs = epochs or {}
        self.record_ended({job_id: Outcome(CANCELLED, None, epochs.get(job_id, 0))
                           for job_id in job_ids})

    # -- cancel requests ------------------------------------------------------------------------
    def request_cancel(self, job_ids: Sequence[str] | None, requested_by: str) -> None:
        """Ask jobs to stop at their next epoch end: these, or (None) the whole grid."""
        content = read_json(self.out.cancel_file) or {}
        asked = {"requested_by": requested_by, "requested_at": time.time()}
        if job_ids is None:
            content["grid"] = asked
        jobs = dict(content.get("jobs") or {})
        jobs.update({job_id: asked for job_id in job_ids or ()})
        content["jobs"] = jobs
        atomic_write_json(self.out.cancel_file, content, durable=False)

    def clear_cancel(self, job_ids: Iterable[str]) -> bool:
        """A new run starts: the grid's request and these jobs' requests go; True if any was."""
        content = read_json(self.out.cancel_file)
        if content is None:
            return False
        cleared = set(job_ids)
        jobs = {job_id: asked for job_id, asked in dict(content.get("jobs") or {}).items()
                if job_id not in cleared}
        had = content.get("grid") is not None or len(jobs) != len(content.get("jobs") or {})
        if jobs:
            atomic_write_json(self.out.cancel_file, {"grid": None, "jobs": jobs}, durable=False)
        else:
            self.out.cancel_file.unlink(missing_ok=True)
        return had

    def cancel_requests(self) -> tuple[bool, frozenset[str]]:
        """(whole grid asked to stop, jobs asked to stop); one stat when nothing changed."""
        try:
            stat = os.stat(self.out.cancel_file)
        except FileNotFoundError:
            self._cancel_seen, self._cancel = None, (False, frozenset())
            return self._cancel
        seen = (stat.st_mtime_ns, stat.st_size)
        if seen != self._cancel_seen:
            content = read_json(self.out.cancel_file) or {}
            self._cancel = (content.get("grid") is not None,
                            frozenset(dict(content.get("jobs") or {})))
            self._cancel_seen = seen
        return self._cancel

    def cancel_requested(self, job_id: str | None = None) -> bool:
        """Whether the grid (None) or this job is asked to stop."""
        whole, jobs = self.cancel_requests()
        return whole or (job_id is not None and job_id in jobs)

    # -- checkpoints ----------------------------------------------------------------------------
    def saved_states(self, job_ids: Iterable[str]) -> dict[str, Saved]:
        """The newest checkpointed state of each of these jobs that has one, from any stack's
        checkpoint file (or its folder in the layout before results by the stack). A file that
        cannot be read is passed over, said in the log: its jobs train from an earlier epoch,
        or their first, to the same results."""
        wanted = set(job_ids)
        newest: dict[str, tuple[int, Path]] = {}
        try:
            names = [n for n in os.listdir(self.out.checkpoints) if n.endswith(CHECKPOINT_SUFFIX)]
        except FileNotFoundError:
            names = []
        for name in names:
            path = self.out.checkpoints / name
            for job_id, epoch in read_checkpoint_index(path).items():
                if job_id in wanted and (job_id not in newest or epoch > newest[job_id][0]):
                    newest[job_id] = (epoch, path)
        states: dict[str, Saved] = {}
        by_file: dict[Path, list[str]] = {}
        for job_id, (_, path) in newest.items():
            by_file.setdefault(path, []).append(job_id)
        for path, chosen in by_file.items():
            try:
                saved = read_stack_checkpoint(path)
            except CheckpointError as exc:
                self._unreadable(exc)
                continue
            states.update({job_id: Saved(path, saved[job_id]) for job_id in chosen})
        for job_id in wanted - set(states):
            old = legacy.checkpoint_file(self.path, job_id)
            if old is not None:
                try:
                    states[job_id] = Saved(old, read_checkpoint(old))
                except CheckpointError as exc:
                    self._unreadable(exc)
        return states

    def lost_checkpoints(self, job_ids: Iterable[str], index: StateIndex) -> dict[str, int]:
        """Jobs whose latest attempt saved a checkpoint (job -> the epoch it was saved after)
        that no checkpoint file holds any more: deleted by hand. They train again from their
        first epoch, to the same results. A job whose stack committed a results file that
        turned out damaged is none of them: the commit removed that checkpoint."""
        saved = {job_id: epoch for job_id in job_ids if (epoch := index.saved_epoch(job_id))}
        if saved:
            damaged = self._damaged_commits(index)
            saved = {job_id: epoch for job_id, epoch in saved.items()
                     if index.record(job_id).stack not in damaged}
        if not saved:
            return {}
        try:
            names = [n for n in os.listdir(self.out.checkpoints) if n.endswith(CHECKPOINT_SUFFIX)]
        except FileNotFoundError:
            names = []
        held: set[str] = set()
        for name in names:
            held.update(read_checkpoint_index(self.out.checkpoints / name))
        return {job_id: epoch for job_id, epoch in saved.items()
                if job_id not in held and legacy.checkpoint_file(self.path, job_id) is None}

    def _damaged_commits(self, index: StateIndex) -> set[str]:
        """Stacks whose results file is no readable commit, in place or set aside (.broken)."""
        try:
            aside = [n for n in os.listdir(self.out.results) if n.endswith(BROKEN_SUFFIX)]
        except FileNotFoundError:
            aside = []
        return {name.split(".", 1)[0] for name in [*aside, *(p.name for p in
                                                               index.broken_files())]}

    def _unreadable(self, exc: CheckpointError) -> None:
        self.open_log()
        try:
            self.logger().warning("%s; its jobs start from their first epoch instead", exc)
        finally:
            self.close_log()

    def sweep(self, finished: set[str]) -> None:
        """Remove what no run needs any more: checkpoints whose every job is finished, and temp
        files of writes a killed process never finished."""
        try:
            names = [n for n in os.listdir(self.out.checkpoints) if n.endswith(CHECKPOINT_SUFFIX)]
        except FileNotFoundError:
            names = []
        for name in names:
            path = self.out.checkpoints / name
            index = read_checkpoint_index(path)
            if index and set(index) <= finished:
                path.unlink(missing_ok=True)
        for folder in (self.out.results, self.out.checkpoints, self.path):
            remove_partial_writes(folder)

    def set_aside(self, broken: Iterable[Path]) -> list[Path]:
        """Move results files that are no commit out of the dataset (<name>.broken, kept for a
        look): their jobs are trained again. Returns the new names."""
        moved = []
        for path in broken:
            target = path.with_name(path.name + BROKEN_SUFFIX)
            try:
                os.replace(path, target)
            except FileNotFoundError:
                continue
            moved.append(target)
        return moved

    # -- a stack --------------------------------------------------------------------------------
    def stack_files(self, stack: str, specs: Sequence[JobSpec]) -> StackFiles:
        return StackFiles(self, stack, specs)


class StackFiles:
    """What one stack leaves: its start, epochs, checkpoints and members' ends as they happen,
    then its results file, written once when the stack ends."""

    def __init__(self, run_dir: RunDir, stack: str, specs: Sequence[JobSpec]) -> None:
        self.run_dir = run_dir
        self.stack = stack
        self.specs = {spec.job_id: spec for spec in specs}
        run_dir.open_log()
        self.log: logging.LoggerAdapter | None = run_dir.logger(stack=stack)
        self._checkpoints: CheckpointWriter | None = None
        self._saved: dict[str, dict[str, Any]] = {}
        self._saved_since_epoch = False
        self.started = time.time()

    def begin(self, device: str) -> None:
        epochs = max((spec.epochs for spec in self.specs.values()), default=0)
        append_event(self.run_dir.path,
            START, stack=self.stack, jobs=list(self.specs), host=socket.gethostname(),
            pid=os.getpid(), pid_start=_process_start(os.getpid()) or "",
            log=str(self.run_dir.log_path), epochs=epochs, device=device,
            **{key: os.environ[var] for key, var in CLUSTER_ENV.items() if var in os.environ})
        self.log.info("%d jobs on %s (%s): %s", len(self.specs), socket.gethostname(), device,
                      " ".join(self.specs))

    def epoch(self, epoch: int, epochs: int, jobs: int) -> None:
        """The stack reached `epoch`; `saved` when a checkpoint was written since the last one
        (so a run can tell a checkpoint that went missing from one never written)."""
        saved = {"saved": True} if self._saved_since_epoch else {}
        self._saved_since_epoch = False
        append_event(self.run_dir.path, EPOCH, stack=self.stack, epoch=epoch, epochs=epochs,
                     jobs=jobs, **saved)

    def checkpoint(self, states: dict[str, dict[str, Any]]) -> None:
        """Save these members' states; members not given keep the state they last saved."""
        self._saved.update(states)
        if self._checkpoints is None:
            self._checkpoints = CheckpointWriter(self.run_dir.out.checkpoint_file(self.stack))
        self._checkpoints.save(self._saved)
        self._saved_since_epoch = True

    def ended_early(self, job_id: str, outcome: Outcome) -> None:
        """A member ended (failed, cancelled) while its mates train on: said at once, so status
        and cancel see it; its stack's results file records it again."""
        if outcome.state in (FAILED, CANCELLED):
            append_event(self.run_dir.path, END, stack=self.stack,
                                              jobs={job_id: outcome.to_json()})

    def commit(self, members: Sequence[tuple[JobSpec, Sequence[dict[str, Any]], Outcome]]) -> None:
        """Write the results file: rows of the done and diverged members, every member's
        outcome. Its rename is the commit. The stack's checkpoint then keeps only the states of
        members a later run resumes (failed, cancelled), or goes."""
        kept = [(spec, rows) for spec, rows, outcome in members
                if outcome.state.value in ("done", "diverged")]
        table = stack_table(kept, self.run_dir.grid)
        commit = Commit(self.stack, time.time(),
                        {spec.job_id: outcome.to_json() for spec, _, outcome in members},
                        socket.gethostname(), os.getpid(), str(self.run_dir.log_path))
        write_stack_results(self._results_path(), table, commit)
        resumable = {spec.job_id: self._saved[spec.job_id] for spec, _, outcome in members
                     if outcome.state in (FAILED, CANCELLED) and spec.job_id in self._saved}
        if resumable:
            self._saved = resumable
            self.checkpoint({})
            self.close_checkpoints()
        else:
            self.close_checkpoints()
            self.run_dir.out.checkpoint_file(self.stack).unlink(missing_ok=True)

    def _results_path(self) -> Path:
        """results/<stack>.parquet, or <stack>.<n>.parquet when the same jobs were committed
        before as a stack (a retry of members that all failed): a commit never replaces one."""
        path = self.run_dir.out.results_file(self.stack)
        attempt = 1
        while path.exists():
            attempt += 1
            path = self.run_dir.out.results_file(f"{self.stack}.{attempt}")
        return path

    def interrupted(self, job_ids: Sequence[str]) -> None:
        """Stopped from outside (Ctrl-C, SIGTERM): these jobs resume from their checkpoint."""
        self.close_checkpoints()
        if job_ids:
            append_event(self.run_dir.path, INTERRUPTED, stack=self.stack, jobs=list(job_ids))
            self.log.info("interrupted; the next run resumes %d jobs from their last checkpoint",
                          len(job_ids))

    def close_checkpoints(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.close()
            self._checkpoints = None

    def close(self) -> None:
        """The stack is over (committed, or handed on): its checkpoint writer and log close."""
        self.close_checkpoints()
        if self.log is not None:
            self.run_dir.close_log()
            self.log = None
