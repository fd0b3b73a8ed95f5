"""run_pack: train many small jobs in one process as one stacked model, each into its own run dir.

How a pack trains (pack_member, pack_model, pack_optim and pack_epoch hold the pieces):
- Each member is built exactly as run_job builds its job, then the members of an epoch are
  stacked: parameters as rows of one flat matrix, hyperparameters as columns, one batched
  forward/backward and one vectorised optimiser update per batch. Every member keeps its own
  initialisation, data order, dropout stream, strategy, optimiser state and schedule.
- Members can be at different epochs (resumed from checkpoints written at different times, or
  with different `epochs`/`eval_every`): each epoch trains the members whose next epoch is the
  earliest, so members that are behind catch up alone and the others join them when they reach
  the same epoch. The stack is rebuilt only when its membership changes.
- A member that diverges, fails or finishes leaves the stack at the end of that epoch, with its
  run dir written as run_job would write it; the others go on in a rebuilt stack.
- Each member checkpoints into its own run dir in run_job's format, so a pack resumes per
  member, from packed or unpacked checkpoints alike; finished members are not trained again.
  Where run_job checkpoints after every evaluated epoch, a pack does so at most every
  `checkpoint_seconds` (and always after a member's last epoch): for small models one
  checkpoint costs more than a packed epoch, and resuming from an earlier epoch gives the same
  results, so only the work redone after a kill grows, by at most that interval.
- A member whose run dir holds a cancel request stops at its epoch end, checkpointed, as
  run_job does, while the others train on; one asked to stop before the pack starts is not run.
- Jobs that cannot be packed (`pack_refusal`, or dropout where the unit finds a GPU) run one
  after another with run_job; so does every unfinished member if the stacked computation itself
  breaks (each resumes from its last checkpoint).
"""

from __future__ import annotations

import math
import time
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from jobs import results
from jobs.datasets import Dataset, load_dataset
from jobs.job_record import (
    JobResult,
    attach_log,
    cancelled_before_start,
    detach_log,
    job_logger,
    recorded_result,
    row_without_eval,
    with_training,
)
from jobs.optim import step_scheduler
from jobs.pack_epoch import Stack
from jobs.pack_member import Member, MemberRun, PackProgress, build_member
from jobs.pack_plan import pack_key, pack_refusal, plan_packs
from jobs.spec import JobSpec
from jobs.train import resolve_device, run_job

if TYPE_CHECKING:
    from jobs.entry import JobRequest

__all__ = ["PackProgress", "pack_key", "pack_refusal", "plan_packs", "run_pack"]

CHECKPOINT_SECONDS = 10.0  # at most this much packed training is redone after a kill


def run_pack(requests: Sequence[JobRequest], *, threads: int | None = None,
             progress: PackProgress | None = None,
             checkpoint_seconds: float = CHECKPOINT_SECONDS) -> list[JobResult]:
    """Train the requested jobs together, each into its own run dir; one result per request,
    in order. Never raises for job errors: like run_job, failures and divergence are results.

    Finished jobs are not trained again. Jobs are packed by `pack_key`; a job that shares its
    key with no other, or cannot be packed here, runs alone with run_job. Members checkpoint
    after an evaluated epoch once `checkpoint_seconds` have passed since the pack's last
    checkpoint (0: after every evaluated epoch, as run_job), and after their last epoch.
    """
    if threads:
        torch.set_num_threads(threads)
    outcome: dict[int, JobResult] = {}
    groups: dict[str, list[int]] = {}
    alone: list[int] = []
    for position, request in enumerate(requests):
        recorded = recorded_result(request.spec, Path(request.run_dir))
        if recorded is not None:
            outcome[position] = recorded
            continue
        if results.cancel_requested(Path(request.run_dir)):
            outcome[position] = cancelled_before_start(request.spec, Path(request.run_dir),
                                                       request.grid)
            continue
        reason = _refusal_here(request.spec)
        if reason is not None:
            _note(request, f"runs alone: {reason}")
            alone.append(position)
        else:
            groups.setdefault(str(pack_key(request.spec)), []).append(position)
    for positions in groups.values():
        if len(positions) == 1:
            alone.extend(positions)
        else:
            trained = _run_group([requests[p] for p in positions], threads, progress,
                                 checkpoint_seconds)
            outcome.update(zip(positions, trained, strict=True))
    for position in sorted(alone):
        outcome[position] = _run_alone(requests[position], threads, progress)
    return [outcome[position] for position in range(len(requests))]


def _refusal_here(spec: JobSpec) -> str | None:
    """pack_refusal, plus what only the machine the unit runs on can tell."""
    reason = pack_refusal(spec)
    if reason is None and spec.dropout > 0 and spec.device == "auto" \
            and torch.cuda.is_available():
        reason = ("dropout on cuda (device=auto found a GPU) draws its masks in a fused kernel "
                  "whose random stream cannot be reproduced per member")
    return reason


