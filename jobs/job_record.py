"""What a training job records in its run dir as it runs: status.json, its log, metric rows.

Shared by `run_job` (one job) and `run_pack` (many jobs trained together), so a job's run dir
looks the same whichever of them trained it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from jobs import results
from jobs.datasets import Dataset
from jobs.metrics import evaluate
from jobs.results import JobResult
from jobs.spec import JobSpec
from jobs.strategies import StrategyContext, TargetStrategy

log = logging.getLogger("tvo.job")

Progress = Callable[[int, int, dict[str, Any]], None]  # (epoch, epochs, metrics row)
Forward = Callable[[torch.Tensor], torch.Tensor]  # inputs -> logits

CLUSTER_ENV = {"slurm_job_id": "SLURM_JOB_ID", "slurm_array_task_id": "SLURM_ARRAY_TASK_ID",
               "ray_node_ip": "RAY_NODE_IP"}


class Diverged(Exception):
    """The loss or a metric became NaN or infinite."""


class Cancelled(Exception):
    """A cancel request (the run dir's cancel file) stopped the job after `epoch`."""

    def __init__(self, epoch: int) -> None:
        super().__init__(f"cancelled after epoch {epoch}")
        self.epoch = epoch


def recorded_result(spec: JobSpec, run_dir: Path) -> JobResult | None:
    """The result of a job that already finished in `run_dir`, or None when it has not."""
    if not results.is_finished(run_dir):
        return None
    status = results.read_status(run_dir)
    return JobResult(spec.job_id, status["state"], str(run_dir), status.get("error"),
                     status.get("epochs_done", 0), status.get("test_acc"))


def begin(spec: JobSpec, run_dir: Path, grid: str) -> dict[str, Any]:
    """Record that the job starts (spec.json, status.json "running"); returns the status."""
    results.remove_partial_writes(run_dir)
    results.write_spec(run_dir, spec, grid)
    previous = results.read_status(run_dir)
    status: dict[str, Any] = {
        "job_id": spec.job_id,
        "state": results.RUNNING,
        "attempts": int(previous.get("attempts", 0)) + 1,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started_at": now(),
        "log": str(run_dir / results.LOG_FILE),
        **{key: os.environ[var] for key, var in CLUSTER_ENV.items() if var in os.environ},
    }
    results.write_status(run_dir, status)
    return status


def cancelled_before_start(spec: JobSpec, run_dir: Path, grid: str) -> JobResult:
    """A job whose cancel request came before it started: recorded as cancelled, not run."""
    results.write_spec(run_dir, spec, grid)
    previous = results.read_status(run_dir)
    status = {**previous, "job_id": spec.job_id, "state": results.CANCELLED, "error": None,
              "finished_at": now(), "log": str(run_dir / results.LOG_FILE)}
    results.write_status(run_dir, status)
    return JobResult(spec.job_id, results.CANCELLED, str(run_dir), None,
                     int(status.get("epochs_done", 0)), status.get("test_acc"))


def finish(spec: JobSpec, run_dir: Path, status: dict[str, Any], rows: list[dict[str, Any]],
           started: float, epochs_done: int | None = None) -> JobResult:
    """Record how the job ended (its state and error are already in `status`).

    `epochs_done` is given for a cancelled job: it stopped after an epoch that may not have
    been evaluated, so its last metrics row does not say how far it got.
    """
    final = rows[-1] if rows else {}
    if epochs_done is None:
        epochs_done = int(final.get("epoch", 0))
    status.update(finished_at=now(), seconds=round(time.perf_counter() - started, 3),
                  epochs_done=epochs_done, test_acc=final.get("test_acc"))
    results.write_status(run_dir, status)
    return JobResult(spec.job_id, status["state"], str(run_dir), status.get("error"),
                     status["epochs_done"], status["test_acc"])


def strategy_context(spec: JobSpec, data: Dataset, forward: Forward,
                     device: torch.device) -> StrategyContext:
    """The context a strategy is set up with; `forward` maps inputs to logits (eval mode)."""
    from jobs.models import activate

    @torch.no_grad()
    def outputs(x: torch.Tensor) -> torch.Tensor:
        return activate(forward(x), spec.output)

    return StrategyContext(
        pairing=spec.pairing(), num_train=data.x_train.shape[0], device=device,
        x_train=data.x_train, y_train=data.y_train, forward=outputs,
        generator=torch.Generator().manual_seed(spec.seed + 7919),  # apart from the data order
    )


def evaluation_row(spec: JobSpec, forward: Forward, strategy: TargetStrategy, data: Dataset, *,
                   epoch: int, learning_rate: float,
                   ts_residual: float | None = None) -> dict[str, Any]:
    """The metrics row of an evaluated epoch; `forward` maps inputs to logits (eval mode)."""
    test = evaluate(forward, data.x_test, data.y_test, strategy, spec.loss, spec.output)
    row: dict[str, Any] = {
        "epoch": epoch, "learning_rate": learning_rate,
        "test_loss": test["loss"], "test_acc": test["acc"], "test_nll": test["nll"],
        "confidence": test["confidence"], "margin": test["margin"], "ece": test["ece"],
        "epoch_seconds": 0.0, "samples_per_second": None,
    }
    if epoch == 0:  # before training there are no batch means: measure the training set once
        train = evaluate(forward, data.x_train, data.y_train, strategy, spec.loss, spec.output)
        row.update(train_loss=train["loss"], train_acc=train["acc"])
    values = strategy.values()
    row.update(target_class=values.target_class, target_nonclass=values.target_nonclass,
               target_matrix=values.target_matrix, ts_residual=ts_residual)
    return row


def with_training(row: dict[str, Any], train_loss: float, train_acc: float, seconds: float,
                  n: int) -> dict[str, Any]:
    """An evaluated row completed with the epoch's training measurements."""
    row.update(train_loss=train_loss, train_acc=train_acc, epoch_seconds=seconds,
               samples_per_second=n / seconds if seconds > 0 else None)
    return row


def row_without_eval(epoch: int, train_loss: float, learning_rate: float, seconds: float,
                     n: int) -> dict[str, Any]:
    return {"epoch": epoch, "learning_rate": learning_rate, "train_loss": train_loss,
            "epoch_seconds": seconds, "samples_per_second": n / seconds if seconds else None}


def report(logger: logging.Logger | logging.LoggerAdapter, row: dict[str, Any], spec: JobSpec,
           progress: Progress | None) -> None:
    logger.info("epoch %d/%d train_loss %.4f train_acc %.4f test_acc %.4f", row["epoch"],
                spec.epochs, row.get("train_loss", float("nan")),
                row.get("train_acc", float("nan")), row["test_acc"])
    if progress is not None:
        progress(row["epoch"], spec.epochs, row)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _JobFiles(logging.Handler):
    """Sends each record logged through `job_logger(run_dir)` to that run dir's log file: one
    handler for all the jobs sharing a process, so a record costs the same however many."""

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, logging.Handler] = {}

    def emit(self, record: logging.LogRecord) -> None:
        handler = self.files.get(getattr(record, "run_dir", ""))
        if handler is not None:
            handler.handle(record)


_job_files = _JobFiles()


def attach_log(run_dir: Path, *, shared: bool = False) -> logging.Handler:
    """Send the job logger's records to run_dir/log.txt. shared=True: several jobs log in this
    process, and only the records logged through `job_logger(run_dir)` go to this file."""
    handler = logging.FileHandler(run_dir / results.LOG_FILE)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    if shared:
        _job_files.files[str(run_dir)] = handler
        if _job_files not in log.handlers:
            log.addHandler(_job_files)
    else:
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def job_logger(run_dir: Path) -> logging.LoggerAdapter:
    """The job logger for the job in `run_dir`, when several jobs share the process."""
    return logging.LoggerAdapter(log, {"run_dir": str(run_dir)})


def detach_log(handler: logging.Handler) -> None:
    if handler in log.handlers:
        log.removeHandler(handler)
    else:
        _job_files.files = {k: h for k, h in _job_files.files.items() if h is not handler}
        if not _job_files.files:
            log.removeHandler(_job_files)
    handler.close()
