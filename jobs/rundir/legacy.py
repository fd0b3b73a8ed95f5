"""Output dirs of tvo before results by the stack: one folder per job, runs/<job_id>/, holding
spec.json, status.json, metrics.parquet, checkpoint.pt and log.txt. Read, never written: their
finished jobs count as finished, their rows are aggregated, their logs shown, and a job that
stopped there resumes from its checkpoint (format 4) in the current layout.
"""

from __future__ import annotations

import os
from pathlib import Path

from jobs.rundir.layout import OutputDir
from jobs.rundir.results import read_json
from jobs.rundir.states import FINISHED, STATES, JobRecord, JobState

STATUS_FILE = "status.json"
METRICS_FILE = "metrics.parquet"
CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "log.txt"
INTERRUPTED = "interrupted"  # stopped by Ctrl-C or SIGTERM: resumes from its checkpoint
_KNOWN = {state.value for state in STATES}


def job_folders(grid_dir: Path) -> dict[str, Path]:
    """Job id -> its folder under runs/, for every folder there."""
    runs = OutputDir(grid_dir).legacy_runs
    try:
        return {entry.name: Path(entry.path) for entry in os.scandir(runs) if entry.is_dir()}
    except (FileNotFoundError, NotADirectoryError):
        return {}


def records(grid_dir: Path) -> dict[str, JobRecord]:
    """Each job's record as its status.json says: done or diverged only with its metrics file;
    a job that was running counts as pending and interrupted (no tvo runs jobs in this layout
    any more)."""
    found: dict[str, JobRecord] = {}
    for job_id, folder in job_folders(grid_dir).items():
        status = read_json(folder / STATUS_FILE)
        if status is None:
            continue
        state = str(status.get("state", "pending"))
        interrupted = False
        if state in (INTERRUPTED, "running"):
            state, interrupted = "pending", True
        elif state not in _KNOWN:
            state = "pending"
        job_state = JobState(state)
        if job_state in FINISHED and not (folder / METRICS_FILE).exists():
            job_state, interrupted = JobState.PENDING, True  # ended before its metrics were
        found[job_id] = JobRecord(
            job_id, job_state, status.get("error"), int(status.get("attempts", 0) or 0),
            int(status.get("epochs_done", 0) or 0), status.get("test_acc"), interrupted,
            host=str(status.get("host", "")), pid=int(status.get("pid", 0) or 0),
            log=str(folder / LOG_FILE),
            committed=str(folder / METRICS_FILE) if job_state in FINISHED else "")
    return found


def checkpoint_file(grid_dir: Path, job_id: str) -> Path | None:
    """A job's checkpoint in this layout, if it has one."""
    path = OutputDir(grid_dir).legacy_runs / job_id / CHECKPOINT_FILE
    return path if path.exists() else None


def log_text(grid_dir: Path, job_id: str) -> str:
    try:
        return (OutputDir(grid_dir).legacy_runs / job_id / LOG_FILE).read_text(errors="replace")
    except OSError:
        return ""
