"""run_job: the one entry point every backend calls to train one job into its run dir.

The loop reads top to bottom: load data onto the device, build model, strategy and optimiser,
resume from the checkpoint if there is one, then per epoch: shuffle, train on slices, let the
strategy adapt, step the schedule, evaluate, checkpoint. Failures and divergence are results.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from jobs import results
from jobs.checkpoint import CheckpointWriter, load_checkpoint
from jobs.datasets import Dataset, load_dataset
from jobs.losses import batch_loss
from jobs.metrics import evaluate
from jobs.models import activate, build_model, weight_parameters
from jobs.optim import build_optimizer, build_scheduler, current_lr, step_scheduler
from jobs.spec import JobSpec
from jobs.strategies import StrategyContext, TargetStrategy, make_strategy
from jobs.tensorboard import TensorBoardLog

log = logging.getLogger("tvo.job")

Progress = Callable[[int, int, dict[str, Any]], None]  # (epoch, epochs, metrics row)


@dataclass(frozen=True)
class JobResult:
    """What a backend hands back; the run dir holds everything else."""

    job_id: str
    state: str  # done | failed | diverged | cancelled
    run_dir: str
    error: str | None = None
    epochs_done: int = 0
    test_acc: float | None = None


class Diverged(Exception):
    """The loss or a metric became NaN or infinite."""


class Cancelled(Exception):
    """A cancel request (the run dir's cancel file) stopped the job after `epoch`."""

    def __init__(self, epoch: int) -> None:
        super().__init__(f"cancelled after epoch {epoch}")
        self.epoch = epoch


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
    if results.is_finished(run_dir):
        status = results.read_status(run_dir)
        return JobResult(spec.job_id, status["state"], str(run_dir), status.get("error"),
                         status.get("epochs_done", 0), status.get("test_acc"))
    results.remove_partial_writes(run_dir)
    results.write_spec(run_dir, spec, grid)
    previous = results.read_status(run_dir)
    if results.cancel_requested(run_dir):
        return _cancelled_before_start(spec, run_dir, previous)
    status: dict[str, Any] = {
        "job_id": spec.job_id,
        "state": results.RUNNING,
        "attempts": int(previous.get("attempts", 0)) + 1,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started_at": _now(),
        "log": str(run_dir / results.LOG_FILE),
        **{key: os.environ[var] for key, var in _CLUSTER_ENV.items() if var in os.environ},
    }
    results.write_status(run_dir, status)
    handler = _attach_log(run_dir)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    stopped_after: int | None = None  # the epoch a cancel request stopped the job after
    board = TensorBoardLog(run_dir, spec, grid, swept_keys) if tensorboard else None

    def report(epoch: int, epochs: int, row: dict[str, Any]) -> None:
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
            _train(spec, run_dir, device, rows, report)
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
        final = rows[-1] if rows else {}
        epochs_done = stopped_after if stopped_after is not None else int(final.get("epoch", 0))
        status.update(finished_at=_now(), seconds=round(time.perf_counter() - started, 3),
                      epochs_done=epochs_done, test_acc=final.get("test_acc"))
        results.write_status(run_dir, status)
        if board is not None:
            board.close()
        _detach_log(handler)
    return JobResult(spec.job_id, status["state"], str(run_dir), status.get("error"),
                     status["epochs_done"], status["test_acc"])


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
    strategy.setup(_strategy_context(spec, data, model, device))

    checkpoint_path = run_dir / results.CHECKPOINT_FILE
    first_epoch = 1
    if checkpoint_path.exists():
        saved = load_checkpoint(checkpoint_path, model, optimizer, scheduler, strategy, order)
        rows.extend(saved["rows"])
        first_epoch = saved["epoch"] + 1
        log.info("resumed after epoch %d", saved["epoch"])
    else:
        rows.append(_evaluate(spec, model, strategy, data, epoch=0, optimizer=optimizer))
        _report(rows[-1], spec, progress)

    checkpoints = CheckpointWriter(checkpoint_path)
    try:
        for epoch in range(first_epoch, spec.epochs + 1):
            train_loss, train_acc, seconds = _train_epoch(spec, model, strategy, optimizer, data,
                                                          order, epoch)
            strategy.end_epoch(epoch)
            step_scheduler(scheduler, train_loss)
            n = data.x_train.shape[0]
            if not math.isfinite(train_loss):
                rows.append(_row_without_eval(epoch, train_loss, optimizer, seconds, n))
                raise Diverged(f"training loss became {train_loss} in epoch {epoch}")
            evaluated = epoch % spec.eval_every == 0 or epoch == spec.epochs
            if evaluated:
                row = _evaluate(spec, model, strategy, data, epoch=epoch, optimizer=optimizer)
                row.update(train_loss=train_loss, train_acc=train_acc, epoch_seconds=seconds,
                           samples_per_second=n / seconds if seconds > 0 else None)
                rows.append(row)
                _report(row, spec, progress)
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
                 epoch: int) -> tuple[float, float, float]:
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
    batch_losses, predictions = [], []  # device tensors: no sync until the epoch ends
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
        batch_losses.append(loss.detach() * yb.shape[0])
        predictions.append(strategy.predict(outputs))
    # the epoch's one sync point
    train_loss = float(torch.stack(batch_losses).sum()) / n
    train_acc = int((torch.cat(predictions) == y_epoch).sum()) / n
    return train_loss, train_acc, time.perf_counter() - started


