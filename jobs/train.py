"""run_job: the one entry point every backend calls to train one job into its run dir.

The loop reads top to bottom: load data onto the device, build model, strategy and optimiser,
resume from the checkpoint if there is one, then per epoch: shuffle, train on slices, let the
strategy adapt, step the schedule, evaluate, checkpoint. Failures and divergence are results.
"""

from __future__ import annotations

import math
import os
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from jobs import results
from jobs.checkpoint import CheckpointWriter, load_checkpoint
from jobs.datasets import Dataset, load_dataset
from jobs.job_record import (
    Cancelled,
    Diverged,
    JobResult,
    Progress,
    attach_log,
    begin,
    cancelled_before_start,
    detach_log,
    evaluation_row,
    finish,
    log,
    recorded_result,
    report,
    row_without_eval,
    strategy_context,
    with_training,
)
from jobs.losses import batch_loss
from jobs.models import activate, build_model, weight_parameters
from jobs.optim import build_optimizer, build_scheduler, current_lr, step_scheduler
from jobs.spec import JobSpec
from jobs.strategies import TargetStrategy, make_strategy
from jobs.tensorboard import TensorBoardLog


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda was asked for, but torch sees no CUDA device here")
    return torch.device(name)


def run_job(spec: JobSpec, run_dir: str | os.PathLike[str], *, grid: str = "",
            threads: int | None = None, progress: Progress | None = None,
            tensorboard: bool = False, swept_keys: Sequence[str] = ()) -> JobResult:
    """Train `spec` in `run_dir`, resuming from its checkpoint; never raises for job errors.

    A job already finished is not trained again: its recorded result is returned. While the run
    dir holds a cancel file (results.CANCEL_FILE), the job does not start, or stops at the end
    of the current epoch with that epoch checkpointed, and ends `cancelled`; a later call
    without the file resumes it. `tensorboard` also writes each evaluated epoch as TensorBoard
    scalars under run_dir/tensorboard, with `swept_keys` (the settings its grid sweeps) as the
    HParams that tell the jobs of a grid apart.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    recorded = recorded_result(spec, run_dir)
    if recorded is not None:
        return recorded
    if results.cancel_requested(run_dir):
        return cancelled_before_start(spec, run_dir, grid)
    status = begin(spec, run_dir, grid)
    handler = attach_log(run_dir)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    stopped_after: int | None = None  # the epoch a cancel request stopped the job after
    board = TensorBoardLog(run_dir, spec, grid, swept_keys) if tensorboard else None

    def report_row(epoch: int, epochs: int, row: dict[str, Any]) -> None:
        if board is not None:
            board.write(row)
        if progress is not None:
            progress(epoch, epochs, row)

    try:
        if threads:
            torch.set_num_threads(threads)
        device = resolve_device(spec.device)
        status["device"] = str(device)
        log.info("job %s attempt %d on %s (%s)", spec.job_id, status["attempts"],
                 status["host"], device)
        state = results.DONE
        error = None
        try:
            _train(spec, run_dir, device, rows, report_row)
        except Diverged as exc:
            state, error = results.DIVERGED, str(exc)
            log.warning("diverged: %s", exc)
        except Cancelled as exc:  # unfinished: no metrics.parquet, the checkpoint has the rows
            state, stopped_after = results.CANCELLED, exc.epoch
            log.info("%s (cancel request: %s)", exc, run_dir / results.CANCEL_FILE)
        if state != results.CANCELLED:
            results.write_metrics(run_dir, spec, grid, rows)
        status.update(state=state, error=error)
    except Exception as exc:  # a failed job is a result, not a crash of the grid
        error = f"{type(exc).__name__}: {exc}"
        status.update(state=results.FAILED, error=error, traceback=traceback.format_exc())
        log.error("failed: %s\n%s", error, status["traceback"])
    finally:
        result = finish(spec, run_dir, status, rows, started, epochs_done=stopped_after)
        if board is not None:
            board.close()
        detach_log(handler)
    return result


def _train(spec: JobSpec, run_dir: Path, device: torch.device, rows: list[dict[str, Any]],
           progress: Progress | None) -> None:
    data = load_dataset(spec.dataset, data_root=spec.data_root or None,
                        normalize=spec.normalize, noise=spec.noise).to(device)
    torch.manual_seed(spec.seed)
    model = build_model(spec, data.input_shape, data.num_classes,
                        train_inputs=data.x_train).to(device)
    strategy = make_strategy(spec.strategy)
    optimizer = build_optimizer(spec, model.parameters())
    scheduler = build_scheduler(spec, optimizer)
    order = torch.Generator().manual_seed(spec.seed)  # data order; CPU so cpu and cuda agree
    strategy.setup(strategy_context(spec, data, _forward(model), device))

    checkpoint_path = run_dir / results.CHECKPOINT_FILE
    first_epoch = 1
    if checkpoint_path.exists():
        saved = load_checkpoint(checkpoint_path, model, optimizer, scheduler, strategy, order)
        rows.extend(saved["rows"])
        first_epoch = saved["epoch"] + 1
        log.info("resumed after epoch %d", saved["epoch"])
    else:
        rows.append(_evaluate(spec, model, strategy, data, epoch=0, optimizer=optimizer))
        report(log, rows[-1], spec, progress)

    checkpoints = CheckpointWriter(checkpoint_path)
    sizes = epoch_batch_sizes(data.x_train.shape[0], spec.batch_size or data.x_train.shape[0],
                              device)
    try:
        for epoch in range(first_epoch, spec.epochs + 1):
            train_loss, train_acc, seconds = _train_epoch(spec, model, strategy, optimizer, data,
                                                          order, epoch, sizes)
            strategy.end_epoch(epoch)
            step_scheduler(scheduler, train_loss)
            n = data.x_train.shape[0]
            if not math.isfinite(train_loss):
                rows.append(row_without_eval(epoch, train_loss, current_lr(optimizer), seconds, n))
                raise Diverged(f"training loss became {train_loss} in epoch {epoch}")
            evaluated = epoch % spec.eval_every == 0 or epoch == spec.epochs
            if evaluated:
                row = _evaluate(spec, model, strategy, data, epoch=epoch, optimizer=optimizer)
                with_training(row, train_loss, train_acc, seconds, n)
                rows.append(row)
                report(log, row, spec, progress)
                if not math.isfinite(row["test_loss"]):
                    raise Diverged(f"test loss became {row['test_loss']} in epoch {epoch}")
            # one stat per epoch; an epoch between evaluations is checkpointed before stopping
            stopping = epoch < spec.epochs and results.cancel_requested(run_dir)
            if evaluated or stopping:
                checkpoints.save(epoch=epoch, rows=rows, model=model, optimizer=optimizer,
                                 scheduler=scheduler, strategy=strategy, order=order)
            if stopping:
                raise Cancelled(epoch)
    finally:
        checkpoints.close()


def _train_epoch(spec: JobSpec, model: torch.nn.Module, strategy: TargetStrategy,
                 optimizer: torch.optim.Optimizer, data: Dataset, order: torch.Generator,
                 epoch: int, batch_sizes: torch.Tensor) -> tuple[float, float, float]:
    """One pass over the training set in mini-batches; returns (mean loss, accuracy, seconds)."""
    model.train()
    started = time.perf_counter()
    n = data.x_train.shape[0]
    batch_size = spec.batch_size or n
    device = data.x_train.device
    weights_for_l1 = weight_parameters(model) if spec.l1 > 0 else []
    # Speed on small models is per-batch overhead: skip the output activation where nothing
    # needs it (argmax of logits equals argmax of outputs: every output activation is monotone),
    # and give one-hot targets to torch's fused cross-entropy as class indices.
    needs_outputs = (spec.loss != "ce" or strategy.observes or strategy.uses_outputs
                     or strategy.decision == "template")
    class_indices = spec.loss == "ce" and strategy.onehot_targets
    perm = torch.randperm(n, generator=order).to(device)
    x_epoch, y_epoch = data.x_train[perm], data.y_train[perm]  # one gather, then views
    # what the epoch's loss and accuracy are made of, kept as device tensors and reduced once
    # when the epoch ends: per batch two list appends. Argmax decisions wait for the epoch's
    # end; a template decision is taken per batch, as the templates may move within an epoch.
    batch_losses, decided = [], []
    decide_later = strategy.decision == "argmax"
    for start in range(0, n, batch_size):
        xb = x_epoch[start:start + batch_size]
        yb = y_epoch[start:start + batch_size]
        ib = perm[start:start + batch_size]
        logits = model(xb)
        outputs = activate(logits, spec.output) if needs_outputs else logits
        # after the forward pass: some strategies build targets from this batch's outputs
        targets = yb if class_indices else strategy.batch_targets(outputs, yb, ib, epoch)
        loss = batch_loss(spec.loss, logits, outputs, targets, spec.output,
                          strategy.sample_weights(yb, ib, epoch))
        if weights_for_l1:
            loss = loss + spec.l1 * sum(w.abs().sum() for w in weights_for_l1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        outputs = outputs.detach()
        if strategy.observes:
            strategy.observe(outputs, yb, ib, epoch)
        batch_losses.append(loss.detach())
        decided.append(outputs if decide_later else strategy.predict(outputs))
    # Few operations from here: each runs once per epoch, from a cold cache (~10 us each on
    # the CPU, where a digits epoch takes 2.5 ms).
    predicted = torch.cat(decided)
    if decide_later:
        predicted = predicted.argmax(dim=1)
    losses = torch.stack(batch_losses)
    train_loss = float(torch.dot(losses, batch_sizes.to(losses.dtype))) / n  # a sync point
    train_acc = int((predicted == y_epoch).sum()) / n
    return train_loss, train_acc, time.perf_counter() - started


def epoch_batch_sizes(n: int, batch_size: int, device: torch.device) -> torch.Tensor:
    """The sizes of an epoch's batches (the last one may be short): weights of the batch means
    that make the epoch's mean loss over samples."""
    count = -(-n // batch_size)
    sizes = torch.full((count,), float(batch_size), device=device)
    sizes[-1] = n - batch_size * (count - 1)
    return sizes


def _forward(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model as an evaluation forward (inputs -> logits): eval mode, no dropout."""
    def forward(x: torch.Tensor) -> torch.Tensor:
        model.eval()
        return model(x)

    return forward


def _evaluate(spec: JobSpec, model: torch.nn.Module, strategy: TargetStrategy, data: Dataset,
              *, epoch: int, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    residual = getattr(model, "realisation_residual", None)
    return evaluation_row(spec, _forward(model), strategy, data, epoch=epoch,
                          learning_rate=current_lr(optimizer),
                          ts_residual=float(residual()) if callable(residual) else None)
