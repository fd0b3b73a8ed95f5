"""Stand-in unit entries for the SLURM tests; they run inside SLURM jobs, so they live here."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from jobs.engine.train import JobResult, run_stack
from jobs.entry import StackRequest

SEEN_VARIABLES = ("CUDA_VISIBLE_DEVICES", "SLURM_LOCALID", "SLURM_PROCID", "SLURM_JOB_ID",
                  "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_NTASKS",
                  "SLURM_RESTART_COUNT")


def recording_entry(request: StackRequest, *, threads: int,
                    record_dir: str) -> list[JobResult]:
    """run_stack after writing down what the task saw: its GPUs, ranks and SLURM ids."""
    seen = {name: os.environ.get(name) for name in SEEN_VARIABLES}
    for spec in request.specs:
        Path(record_dir, f"{spec.job_id}.json").write_text(json.dumps(seen))
    return run_stack(request, threads=threads)


def slow_entry(request: StackRequest, *, threads: int,
               seconds_per_epoch: float) -> list[JobResult]:
    """run_stack that sleeps after each evaluated epoch but the first and the last, so a test
    can interrupt it between checkpoints (one after every epoch); a requeued job
    (SLURM_RESTART_COUNT set) runs at full speed, since nothing waits to interrupt it again."""
    first_attempt = os.environ.get("SLURM_RESTART_COUNT", "0") == "0"
    seen: set[int] = set()

    def progress(job_id: str, epoch: int, epochs: int, row: dict[str, Any]) -> None:
        if first_attempt and 0 < epoch < epochs and epoch not in seen:
            seen.add(epoch)  # once per epoch of the stack
            time.sleep(seconds_per_epoch)

    every_epoch = dataclasses.replace(request, settings=dataclasses.replace(
        request.settings, checkpoint_seconds=0))
    return run_stack(every_epoch, threads=threads, progress=progress)


def raising_entry(request: StackRequest, *, threads: int) -> list[JobResult]:
    """A unit whose task raises before training: submitit pickles the traceback as its result."""
    raise RuntimeError(f"the unit of {request.specs[0].job_id} broke before training")