def _note(request: JobRequest, message: str) -> None:
    """A line in the job's own log, for what happens before run_job takes the job."""
    run_dir = Path(request.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = attach_log(run_dir, shared=True)
    try:
        job_logger(run_dir).info(message)
    finally:
        detach_log(handler)


def _run_alone(request: JobRequest, threads: int | None,
               progress: PackProgress | None) -> JobResult:
    job_id = request.spec.job_id
    return run_job(request.spec, request.run_dir, grid=request.grid, threads=threads,
                   progress=None if progress is None
                   else lambda epoch, epochs, row: progress(job_id, epoch, epochs, row))


def _run_group(requests: Sequence[JobRequest], threads: int | None,
               progress: PackProgress | None, checkpoint_seconds: float) -> list[JobResult]:
    """Jobs of one pack key trained as one pack; results in request order."""
    try:
        device = resolve_device(requests[0].spec.device)
    except RuntimeError:  # run_job records the error in each job's run dir
        return [_run_alone(request, threads, progress) for request in requests]
    runs = [MemberRun.start(r.spec, Path(r.run_dir), r.grid, str(device)) for r in requests]
    for run in runs:
        run.log.info("training in a pack of %d jobs", len(runs))
    ended: dict[MemberRun, JobResult] = {}
    members: list[Member] = []
    try:
        try:
            spec = runs[0].spec
            data = load_dataset(spec.dataset, data_root=spec.data_root or None,
                                normalize=spec.normalize, noise=spec.noise).to(device)
            for run in runs:
                try:
                    members.append(build_member(run, data, device, progress))
                except Exception as exc:
                    ended[run] = run.end_failed(f"{type(exc).__name__}: {exc}",
                                                traceback.format_exc())
            _train(members, data, device, progress, checkpoint_seconds, ended)
        except Exception as exc:  # the pack itself broke: its members go on alone
            for member in members:
                _close_quietly(member)
            for run, request in zip(runs, requests, strict=True):
                if run not in ended:
                    run.log.warning("the pack failed (%s: %s); this job goes on alone",
                                    type(exc).__name__, exc, exc_info=True)
                    run.hand_back()
                    ended[run] = _run_alone(request, threads, progress)
    finally:  # when interrupted, status.json stays "running", as run_job leaves it
        for member in members:
            _close_quietly(member)
        for run in runs:
            if run not in ended:
                detach_log(run.handler)
    return [ended[run] for run in runs]


def _train(members: list[Member], data: Dataset, device: torch.device,
           progress: PackProgress | None, checkpoint_seconds: float,
           ended: dict[MemberRun, JobResult]) -> None:
    """Epoch by epoch, the members whose next epoch is the earliest train as one stack."""
    live = list(members)
    stack: Stack | None = None
    last_checkpoint = time.perf_counter()
    while live:
        for member in [m for m in live if m.next_epoch > m.spec.epochs]:
            ended[member.run] = _end(member, results.DONE)
            live.remove(member)
        if not live:
            break
        epoch = min(m.next_epoch for m in live)
        active = [m for m in live if m.next_epoch == epoch]
        if stack is None or stack.members != active:
            if stack is not None:
                stack.release()
            stack = Stack(active, data, device)
        losses, accuracies, seconds = stack.train_epoch(epoch)
        checkpoint = time.perf_counter() - last_checkpoint >= checkpoint_seconds
        for member, loss, accuracy in zip(active, losses, accuracies, strict=True):
            result = _end_epoch(member, stack, data, epoch, loss, accuracy, seconds, progress,
                                checkpoint)
            if result is not None:
                ended[member.run] = result
                live.remove(member)
        if checkpoint:
            last_checkpoint = time.perf_counter()


def _end_epoch(member: Member, stack: Stack, data: Dataset, epoch: int, train_loss: float,
               train_acc: float, seconds: float, progress: PackProgress | None,
               checkpoint: bool) -> JobResult | None:
    """What run_job does after a training epoch, for one member; its result if it ended.
    The checkpoint after an evaluated epoch only when `checkpoint` or at its last epoch."""
    if member.failure is not None:
        return _end(member, results.FAILED)
    spec, rows = member.spec, member.run.rows
    n = data.x_train.shape[0]
    try:
        stack.sync(member)  # from here the member's own module and optimiser are current
        member.strategy.end_epoch(epoch)
        with warnings.catch_warnings():  # the stack steps for the member's own optimiser
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            step_scheduler(member.scheduler, train_loss)
        if not math.isfinite(train_loss):
            rows.append(row_without_eval(epoch, train_loss, member.learning_rate(), seconds, n))
            return _end(member, results.DIVERGED,
                        f"training loss became {train_loss} in epoch {epoch}")
        if epoch % spec.eval_every == 0 or epoch == spec.epochs:
            row = with_training(member.evaluate(data, epoch), train_loss, train_acc, seconds, n)
            rows.append(row)
            member.report(row, progress)
            if not math.isfinite(row["test_loss"]):
                return _end(member, results.DIVERGED,
                            f"test loss became {row['test_loss']} in epoch {epoch}")
            if checkpoint or epoch == spec.epochs:
                member.save(epoch)
        if epoch < spec.epochs and results.cancel_requested(member.run.run_dir):
            member.save(epoch)  # as run_job: the epoch it stops after, evaluated or not
            return _end_cancelled(member, epoch)
    except Exception as exc:
        member.record_failure(exc)
        return _end(member, results.FAILED)
    member.next_epoch = epoch + 1
    return None


def _end_cancelled(member: Member, epoch: int) -> JobResult:
    """A member whose run dir holds a cancel request stops after `epoch`, as run_job does: that
    epoch checkpointed, no metrics.parquet, the others train on."""
    member.run.log.info("cancelled after epoch %d (cancel request: %s)", epoch,
                        member.run.run_dir / results.CANCEL_FILE)
    return _end(member, results.CANCELLED, epochs_done=epoch)


def _end(member: Member, state: str, error: str | None = None,
         epochs_done: int | None = None) -> JobResult:
    """Record a member's end in its run dir, its checkpoint file closed."""
    try:
        member.checkpoints.close()
    except Exception as exc:
        member.record_failure(exc)
    if member.failure is not None:
        return member.run.end_failed(*member.failure)
    return member.run.end(state, error, epochs_done=epochs_done)


def _close_quietly(member: Member) -> None:
    """Close the member's checkpoint file; a failure to do so no longer matters here."""
    try:
        member.checkpoints.close()
    except Exception as exc:
        member.run.log.warning("closing the checkpoint file failed: %s", exc)
