"""Helpers for tests against a real SLURM (conftest's `slurm_cluster` fixture provides one)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SCRIPT = Path(__file__).resolve().parents[1] / "cluster" / "slurm" / "dev-cluster.sh"


def run(*command: str, timeout: float = 60, env: Mapping[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=timeout,
                          check=False, env=None if env is None else {**os.environ, **env})


@dataclass(frozen=True)
class Shape:
    """What the dev cluster was started with, as far as these tests change it."""

    gpus: int
    cpus: int
    max_array_size: int


def current_shape() -> Shape:
    gres = run("sinfo", "-h", "-o", "%G").stdout
    gpus = re.search(r"gpu:(?:[^:,\s]+:)?(\d+)", gres)
    cpus = run("sinfo", "-h", "-o", "%c").stdout.split()
    config = run("scontrol", "show", "config").stdout
    array = re.search(r"^MaxArraySize\s*=\s*(\d+)", config, re.MULTILINE)
    return Shape(int(gpus.group(1)) if gpus else 0, int(cpus[0]) if cpus else 0,
                 int(array.group(1)) if array else 1001)


def restart(shape: Shape) -> None:
    """down, then up with this shape (state is kept: job ids go on counting)."""
    down = run("bash", str(SCRIPT), "down", timeout=120)
    assert down.returncode == 0, down.stderr
    options = ["--gpus", str(shape.gpus)] + (["--cpus", str(shape.cpus)] if shape.cpus else [])
    up = run("bash", str(SCRIPT), "up", *options, timeout=300,
             env={"TVO_SLURM_MAX_ARRAY_SIZE": str(shape.max_array_size)})
    assert up.returncode == 0, up.stderr
    assert current_shape().gpus == shape.gpus


@contextmanager
def cluster_shaped(gpus: int, max_array_size: int) -> Iterator[Shape]:
    """Restart the cluster with fake GPUs and a MaxArraySize, and put it back afterwards."""
    before = current_shape()
    wanted = Shape(gpus, before.cpus, max_array_size)
    if wanted != before:
        restart(wanted)
    try:
        yield wanted
    finally:
        if current_shape() != before:
            restart(before)


def sacct_states(job_ids: list[str], timeout: float = 20) -> dict[str, str]:
    """sacct's final state of each job; polls, since the record reaches slurmdbd a bit late."""
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        out = run("sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(
            sorted({job_id.split("_")[0] for job_id in job_ids}))).stdout
        states = dict(line.split("|", 1) for line in out.splitlines() if "|" in line)
        if all(states.get(job_id, "") not in ("", "PENDING", "RUNNING", "COMPLETING")
               for job_id in job_ids):
            return {job_id: states[job_id] for job_id in job_ids}
        time.sleep(0.3)
    return {job_id: states.get(job_id, "") for job_id in job_ids}


# Finds a job that ended without a result within about a second, where the defaults (state_poll_s
# 2, result_grace_s 2) take 2-4 s: the dev cluster's disk is local and its squeue answers at once.
QUICK_DEATH = {"result_grace_s": 1, "state_poll_s": 0.5}


def write_grid(path: Path, name: str, *, seeds: int = 2, epochs: int = 1,
               resources: dict[str, Any] | None = None, slurm: dict[str, Any] | None = None,
               **base: Any) -> Path:
    """A grid of tiny digits jobs (one per seed) that train in well under a second."""
    content = {
        "name": name,
        "base": {"dataset": "digits", "hidden": [8], "epochs": epochs, "output": "sigmoid",
                 "loss": "mse", "lr": 0.5, **base},
        "grid": {"seed": list(range(seeds))},
        "resources": {"cpus": 1, "timeout_min": 5, **(resources or {})},
        "slurm": {**QUICK_DEATH, **(slurm or {})},
    }
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path
