"""The training engine: every job trains as a member of a stack; a job alone is a stack of one.

`run_stack` is the one epoch loop, top to bottom: each member starts (from its checkpoint, or
from its seed with an epoch-0 evaluation), then per epoch the members whose next epoch is the
earliest train as one Stack (a member behind catches up alone, then the others join it), the
strategies adapt, the schedules step, evaluated members get their metrics row, and each member
may end there: diverged (a non-finite loss), cancelled (a cancel request in its run dir; that
epoch checkpointed) or done. Its run dir's RunDir records each of these; the others train on.
A member's results never depend on its mates.

Members checkpoint after an evaluated epoch once `checkpoint_seconds` have passed since the
stack's last checkpoint: on small models a checkpoint costs more than an epoch, and resuming
from an earlier epoch gives the same results, so only the work redone after a kill grows.
If the stacked computation itself raises, each unfinished member goes on alone from its last
checkpoint, so one member's error cannot take its mates with it.
"""

from __future__ import annotations

import functools
import math
import os
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import torch

from jobs.data.datasets import Dataset, load_dataset
from jobs.engine.member import Member
from jobs.engine.packing import pack_key
from jobs.engine.stack import Stack, stack_order
from jobs.request import JobRequest
from jobs.rundir import results
from jobs.rundir.results import JobResult
from jobs.rundir.run_dir import RunDir
from jobs.rundir.tensorboard import TensorBoardLog
from jobs.spec import JobSpec

__all__ = ["JobResult", "run_job", "run_stack"]

CHECKPOINT_SECONDS = 10.0  # at most this much training is redone after a kill
CHECKPOINT_SECONDS_ENV = "TVO_CHECKPOINT_SECONDS"  # overrides it (0: after every evaluated epoch)
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


def run_job(spec: JobSpec, run_dir: str | os.PathLike[str], *, grid: str = "",
            threads: int | None = None, progress: Progress | None = None,
            tensorboard: bool = False, swept_keys: Sequence[str] = (),
            checkpoint_seconds: float | None = None) -> JobResult:
    """Train `spec` in `run_dir` as a stack of one, resuming from its checkpoint; never raises
    for job errors (failures and divergence are results).

    A job already finished is not trained again: its recorded result is returned. While the run
    dir holds a cancel file (results.CANCEL_FILE), the job does not start, or stops at the end
    of the current epoch with that epoch checkpointed, and ends `cancelled`; a later call
    without the file resumes it. `tensorboard` also writes each evaluated epoch as TensorBoard
    scalars under run_dir/tensorboard, with `swept_keys` (the settings its grid sweeps) as the
    HParams that tell the jobs of a grid apart.
    """
    request = JobRequest(spec, str(run_dir), grid, tensorboard, tuple(swept_keys))
    each = None if progress is None else (lambda _job, epoch, epochs, row:
                                          progress(epoch, epochs, row))
    return run_stack([request], threads=threads, progress=each,
                     checkpoint_seconds=checkpoint_seconds)[0]


def run_stack(requests: Sequence[JobRequest], *, threads: int | None = None,
              progress: StackProgress | None = None,
              checkpoint_seconds: float | None = None) -> list[JobResult]:
    """Train the requested jobs together, each into its own run dir; one result per request, in
    order. Jobs that cannot share a stack (`pack_key`) train in stacks of their own, one after
    another. Finished jobs are not trained again. `checkpoint_seconds` defaults to
    $TVO_CHECKPOINT_SECONDS, else CHECKPOINT_SECONDS."""
    if threads:
        torch.set_num_threads(threads)
    if checkpoint_seconds is None:
        checkpoint_seconds = checkpoint_interval()
    outcome: dict[int, JobResult] = {}
    stacks: dict[str, list[int]] = {}
    for position, request in enumerate(requests):
        run = RunDir(request.spec, request.run_dir, request.grid)
        recorded = run.recorded()
        if recorded is not None:
            outcome[position] = recorded
        elif run.cancel_requested():
            outcome[position] = run.cancelled_before_start()
        else:
            key = pack_key(request.spec) or f"alone:{position}"
            stacks.setdefault(key, []).append(position)
    for positions in stacks.values():
        chosen = [requests[p] for p in positions]
        outcome.update(zip(positions, _train_together(chosen, progress, checkpoint_seconds),
                           strict=True))
    return [outcome[position] for position in range(len(requests))]


