"""Where things live in a grid's output dir: every file and folder name, defined once.

    <grid dir>/grid.yaml            the grid as resolved for the latest run into this dir
    <grid dir>/jobs.parquet         one row per job ever run into this dir (the union;
                                    jobs.parquet.broken: one found damaged, set aside)
    <grid dir>/results/<stack>.parquet
                                    written once, when a stack ends: every ended member's epoch
                                    rows, and each member's outcome in the file's metadata
                                    (<stack>.parquet.broken: one found damaged, set aside)
    <grid dir>/state/<writer>.jsonl append-only state events (a stack started, reached an
                                    epoch (`saved`: a checkpoint was written since the last),
                                    a job failed or was cancelled), one file per process
    <grid dir>/logs/<writer>.log    the log of one process (a worker, a SLURM task): lines name
                                    their stack and job; `tvo status DIR --job ID` shows a job's
    <grid dir>/checkpoints/<stack>.ckpt
                                    the last checkpoint of a stack in flight (gone once it ends)
    <grid dir>/claims/              which runner holds which jobs (jobs.rundir.claims)
    <grid dir>/cancel.json          cancel requests (`tvo cancel`), cleared by the next run
    <grid dir>/tensorboard/<job_id>/  TensorBoard events, with --tensorboard
    <grid dir>/summary/             what `tvo aggregate` writes
    <grid dir>/runs/<job_id>/       the per-job layout of tvo before results by the stack: read,
                                    never written
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

GRID_FILE = "grid.yaml"
JOBS_FILE = "jobs.parquet"
RESULTS_DIR = "results"
STATE_DIR = "state"
LOGS_DIR = "logs"
CHECKPOINTS_DIR = "checkpoints"
CLAIMS_DIR = "claims"
CANCEL_FILE = "cancel.json"
TENSORBOARD_DIR = "tensorboard"
SUMMARY_DIR = "summary"
LEGACY_RUNS_DIR = "runs"

RESULTS_SUFFIX = ".parquet"
STATE_SUFFIX = ".jsonl"
LOG_SUFFIX = ".log"
CHECKPOINT_SUFFIX = ".ckpt"


@dataclass(frozen=True)
class OutputDir:
    """The paths of one grid's output dir."""

    path: Path

    @property
    def results(self) -> Path:
        return self.path / RESULTS_DIR

    @property
    def state(self) -> Path:
        return self.path / STATE_DIR

    @property
    def logs(self) -> Path:
        return self.path / LOGS_DIR

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def claims(self) -> Path:
        return self.path / CLAIMS_DIR

    @property
    def cancel_file(self) -> Path:
        return self.path / CANCEL_FILE

    @property
    def jobs_file(self) -> Path:
        return self.path / JOBS_FILE

    @property
    def grid_file(self) -> Path:
        return self.path / GRID_FILE

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY_DIR

    @property
    def legacy_runs(self) -> Path:
        return self.path / LEGACY_RUNS_DIR

    def results_file(self, stack_id: str) -> Path:
        return self.results / f"{stack_id}{RESULTS_SUFFIX}"

    def checkpoint_file(self, stack_id: str) -> Path:
        return self.checkpoints / f"{stack_id}{CHECKPOINT_SUFFIX}"

    def state_file(self, writer: str) -> Path:
        return self.state / f"{writer}{STATE_SUFFIX}"

    def log_file(self, writer: str) -> Path:
        return self.logs / f"{writer}{LOG_SUFFIX}"

    def tensorboard(self, job_id: str) -> Path:
        return self.path / TENSORBOARD_DIR / job_id
