"""The training engine: every job trains as a member of a stack; a job alone is a stack of one.

`run_stack` is the one epoch loop, top to bottom: each member starts (from its checkpointed
state, or from its seed with an epoch-0 evaluation), then per epoch the members whose next
epoch is the earliest train as one Stack (a member behind catches up alone, then the others
join it), the strategies adapt, the schedules step, evaluated members get their metrics row,
and each member may end there: diverged (a non-finite loss), cancelled (a cancel request; that
epoch checkpointed) or done. When the last member has ended, the stack's results file is
written once (jobs.rundir.run_dir.StackFiles): that write is when its members are done. A
member's results never depend on its mates.

The stack checkpoints its members after an evaluated epoch once `checkpoint_seconds` have
passed since its last checkpoint: on small models a checkpoint costs more than an epoch, and
resuming from an earlier epoch gives the same results, so only the work redone after a kill
grows. If the stacked computation itself raises, each unfinished member goes on alone from its
last checkpoint, so one member's error cannot take its mates with it.
"""

from __future__ import annotations

import functools
import math
import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from jobs.data.datasets import Dataset, load_dataset
from jobs.engine.member import Member
from jobs.engine.packing import pack_key
from jobs.engine.stack import Stack, stack_order
from jobs.request import RunSettings, StackRequest, stack_id
from jobs.rundir.index import StateIndex
from jobs.rundir.layout import OutputDir
from jobs.rundir.results import JobResult
from jobs.rundir.run_dir import RunDir, StackFiles
from jobs.rundir.states import CANCELLED, DIVERGED, DONE, FAILED, JobState, Outcome
from jobs.rundir.tensorboard import TensorBoardLog
from jobs.spec import JobSpec

__all__ = ["JobResult", "run_job", "run_stack"]

Progress = Callable[[int, int, dict[str, Any]], None]  # (epoch, epochs, metrics row)
StackProgress = Callable[[str, int, int, dict[str, Any]], None]  # (job_id, epoch, epochs, row)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda was asked for, but torch sees no CUDA device here")
    return torch.device(name)


def shared_dataset(spec: JobSpec, device: torch.device) -> Dataset:
    """The job's data on its device, loaded once per process and shared by every stack."""
    return _dataset(*spec.data_key(), str(device))


DATASETS_KEPT = 4  # datasets a process keeps loaded


@functools.lru_cache(maxsize=DATASETS_KEPT)
def _dataset(name: str, data_root: str, normalize: str, noise: float, val_fraction: float,
             val_seed: int, device: str) -> Dataset:
    return load_dataset(name, data_root=data_root or None, normalize=normalize, noise=noise,
                        val_fraction=val_fraction, val_seed=val_seed).to(torch.device(device))


def run_job(spec: JobSpec, grid_dir: str | os.PathLike[str], *, grid: str = "",
            threads: int | None = None, progress: Progress | None = None,
            tensorboard: bool = False, swept_keys: Sequence[str] = (),
            checkpoint_seconds: float | None = None) -> JobResult:
    """Train `spec` into the output dir `grid_dir` as a stack of one, resuming from its
    checkpoint; never raises for job errors (failures and divergence are results).

    While the grid dir asks the job to stop (`tvo cancel`), it does not start, or stops at the
    end of the current epoch with that epoch checkpointed, and ends `cancelled`; a later call
    without the request resumes it. `tensorboard` also writes each evaluated epoch as
    TensorBoard scalars under tensorboard/<job_id>, with `swept_keys` as its HParams.
    """
    settings = RunSettings(grid, tensorboard, tuple(swept_keys),
                           **({} if checkpoint_seconds is None
                              else {"checkpoint_seconds": checkpoint_seconds}))
    each = None if progress is None else (lambda _job, epoch, epochs, row:
                                          progress(epoch, epochs, row))
    return run_stack(StackRequest(str(grid_dir), (spec,), settings), threads=threads,
                     progress=each)[0]


