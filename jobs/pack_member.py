"""One job inside a pack: its run dir bookkeeping and everything it would own training alone.

A member is built exactly as run_job builds its job (seed, model, strategy, optimiser,
schedule, data order, strategy setup, checkpoint), so its own `nn.Module` and torch optimiser
hold its state whenever it is not inside a stack (and after each sync); while it trains in one,
the stack holds the live values and `forward` reads them from there.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.func import functional_call

from jobs import results
from jobs.checkpoint import CheckpointWriter, load_checkpoint
from jobs.datasets import Dataset
from jobs.job_record import (
    JobResult,
    attach_log,
    begin,
    detach_log,
    evaluation_row,
    finish,
    job_logger,
    report,
    strategy_context,
)
from jobs.models import build_model
from jobs.optim import build_optimizer, build_scheduler, current_lr
from jobs.spec import JobSpec
from jobs.strategies import TargetStrategy, make_strategy

if TYPE_CHECKING:
    import logging

    from jobs.pack_model import StackedMLP

PackProgress = Callable[[str, int, int, dict[str, Any]], None]  # (job_id, epoch, epochs, row)


@dataclass(eq=False)  # one object per job attempt: compared and hashed by identity
class MemberRun:
    """A member's run dir bookkeeping, from the moment it starts until it is recorded."""

    spec: JobSpec
    run_dir: Path
    grid: str
    status: dict[str, Any]
    previous_status: dict[str, Any] | None  # status.json before this attempt (None: no file)
    handler: logging.Handler
    log: logging.LoggerAdapter
    started: float
    rows: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def start(cls, spec: JobSpec, run_dir: Path, grid: str, device: str) -> MemberRun:
        run_dir.mkdir(parents=True, exist_ok=True)
        exists = (run_dir / results.STATUS_FILE).exists()
        previous = results.read_status(run_dir) if exists else None
        status = begin(spec, run_dir, grid)
        status["device"] = device
        run = cls(spec, run_dir, grid, status, previous, attach_log(run_dir, shared=True),
                  job_logger(run_dir), time.perf_counter())
        run.log.info("job %s attempt %d on %s (%s)", spec.job_id, status["attempts"],
                     status["host"], device)
        return run

    def end(self, state: str, error: str | None = None, *, trace: str | None = None,
            epochs_done: int | None = None) -> JobResult:
        """Record the member's end as run_job does: metrics.parquet (unless it failed or was
        cancelled), then status.json; `epochs_done` for a cancelled member, as `finish` takes it."""
        if state == results.DIVERGED:
            self.log.warning("diverged: %s", error)
        try:
            if state not in (results.FAILED, results.CANCELLED):
                results.write_metrics(self.run_dir, self.spec, self.grid, self.rows)
            self.status.update(state=state, error=error)
            if trace is not None:
                self.status["traceback"] = trace
        except Exception as exc:  # a failed write is the member's failure, as in run_job
            self.status.update(state=results.FAILED, error=f"{type(exc).__name__}: {exc}",
                               traceback=traceback.format_exc())
        try:
            return finish(self.spec, self.run_dir, self.status, self.rows, self.started,
                          epochs_done=epochs_done)
        finally:
            detach_log(self.handler)

    def end_failed(self, error: str, trace: str) -> JobResult:
        self.log.error("failed: %s\n%s", error, trace)
        return self.end(results.FAILED, error, trace=trace)

    def hand_back(self) -> None:
        """Undo this attempt's status so that run_job can take the job over as a fresh attempt."""
        if self.previous_status is None:
            (self.run_dir / results.STATUS_FILE).unlink(missing_ok=True)
        else:
            results.write_status(self.run_dir, self.previous_status)
        detach_log(self.handler)


@dataclass(eq=False)
class Member:
    """A member's own training state, as run_job would hold it for the job alone."""

    run: MemberRun
    module: torch.nn.Module  # holds the parameters whenever the member is outside a stack
    optimizer: torch.optim.Optimizer
    scheduler: Any
    strategy: TargetStrategy
    order: torch.Generator  # data order, as run_job's
    dropout_rng: torch.Generator  # where run_job's dropout masks come from: the global RNG
    checkpoints: CheckpointWriter
    next_epoch: int
    stacked: StackedMLP | None = None  # the stacked network the member trains in, if any
    slot: int = -1  # the member's row in `stacked`
    in_sync: bool = True  # `module` holds the live parameters (outside a stack, or just synced)
    failure: tuple[str, str] | None = None  # (error, traceback) of a per-member call

    @property
    def spec(self) -> JobSpec:
        return self.run.spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits in eval mode: the member's own module, run_job's very forward, whenever it
        holds the live parameters; mid-epoch (a strategy looking during training), the stack's."""
        if self.in_sync:
            return self.module(x)
        assert self.stacked is not None
        return functional_call(self.module, self.stacked.member_params(self.slot), (x,))

    def learning_rate(self) -> float:
        return current_lr(self.optimizer)

    def record_failure(self, exc: BaseException) -> None:
        """Keep the first error of a per-member step; the member ends failed after the epoch."""
        if self.failure is None:
            self.failure = (f"{type(exc).__name__}: {exc}", traceback.format_exc())

    def evaluate(self, data: Dataset, epoch: int) -> dict[str, Any]:
        return evaluation_row(self.spec, self.forward, self.strategy, data, epoch=epoch,
                              learning_rate=self.learning_rate())

    def report(self, row: dict[str, Any], progress: PackProgress | None) -> None:
        job_id = self.spec.job_id
        report(self.run.log, row, self.spec,
               None if progress is None else lambda e, n, r: progress(job_id, e, n, r))

    def save(self, epoch: int) -> None:
        self.checkpoints.save(epoch=epoch, rows=self.run.rows, model=self.module,
                              optimizer=self.optimizer, scheduler=self.scheduler,
                              strategy=self.strategy, order=self.order,
                              torch_rng=self.dropout_rng.get_state())


def build_member(run: MemberRun, data: Dataset, device: torch.device,
                 progress: PackProgress | None) -> Member:
    """Everything run_job builds for the job, in run_job's order, so the member's initial weights,
    data order, strategy state and random streams are the ones it would have alone."""
    spec = run.spec
    torch.manual_seed(spec.seed)
    module = build_model(spec, data.input_shape, data.num_classes).to(device)
    module.eval()  # the member's module only evaluates; the stack trains
    strategy = make_strategy(spec.strategy)
    optimizer = build_optimizer(spec, module.parameters())
    scheduler = build_scheduler(spec, optimizer)
    order = torch.Generator().manual_seed(spec.seed)
    member = Member(run, module, optimizer, scheduler, strategy, order, torch.Generator(),
                    CheckpointWriter(run.run_dir / results.CHECKPOINT_FILE), next_epoch=1)
    strategy.setup(strategy_context(spec, data, member.forward, device))
    checkpoint = run.run_dir / results.CHECKPOINT_FILE
    if checkpoint.exists():
        saved = load_checkpoint(checkpoint, module, optimizer, scheduler, strategy, order)
        run.rows.extend(saved["rows"])
        member.next_epoch = saved["epoch"] + 1
        run.log.info("resumed after epoch %d", saved["epoch"])
    else:
        run.rows.append(member.evaluate(data, epoch=0))
        member.report(run.rows[-1], progress)
    # from here on, run_job would draw dropout masks from the global RNG as it now is
    member.dropout_rng.set_state(torch.get_rng_state())
    return member
