"""Runner overhead per job: a 64-job grid on local Ray against the same jobs in a plain loop.

Run: python tests/bench/bench_runner_overhead.py   (or python -m pytest tests/bench/...)

Both sides train the same 64 tiny jobs with one torch thread. The loop calls run_job one job
after another in this process. The runner dispatches them to an embedded Ray with one slot,
so it too runs one job at a time; the difference per job is what the runner adds: claims, the
Ray task round trip, the worker's claim watch, progress. Ray's own start is timed apart, and
so is the first grid on fresh workers (they import torch and load the data once).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cluster.backends import BackendSettings  # noqa: E402
from cluster.base import Resources  # noqa: E402
from jobs.engine.train import run_job  # noqa: E402
from jobs.spec import JobSpec  # noqa: E402

JOBS = 64
GOAL_MS = 50.0


def tiny_specs(salt: int) -> list[JobSpec]:
    """64 distinct tiny jobs; `salt` keeps each measured set apart (no job is skipped as done)."""
    return [JobSpec.from_dict({"dataset": "digits", "hidden": [16], "epochs": 2, "lr": 0.5,
                               "output": "sigmoid", "loss": "mse", "seed": salt * 1000 + i})
            for i in range(JOBS)]


def plain_loop(specs: list[JobSpec], root: Path) -> float:
    started = time.perf_counter()
    for spec in specs:
        assert run_job(spec, root, threads=1).state == "done"
    return time.perf_counter() - started


def through_runner(specs: list[JobSpec], grid_dir: Path) -> float:
    from cluster.ray import RayBackend
    from runner.dispatch.driver import RunOptions, run_grid

    resources = Resources(cpus=1)
    backend = RayBackend(BackendSettings(grid_dir=grid_dir, resources=resources))
    started = time.perf_counter()
    report = run_grid(specs, grid_dir.name, grid_dir, backend, resources,
                      RunOptions(max_parallel=1))
    seconds = time.perf_counter() - started
    assert report.counts.done == JOBS
    return seconds


def measure() -> dict[str, float]:
    import ray

    from cluster.ray import start_ray

    work = Path(tempfile.mkdtemp(prefix="tvo-bench-"))
    temp_dir = Path(tempfile.mkdtemp(prefix="tvo-ray-bench-"))
    try:
        plain_loop(tiny_specs(9), work / "warm")  # this process imports and loads data once
        started = time.perf_counter()
        start_ray(num_cpus=1, temp_dir=temp_dir)
        ray_start = time.perf_counter() - started

        @ray.remote(num_cpus=1)
        def noop() -> None:
            return None

        ray.get(noop.remote())
        started = time.perf_counter()
        for _ in range(200):
            ray.get(noop.remote())
        round_trip_ms = (time.perf_counter() - started) / 200 * 1000

        cold = through_runner(tiny_specs(1), work / "cold")  # fresh worker: imports torch
        loop = plain_loop(tiny_specs(2), work / "loop")
        warm = through_runner(tiny_specs(2), work / "warm-grid")
        loop_again = plain_loop(tiny_specs(3), work / "loop-again")
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(temp_dir, ignore_errors=True)
    baseline = min(loop, loop_again)
    return {
        "ray_start_s": ray_start,
        "task_round_trip_ms": round_trip_ms,
        "loop_ms_per_job": baseline / JOBS * 1000,
        "runner_ms_per_job": warm / JOBS * 1000,
        "overhead_ms_per_job": (warm - baseline) / JOBS * 1000,
        "overhead_ms_per_job_first_grid": (cold - baseline) / JOBS * 1000,
    }


def report(figures: dict[str, float]) -> str:
    return "\n".join([
        f"embedded Ray start           {figures['ray_start_s']:.2f} s",
        f"Ray task round trip          {figures['task_round_trip_ms']:.2f} ms",
        f"plain loop                   {figures['loop_ms_per_job']:.1f} ms/job",
        f"tvo run on Ray (warm)        {figures['runner_ms_per_job']:.1f} ms/job",
        f"runner overhead (warm)       {figures['overhead_ms_per_job']:.1f} ms/job "
        f"(goal <= {GOAL_MS:.0f})",
        f"runner overhead (first grid) {figures['overhead_ms_per_job_first_grid']:.1f} ms/job "
        "(includes the fresh worker importing torch and loading data)",
    ])


def test_runner_overhead_per_job() -> None:
    figures = measure()
    print("\n" + report(figures))
    assert figures["overhead_ms_per_job"] <= GOAL_MS


if __name__ == "__main__":
    print(report(measure()))
