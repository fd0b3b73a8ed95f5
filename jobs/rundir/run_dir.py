"""RunDir: the one owner of a job's run dir while it trains: status.json, log.txt, checkpoint.pt
and metrics.parquet, and every transition of the job's state (start, end, hand back).

Nothing else writes these files for a training job; the engine asks its RunDir.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jobs.rundir import results
from jobs.rundir.checkpoint import CheckpointWriter, read_checkpoint
from jobs.rundir.results import JobResult
from jobs.spec import JobSpec

log = logging.getLogger("tvo.job")

CLUSTER_ENV = {"slurm_job_id": "SLURM_JOB_ID", "slurm_array_task_id": "SLURM_ARRAY_TASK_ID",
               "ray_node_ip": "RAY_NODE_IP"}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunDir:
    """One job's run dir and the attempt that trains in it."""

    def __init__(self, spec: JobSpec, path: str | os.PathLike[str], grid: str = "") -> None:
        self.spec = spec
        self.path = Path(path)
        self.grid = grid
        self.status: dict[str, Any] = {}
        self.previous_status: dict[str, Any] | None = None
        self.started = 0.0
        self.log: logging.LoggerAdapter = logging.LoggerAdapter(log, {"run_dir": str(self.path)})
        self._handler: logging.Handler | None = None
        self._checkpoints: CheckpointWriter | None = None

    # -- before the job trains ------------------------------------------------------------------
    def recorded(self) -> JobResult | None:
        """The result of a job that already finished here, or None when it has not."""
        if not results.is_finished(self.path):
            return None
        status = results.read_status(self.path)
        return JobResult(self.spec.job_id, status["state"], str(self.path), status.get("error"),
                         status.get("epochs_done", 0), status.get("test_acc"))

    def cancel_requested(self) -> bool:
        return results.cancel_requested(self.path)

    def cancelled_before_start(self) -> JobResult:
        """A job whose cancel request came before it started: recorded as cancelled, not run."""
        self.path.mkdir(parents=True, exist_ok=True)
        results.write_spec(self.path, self.spec, self.grid)
        previous = results.read_status(self.path)
        status = {**previous, "job_id": self.spec.job_id, "state": results.CANCELLED,
                  "error": None, "finished_at": now(), "log": str(self.path / results.LOG_FILE)}
        results.write_status(self.path, status)
        return JobResult(self.spec.job_id, results.CANCELLED, str(self.path), None,
                         int(status.get("epochs_done", 0)), status.get("test_acc"))

    def begin(self, device: str, pack_size: int) -> None:
        """Record that the job starts (spec.json, status.json "running") and open its log."""
        self.path.mkdir(parents=True, exist_ok=True)
        results.remove_partial_writes(self.path)
        exists = (self.path / results.STATUS_FILE).exists()
        self.previous_status = results.read_status(self.path) if exists else None
        results.write_spec(self.path, self.spec, self.grid)
        self.status = {
            "job_id": self.spec.job_id,
            "state": results.RUNNING,
            "attempts": int((self.previous_status or {}).get("attempts", 0)) + 1,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": now(),
            "log": str(self.path / results.LOG_FILE),
            "device": device,
            "pack_size": pack_size,
            **{key: os.environ[var] for key, var in CLUSTER_ENV.items() if var in os.environ},
        }
        results.write_status(self.path, self.status)
        self.started = time.perf_counter()
        self._handler = _attach(self.path)
        self.log.info("job %s attempt %d on %s (%s)%s", self.spec.job_id,
                      self.status["attempts"], self.status["host"], device,
                      f", in a stack of {pack_size} jobs" if pack_size > 1 else "")

    # -- while it trains ------------------------------------------------------------------------
    def saved_state(self) -> dict[str, Any] | None:
        """The newest checkpoint's state, or None when there is none."""
        path = self.path / results.CHECKPOINT_FILE
        return read_checkpoint(path) if path.exists() else None

    def checkpoint(self, state: dict[str, Any]) -> None:
        if self._checkpoints is None:
            self._checkpoints = CheckpointWriter(self.path / results.CHECKPOINT_FILE)
        self._checkpoints.save(state)

    # -- how it ends ----------------------------------------------------------------------------
    def end(self, state: str, rows: list[dict[str, Any]], error: str | None = None, *,
            trace: str | None = None, epochs_done: int | None = None) -> JobResult:
        """Record how the job ended: metrics.parquet (unless it failed or was cancelled), then
        status.json. `epochs_done` for a cancelled job: it stopped after an epoch that may not
        have been evaluated, so its last row does not say how far it got."""
        if state == results.DIVERGED:
            self.log.warning("diverged: %s", error)
        elif state == results.FAILED:
            self.log.error("failed: %s\n%s", error, trace or "")
        elif state == results.CANCELLED:
            self.log.info("cancelled after epoch %s (cancel request: %s)", epochs_done,
                          self.path / results.CANCEL_FILE)
        try:
            self._close_checkpoints()
            if state not in (results.FAILED, results.CANCELLED):
                results.write_metrics(self.path, self.spec, self.grid, rows)
            self.status.update(state=state, error=error)
            if trace is not None:
                self.status["traceback"] = trace
        except Exception as exc:  # a failed write is the job's failure
            self.status.update(state=results.FAILED, error=f"{type(exc).__name__}: {exc}",
                               traceback=traceback.format_exc())
        final = rows[-1] if rows else {}
        self.status.update(finished_at=now(), seconds=round(time.perf_counter() - self.started, 3),
                           epochs_done=int(final.get("epoch", 0)) if epochs_done is None
                           else epochs_done, test_acc=final.get("test_acc"))
        try:
            results.write_status(self.path, self.status)
        finally:
            self._detach()
        return JobResult(self.spec.job_id, self.status["state"], str(self.path),
                         self.status.get("error"), self.status["epochs_done"],
                         self.status["test_acc"])

    def hand_back(self) -> None:
        """Undo this attempt's status, so that the job can start again as a fresh attempt (a
        stack that broke hands its members back to train alone)."""
        self._close_checkpoints()
        if self.previous_status is None:
            (self.path / results.STATUS_FILE).unlink(missing_ok=True)
        else:
            results.write_status(self.path, self.previous_status)
        self._detach()

    def release(self, signalled: bool) -> None:
        """An attempt stopped from outside: by Ctrl-C or SIGTERM (`signalled`) the status says
        "interrupted"; else (the process is going away) it stays "running" with this process's
        pid, which readers see is gone. Either way the checkpoint stays for the resume."""
        self._close_checkpoints()
        try:
            if signalled and self.status:
                self.log.info("interrupted; the next run resumes from the last checkpoint")
                self.status.update(state=results.INTERRUPTED, interrupted_at=now())
                results.write_status(self.path, self.status)
        finally:
            self._detach()

    def _close_checkpoints(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.close()
            self._checkpoints = None

    def _detach(self) -> None:
        if self._handler is not None:
            _detach(self._handler, self.path)
            self._handler = None


class _JobFiles(logging.Handler):
    """Sends each record logged through a RunDir's `log` to that run dir's log file: one handler
    for all the jobs sharing a process, so a record costs the same however many."""

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, logging.Handler] = {}

    def emit(self, record: logging.LogRecord) -> None:
        handler = self.files.get(getattr(record, "run_dir", ""))
        if handler is not None:
            handler.handle(record)


_job_files = _JobFiles()


def _attach(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / results.LOG_FILE)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    _job_files.files[str(run_dir)] = handler
    if _job_files not in log.handlers:
        log.addHandler(_job_files)
    log.setLevel(logging.INFO)
    return handler


def _detach(handler: logging.Handler, run_dir: Path) -> None:
    if _job_files.files.get(str(run_dir)) is handler:
        del _job_files.files[str(run_dir)]
    if not _job_files.files and _job_files in log.handlers:
        log.removeHandler(_job_files)
    handler.close()