def checkpoint_interval() -> float:
    """Seconds between a stack's checkpoints: $TVO_CHECKPOINT_SECONDS, else the default."""
    value = os.environ.get(CHECKPOINT_SECONDS_ENV, "")
    if not value:
        return CHECKPOINT_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise ValueError(f"{CHECKPOINT_SECONDS_ENV}={value[:40]!r}: expected a number of seconds "
                         ">= 0 (0: a checkpoint after every evaluated epoch)")
    return seconds


def _train_together(requests: Sequence[JobRequest], progress: StackProgress | None,
                    checkpoint_seconds: float) -> list[JobResult]:
    """Jobs of one pack key as members of one stack; results in request order."""
    runs = [RunDir(r.spec, r.run_dir, r.grid) for r in requests]
    ended: dict[RunDir, JobResult] = {}
    members: list[Member] = []
    try:
        spec = requests[0].spec
        try:
            device = resolve_device(spec.device)
            data = shared_dataset(spec, device)
        except Exception as exc:  # every member fails alike: nothing to train with
            for run in runs:
                run.begin(spec.device, len(runs))
                ended[run] = run.end(results.FAILED, [], f"{type(exc).__name__}: {exc}",
                                     trace=traceback.format_exc())
            return [ended[run] for run in runs]
        for run, request in zip(runs, requests, strict=True):
            run.begin(str(device), len(runs))
            try:
                member = Member.build(run, data, device)
            except Exception as exc:
                ended[run] = run.end(results.FAILED, [], f"{type(exc).__name__}: {exc}",
                                     trace=traceback.format_exc())
                continue
            if request.tensorboard:
                member.board = TensorBoardLog(run.path, run.spec, run.grid, request.swept_keys)
            members.append(member)
        try:
            _train(members, data, device, progress, checkpoint_seconds, ended)
        except Exception as exc:
            _after_stack_error(exc, members, requests, runs, progress, checkpoint_seconds, ended)
    except BaseException as exc:  # stopped from outside: checkpoints stay for the resume
        signalled = isinstance(exc, KeyboardInterrupt | SystemExit)
        for run in runs:
            if run not in ended:
                run.release(signalled)
        raise
    finally:
        for member in members:
            if member.board is not None:
                member.board.close()
    return [ended[run] for run in runs]


def _after_stack_error(exc: Exception, members: list[Member], requests: Sequence[JobRequest],
                       runs: list[RunDir], progress: StackProgress | None,
                       checkpoint_seconds: float, ended: dict[RunDir, JobResult]) -> None:
    """A stack of one records its error; a larger stack's unfinished members each go on alone
    from their last checkpoint, so the member that raises fails and its mates finish."""
    unfinished = [m for m in members if m.run not in ended]
    if len(members) == 1 and unfinished:
        member = unfinished[0]
        ended[member.run] = member.run.end(results.FAILED, member.rows,
                                           f"{type(exc).__name__}: {exc}",
                                           trace=traceback.format_exc())
        return
    by_run = dict(zip(runs, requests, strict=True))
    for member in unfinished:
        member.run.log.warning("the stack failed (%s: %s); this job goes on alone",
                               type(exc).__name__, exc, exc_info=True)
        if member.board is not None:
            member.board.close()
            member.board = None
        member.run.hand_back()
    for member in unfinished:
        ended[member.run] = _train_together([by_run[member.run]], progress,
                                            checkpoint_seconds)[0]


