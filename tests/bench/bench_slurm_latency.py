"""SLURM backend latency on the dev cluster, against the same job run in this process.

    python tests/bench/bench_slurm_latency.py [--repeats 3]

Measures, each against a baseline taken in the same run:
- submit-to-result of one tiny job through SlurmBackend (sbatch, start, python + torch import
  in the job, training, result file, noticed by the poll) vs the same job in a fresh python
  process here (the imports the SLURM job pays too), and vs run_unit in this warm process;
- preemption to result: USR2 to a running job (what SLURM sends before preempting it, and
  submitit's job._interrupt() sends), checkpoint, requeue, restart, resume, finish; vs the
  uninterrupted job through SLURM.
Needs `bash cluster/slurm/dev-cluster.sh up`.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cluster.backends import BackendSettings  # noqa: E402
from cluster.base import Resources, WorkUnit  # noqa: E402
from cluster.slurm.backend import SlurmBackend  # noqa: E402
from jobs.entry import StackRequest, run_unit  # noqa: E402
from jobs.rundir.layout import OutputDir  # noqa: E402
from jobs.spec import JobSpec  # noqa: E402
from tests.slurm_entries import slow_entry  # noqa: E402

RESOURCES = Resources(cpus=1, timeout_min=5)
FRESH_PROCESS = """
import sys
from jobs.spec import JobSpec
from jobs.engine.train import run_job
values = {"dataset": "digits", "hidden": [8], "epochs": 2, "seed": int(sys.argv[2])}
spec = JobSpec.from_dict(values)
run_job(spec, sys.argv[1], threads=1)
"""


def unit(root: Path, seed: int, epochs: int = 2) -> WorkUnit:
    spec = JobSpec.from_dict({"dataset": "digits", "hidden": [8], "epochs": epochs,
                              "seed": seed})
    return StackRequest(str(root), (spec,))


def through_slurm(root: Path, work: WorkUnit, entry: object = None,
                  on_checkpoint: str | None = None) -> float:
    backend = SlurmBackend(BackendSettings(grid_dir=root, resources=RESOURCES,
                                           slurm={"result_grace_s": 2}, entry=entry))
    started = time.perf_counter()
    backend.submit([work], RESOURCES)
    if on_checkpoint:
        checkpoint = OutputDir(Path(work.grid_dir)).checkpoint_file(work.key)
        while not checkpoint.exists():
            time.sleep(0.05)
        [pending] = backend._pending.values()
        subprocess.run(["scancel", "--signal", on_checkpoint, pending.placement.slurm_id],
                       check=True)
    [outcome] = list(backend.outcomes())
    assert outcome.results and outcome.results[0].state == "done", outcome
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    repeats = parser.parse_args().repeats
    inline, fresh, slurm, plain, preempted = [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="tvo-bench-slurm-", dir=Path.cwd()) as tmp:
        root = Path(tmp)
        for seed in range(repeats):
            started = time.perf_counter()
            run_unit(unit(root / "inline", seed), threads=1)
            inline.append(time.perf_counter() - started)
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(root / "fresh"), str(seed)],
                           check=True, cwd=Path(__file__).resolve().parents[2])
            fresh.append(time.perf_counter() - started)
            slurm.append(through_slurm(root / "slurm", unit(root / "slurm", seed)))
        slow = functools.partial(slow_entry, seconds_per_epoch=2.0)
        plain.append(through_slurm(root / "plain", unit(root / "plain", 0, 3), slow))
        preempted.append(through_slurm(root / "preempted", unit(root / "preempted", 0, 3), slow,
                                       on_checkpoint="USR2"))
    print(f"one job inline (run_unit):        median {statistics.median(inline):6.2f} s")
    print(f"one job in a fresh process:       median {statistics.median(fresh):6.2f} s")
    print(f"one job through SLURM:            median {statistics.median(slurm):6.2f} s "
          f"({statistics.median(slurm) / statistics.median(fresh):.1f}x a fresh process, "
          f"+{statistics.median(slurm) - statistics.median(fresh):.1f} s)")
    print(f"slow job, uninterrupted (SLURM):  {plain[0]:6.2f} s")
    print(f"slow job, USR2 + requeue + resume: {preempted[0]:6.2f} s "
          f"(+{preempted[0] - plain[0]:.1f} s for the requeue)")


if __name__ == "__main__":
    main()