def _strategy_context(spec: JobSpec, data: Dataset, model: torch.nn.Module,
                      device: torch.device) -> StrategyContext:
    @torch.no_grad()
    def forward(x: torch.Tensor) -> torch.Tensor:
        model.eval()
        return activate(model(x), spec.output)

    return StrategyContext(
        pairing=spec.pairing(), num_train=data.x_train.shape[0], device=device,
        x_train=data.x_train, y_train=data.y_train, forward=forward,
        generator=torch.Generator().manual_seed(spec.seed + 7919),  # apart from the data order
    )


def _evaluate(spec: JobSpec, model: torch.nn.Module, strategy: TargetStrategy, data: Dataset,
              *, epoch: int, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    model.eval()
    test = evaluate(model, data.x_test, data.y_test, strategy, spec.loss, spec.output)
    row: dict[str, Any] = {
        "epoch": epoch, "learning_rate": current_lr(optimizer),
        "test_loss": test["loss"], "test_acc": test["acc"], "test_nll": test["nll"],
        "confidence": test["confidence"], "margin": test["margin"], "ece": test["ece"],
        "epoch_seconds": 0.0, "samples_per_second": None,
    }
    if epoch == 0:  # before training there are no batch means: measure the training set once
        train = evaluate(model, data.x_train, data.y_train, strategy, spec.loss, spec.output)
        row.update(train_loss=train["loss"], train_acc=train["acc"])
    values = strategy.values()
    row.update(target_class=values.target_class, target_nonclass=values.target_nonclass,
               target_matrix=values.target_matrix)
    residual = getattr(model, "realisation_residual", None)
    row["ts_residual"] = float(residual()) if callable(residual) else None
    return row


def _cancelled_before_start(spec: JobSpec, run_dir: Path,
                            previous: dict[str, Any]) -> JobResult:
    """A job whose cancel request came before it started: recorded as cancelled, not run."""
    status = {**previous, "job_id": spec.job_id, "state": results.CANCELLED, "error": None,
              "finished_at": _now(), "log": str(run_dir / results.LOG_FILE)}
    results.write_status(run_dir, status)
    return JobResult(spec.job_id, results.CANCELLED, str(run_dir), None,
                     int(status.get("epochs_done", 0)), status.get("test_acc"))


def _row_without_eval(epoch: int, train_loss: float, optimizer: torch.optim.Optimizer,
                      seconds: float, n: int) -> dict[str, Any]:
    return {"epoch": epoch, "learning_rate": current_lr(optimizer), "train_loss": train_loss,
            "epoch_seconds": seconds, "samples_per_second": n / seconds if seconds else None}


def _report(row: dict[str, Any], spec: JobSpec, progress: Progress | None) -> None:
    log.info("epoch %d/%d train_loss %.4f train_acc %.4f test_acc %.4f", row["epoch"],
             spec.epochs, row.get("train_loss", float("nan")), row.get("train_acc", float("nan")),
             row["test_acc"])
    if progress is not None:
        progress(row["epoch"], spec.epochs, row)


_CLUSTER_ENV = {"slurm_job_id": "SLURM_JOB_ID", "slurm_array_task_id": "SLURM_ARRAY_TASK_ID",
                "ray_node_ip": "RAY_NODE_IP"}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _attach_log(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / results.LOG_FILE)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def _detach_log(handler: logging.Handler) -> None:
    log.removeHandler(handler)
    handler.close()