def _train(members: list[Member], data: Dataset, device: torch.device,
           progress: StackProgress | None, checkpoint_seconds: float,
           ended: dict[RunDir, JobResult]) -> None:
    """Epoch by epoch, the members whose next epoch is the earliest train as one stack."""
    live = list(members)
    stack: Stack | None = None
    fresh = stack_order([m for m in live if not m.rows])
    if fresh:  # before training: the epoch-0 row (also of a job that trains 0 epochs)
        stack = Stack(fresh, data, device)
        for member, row in zip(fresh, stack.evaluation_rows(epoch=0), strict=True):
            _record(member, row, progress)
    last_checkpoint = time.perf_counter()
    while live:
        for member in [m for m in live if m.next_epoch > m.spec.epochs]:
            ended[member.run] = member.run.end(results.DONE, member.rows)
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
        checkpoint = time.perf_counter() - last_checkpoint >= checkpoint_seconds
        n = data.x_train.shape[0]
        for i, member in enumerate(active):
            end = _end_epoch(stack, i, epoch, losses[i], accuracies[i], seconds, n,
                             rows[i] if evaluated[i] else None, checkpoint, progress)
            if end is not None:
                ended[member.run] = end
                live.remove(member)
            else:
                member.next_epoch = epoch + 1
        if checkpoint:
            last_checkpoint = time.perf_counter()


def _end_epoch(stack: Stack, index: int, epoch: int, train_loss: float, train_acc: float,
               seconds: float, n: int, row: dict[str, Any] | None, checkpoint: bool,
               progress: StackProgress | None) -> JobResult | None:
    """After a training epoch, for one member: its row, and its end if it ends here."""
    member = stack.members[index]
    run = member.run
    samples_per_second = n / seconds if seconds > 0 else None
    if not math.isfinite(train_loss):
        member.rows.append({"epoch": epoch, "learning_rate": member.schedule.lr,
                            "train_loss": train_loss, "epoch_seconds": seconds,
                            "samples_per_second": samples_per_second})
        return run.end(results.DIVERGED, member.rows,
                       f"training loss became {train_loss} in epoch {epoch}")
    if row is not None:
        row.update(train_loss=train_loss, train_acc=train_acc, epoch_seconds=seconds,
                   samples_per_second=samples_per_second)
        _record(member, row, progress)
        if not math.isfinite(row["test_loss"]):
            return run.end(results.DIVERGED, member.rows,
                           f"test loss became {row['test_loss']} in epoch {epoch}")
        if epoch < member.spec.epochs and member.stops_early(row):
            run.log.info("stopped early after epoch %d: no better val_acc in %d evaluated "
                         "epochs (best %.4f)", epoch, member.spec.stop_patience,
                         member.best_val_acc)
            return run.end(results.DONE, member.rows)
    if epoch < member.spec.epochs and run.cancel_requested():
        stack.hand_back(index)  # the epoch it stops after, evaluated or not
        run.checkpoint(member.state(epoch))
        return run.end(results.CANCELLED, member.rows, epochs_done=epoch)
    if checkpoint and row is not None and epoch < member.spec.epochs:
        stack.hand_back(index)
        run.checkpoint(member.state(epoch))
    return None


def _record(member: Member, row: dict[str, Any], progress: StackProgress | None) -> None:
    """A metrics row: kept for metrics.parquet, logged, and shown (progress, TensorBoard)."""
    member.rows.append(row)
    spec = member.spec
    member.run.log.info("epoch %d/%d train_loss %.4f train_acc %.4f test_acc %.4f",
                        row["epoch"], spec.epochs, row.get("train_loss", float("nan")),
                        row.get("train_acc", float("nan")), row["test_acc"])
    if member.board is not None:
        member.board.write(row)
    if progress is not None:
        progress(spec.job_id, row["epoch"], spec.epochs, row)
