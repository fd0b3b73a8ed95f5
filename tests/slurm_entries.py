"""Stand-in unit entries for the SLURM tests; they run inside SLURM jobs, so they live here."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jobs.engine.train import JobResult, run_job
from jobs.entry import JobRequest

SEEN_VARIABLES = ("CUDA_VISIBLE_DEVICES", "SLURM_LOCALID", "SLURM_PROCID", "SLURM_JOB_ID",
                  "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_NTASKS",
                  "SLURM_RESTART_COUNT")


def recording_entry(jobs: Sequence[JobRequest], *, threads: int,
                    record_dir: str) -> list[JobResult]:
    """run_job after writing down what the task saw: its GPUs, ranks and SLURM ids."""
    seen = {name: os.environ.get(name) for name in SEEN_VARIABLES}
    out = []
    for request in jobs:
        Path(record_dir, f"{request.spec.job_id}.json").write_text(json.dumps(seen))
        out.append(run_job(request.spec, request.run_dir, grid=request.grid, threads=threads))
    return out


def slow_entry(jobs: Sequence[JobRequest], *, threads: int,
               seconds_per_epoch: float) -> list[JobResult]:
    """run_job that sleeps after each evaluated epoch but the first and the last, so a test
    can interrupt it between checkpoints; a requeued job (SLURM_RESTART_COUNT set) runs at
    full speed, since nothing waits to interrupt it again."""
    first_attempt = os.environ.get("SLURM_RESTART_COUNT", "0") == "0"

    def progress(epoch: int, epochs: int, row: dict[str, Any]) -> None:
        if first_attempt and 0 < epoch < epochs:
            time.sleep(seconds_per_epoch)

    return [run_job(r.spec, r.run_dir, grid=r.grid, threads=threads, progress=progress,
                    checkpoint_seconds=0)
            for r in jobs]