def run_stack(request: StackRequest, *, threads: int | None = None,
              progress: StackProgress | None = None) -> list[JobResult]:
    """Train the requested jobs together into their grid dir; one result per job, in order.
    Jobs that cannot share a stack (`pack_key`) train as stacks of their own, one after
    another. A job asked to stop before it starts is recorded cancelled and not trained."""
    if threads:
        torch.set_num_threads(threads)
    run_dir = RunDir(request.grid_dir, request.settings.grid)
    outcome = _finished(request)
    cancelled = [spec for spec in request.specs
                 if spec.job_id not in outcome and run_dir.cancel_requested(spec.job_id)]
    if cancelled:
        run_dir.record_cancelled([spec.job_id for spec in cancelled])
        outcome.update((spec.job_id, JobResult(spec.job_id, CANCELLED.value))
                       for spec in cancelled)
    stacks: dict[str, list[JobSpec]] = {}
    for position, spec in enumerate(request.specs):
        if spec.job_id not in outcome:
            stacks.setdefault(pack_key(spec) or f"alone:{position}", []).append(spec)
    for specs in stacks.values():
        outcome.update(_Stacked(run_dir, specs, request.settings, progress).run())
    return [outcome[spec.job_id] for spec in request.specs]


_indexes: dict[str, StateIndex] = {}


def _finished(request: StackRequest) -> dict[str, JobResult]:
    """The recorded results of this unit's jobs that are finished already (not trained again):
    a worker reads each results file of its grid dir once, however many stacks it runs."""
    index = _indexes.get(request.grid_dir)
    if index is None:
        index = _indexes[request.grid_dir] = StateIndex(Path(request.grid_dir))
    index.refresh_results()
    finished = index.finished_ids()
    found = {}
    for spec in request.specs:
        if spec.job_id in finished:
            record = index.record(spec.job_id)
            found[spec.job_id] = JobResult(spec.job_id, record.state.value, record.error,
                                           record.epochs_done, record.test_acc, record.log)
    return found


@dataclass
class _Ended:
    outcome: Outcome
    rows: list[dict[str, Any]]


class _Stacked:
    """One stack's life: start its members, train them, commit what they end with."""

    def __init__(self, run_dir: RunDir, specs: Sequence[JobSpec], settings: RunSettings,
                 progress: StackProgress | None) -> None:
        self.run_dir = run_dir
        self.specs = list(specs)
        self.settings = settings
        self.progress = progress
        self.stack = stack_id(spec.job_id for spec in self.specs)
        self.files: StackFiles | None = None
        self.ended: dict[str, _Ended] = {}
        self.members: list[Member] = []
        self.started = time.perf_counter()

    def run(self) -> dict[str, JobResult]:
        files = self.files = self.run_dir.stack_files(self.stack, self.specs)
        handed_on: dict[str, JobResult] = {}
        try:
            try:
                device = resolve_device(self.specs[0].device)
                data = shared_dataset(self.specs[0], device)
            except Exception as exc:  # every member fails alike: nothing to train with
                files.begin(self.specs[0].device)
                self._fail_all(self.specs, exc)
                return self._commit()
            files.begin(str(device))
            saved = self.run_dir.saved_states(spec.job_id for spec in self.specs)
            for spec in self.specs:
                try:
                    member = Member.build(spec, data, device, saved.get(spec.job_id))
                except Exception as exc:
                    self._fail_all([spec], exc)
                    continue
                if spec.job_id in saved:
                    self._log(spec.job_id).info("resumed after epoch %d",
                                                saved[spec.job_id].state["epoch"])
                if self.settings.tensorboard:
                    member.board = TensorBoardLog(OutputDir(self.run_dir.path).tensorboard(
                        spec.job_id), spec, self.settings.grid, self.settings.swept_keys)
                self.members.append(member)
            try:
                self._train(data, device)
            except Exception as exc:
                handed_on = self._after_stack_error(exc)
            return {**self._commit(), **handed_on}
        except BaseException as exc:  # stopped from outside: checkpoints stay for the resume
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                files.interrupted([spec.job_id for spec in self.specs
                                   if spec.job_id not in self.ended
                                   and spec.job_id not in handed_on])
            raise
        finally:
            for member in self.members:
                if member.board is not None:
                    member.board.close()
            files.close()

    # -- how members end ------------------------------------------------------------------------
    def _log(self, job_id: str) -> Any:
        return self.run_dir.logger(stack=self.stack, job=job_id)

    def _end(self, member: Member | _Placeholder, state: JobState, error: str | None = None, *,
             trace: str | None = None, epochs_done: int | None = None) -> None:
        rows = member.rows
        final = rows[-1] if rows else {}
        outcome = Outcome(state, error,
                          int(final.get("epoch", 0)) if epochs_done is None else epochs_done,
                          final.get("test_acc"),
                          round(time.perf_counter() - self.started, 3))
        self.ended[member.job_id] = _Ended(outcome, rows)
        log = self._log(member.job_id)
        if state == DIVERGED:
            log.warning("diverged: %s", error)
        elif state == FAILED:
            log.error("failed: %s\n%s", error, trace or "")
        elif state == CANCELLED:
            log.info("cancelled after epoch %s (`tvo cancel`); the next run resumes it",
                     epochs_done)
        else:
            log.info("%s after epoch %d: test_acc %.4f", state, outcome.epochs_done,
                     final.get("test_acc", float("nan")))
        assert self.files is not None
        self.files.ended_early(member.job_id, outcome)

    def _fail_all(self, specs: Sequence[JobSpec], exc: Exception) -> None:
        trace = traceback.format_exc()
        for spec in specs:
            self._end(_Placeholder(spec), FAILED, f"{type(exc).__name__}: {exc}", trace=trace)

    def _commit(self) -> dict[str, JobResult]:
        """Write the stack's results file (every member that ended here), and say how each
        ended. A member handed on to a stack of its own is that stack's to commit."""
        assert self.files is not None
        by_id = {spec.job_id: spec for spec in self.specs}
        members = [(by_id[job_id], ended.rows, ended.outcome)
                   for job_id, ended in self.ended.items()]
        log_file = str(self.run_dir.log_path)
        try:
            if members:
                self.files.commit(members)
        except Exception as exc:  # a failed write is its members' failure
            error = f"{type(exc).__name__}: {exc}"
            self.files.log.error("writing the results failed: %s\n%s", error,
                                 traceback.format_exc())
            self.run_dir.record_crash(list(self.ended), error)
            return {job_id: JobResult(job_id, FAILED.value, error, log=log_file)
                    for job_id in self.ended}
        return {job_id: JobResult(job_id, ended.outcome.state.value, ended.outcome.error,
                                  ended.outcome.epochs_done, ended.outcome.test_acc, log_file)
                for job_id, ended in self.ended.items()}

    def _after_stack_error(self, exc: Exception) -> dict[str, JobResult]:
        """A stack of one records its error; a larger stack's unfinished members each go on
        alone from their last checkpoint, so the member that raises fails and its mates
        finish."""
        unfinished = [m for m in self.members if m.job_id not in self.ended]
        if len(self.members) == 1 and unfinished:
            self._end(unfinished[0], FAILED, f"{type(exc).__name__}: {exc}",
                      trace=traceback.format_exc())
            return {}
        assert self.files is not None
        self.files.log.warning("the stack failed (%s: %s); its %d unfinished jobs go on alone",
                               type(exc).__name__, exc, len(unfinished), exc_info=True)
        self.files.close_checkpoints()
        results: dict[str, JobResult] = {}
        for member in unfinished:
            if member.board is not None:
                member.board.close()
                member.board = None
            alone = _Stacked(self.run_dir, [member.spec], self.settings, self.progress)
            results.update(alone.run())
        return results

    # -- the epoch loop -------------------------------------------------------------------------
    def _train(self, data: Dataset, device: torch.device) -> None:
        """Epoch by epoch, the members whose next epoch is the earliest train as one stack."""
        assert self.files is not None
        live = list(self.members)
        stack: Stack | None = None
        fresh = stack_order([m for m in live if not m.rows])
        if fresh:  # before training: the epoch-0 row (also of a job that trains 0 epochs)
            stack = Stack(fresh, data, device)
            for member, row in zip(fresh, stack.evaluation_rows(epoch=0), strict=True):
                self._record(member, row)
        last_checkpoint = time.perf_counter()
        epochs = max((m.spec.epochs for m in live), default=0)
        while live:
            for member in [m for m in live if m.next_epoch > m.spec.epochs]:
                self._end(member, DONE)
                live.remove(member)
            if not live:
                break
            epoch = min(m.next_epoch for m in live)
            active = stack_order([m for m in live if m.next_epoch == epoch])
            if stack is None or stack.members != active:
                if stack is not None:
                    stack.hand_back_all()
                stack = Stack(active, data, device)
            losses, accuracies, seconds = stack.train_epoch(epoch)
            stack.end_epoch(epoch, losses)
            evaluated = [epoch % m.spec.eval_every == 0 or epoch == m.spec.epochs for m in active]
            rows = stack.evaluation_rows(epoch) if any(evaluated) else []
            checkpoint = (time.perf_counter() - last_checkpoint
                          >= self.settings.checkpoint_seconds)
            n = data.x_train.shape[0]
            saving: dict[str, dict[str, Any]] = {}
            for i, member in enumerate(active):
                if self._end_epoch(stack, i, epoch, losses[i], accuracies[i], seconds, n,
                                   rows[i] if evaluated[i] else None, checkpoint, saving):
                    live.remove(member)
                else:
                    member.next_epoch = epoch + 1
            if saving:
                self.files.checkpoint(saving)
            if checkpoint:
                last_checkpoint = time.perf_counter()
            self.files.epoch(epoch, epochs, len(active))
            if rows:
                self._log_epoch(epoch, epochs, [row["test_acc"] for row, chosen
                                                in zip(rows, evaluated, strict=True) if chosen])

    def _end_epoch(self, stack: Stack, index: int, epoch: int, train_loss: float,
                   train_acc: float, seconds: float, n: int, row: dict[str, Any] | None,
                   checkpoint: bool, saving: dict[str, dict[str, Any]]) -> bool:
        """After a training epoch, for one member: its row, and whether it ends here (a state
        to checkpoint goes into `saving`)."""
        member = stack.members[index]
        samples_per_second = n / seconds if seconds > 0 else None
        if not math.isfinite(train_loss):
            member.rows.append({"epoch": epoch, "learning_rate": member.schedule.lr,
                                "train_loss": train_loss, "epoch_seconds": seconds,
                                "samples_per_second": samples_per_second})
            self._end(member, DIVERGED, f"training loss became {train_loss} in epoch {epoch}")
            return True
        if row is not None:
            row.update(train_loss=train_loss, train_acc=train_acc, epoch_seconds=seconds,
                       samples_per_second=samples_per_second)
            self._record(member, row)
            if not math.isfinite(row["test_loss"]):
                self._end(member, DIVERGED, f"test loss became {row['test_loss']} in epoch "
                          f"{epoch}")
                return True
            if epoch < member.spec.epochs and member.stops_early(row):
                self._log(member.job_id).info(
                    "stopped early after epoch %d: no better val_acc in %d evaluated epochs "
                    "(best %.4f)", epoch, member.spec.stop_patience, member.best_val_acc)
                self._end(member, DONE)
                return True
        if epoch < member.spec.epochs and self.run_dir.cancel_requested(member.job_id):
            stack.hand_back(index)  # the epoch it stops after, evaluated or not
            saving[member.job_id] = member.state(epoch)
            self._end(member, CANCELLED, epochs_done=epoch)
            return True
        if checkpoint and row is not None and epoch < member.spec.epochs:
            stack.hand_back(index)
            saving[member.job_id] = member.state(epoch)
        return False

    def _log_epoch(self, epoch: int, epochs: int, accuracies: list[float]) -> None:
        """One line per evaluated epoch of the stack (each job's values are in its rows)."""
        assert self.files is not None and self.files.log is not None
        finite = [acc for acc in accuracies if math.isfinite(acc)]
        if finite:
            self.files.log.info("epoch %d/%d: %d jobs, test_acc mean %.4f (%.4f-%.4f)", epoch,
                                epochs, len(accuracies), sum(finite) / len(finite), min(finite),
                                max(finite))

    def _record(self, member: Member, row: dict[str, Any]) -> None:
        """A metrics row: kept for the results file, shown (progress, TensorBoard)."""
        member.rows.append(row)
        if member.board is not None:
            member.board.write(row)
        if self.progress is not None:
            self.progress(member.job_id, row["epoch"], member.spec.epochs, row)


@dataclass
class _Placeholder:
    """A job that failed before its member could be built: what `_end` needs of a member."""

    spec: JobSpec

    @property
    def job_id(self) -> str:
        return self.spec.job_id

    @property
    def rows(self) -> list[dict[str, Any]]:
        return []
