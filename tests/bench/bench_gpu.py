"""GPU benchmark: jobs per hour of the headline grid's job on one GPU, packed and alone, against a
hand-written stack of the same models on the GPU; then the 10,000-job headline grid through
`tvo run --backend inline device=cuda` with default packing. Skips (exit 0, one line) where
torch sees no CUDA device.

Run: python tests/bench/bench_gpu.py [--sizes 1,64,1000] [--epochs 20] [--jobs 1000]
                                     [--grid-seeds 2000]
     (or python -m pytest tests/bench/bench_gpu.py, which skips without CUDA)

Each size trains `--jobs` jobs of the headline grid (digits MLP 64-128-10, 5 strategies,
softmax + CE, SGD momentum, batch 64) with device=cuda, in stacks of that size, one stack
after another in this process (data on the device, every file written), and reports jobs per
hour. Size 1 is every job alone. The jobs of one size are distinct from the others' (seeds).
Goals: a stack of 1,000 within 2x of the hand-written stack of 1,000 in the same run; the
10,000-job grid (--grid-seeds 2000) through `tvo run` in at most 15 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from jobs.engine.packing import plan_packs  # noqa: E402
from jobs.engine.train import run_stack  # noqa: E402
from jobs.request import StackRequest  # noqa: E402
from jobs.spec import JobSpec  # noqa: E402
from tests.bench.bench_headline import GRID, hand_written  # noqa: E402

GOALS = {"stack_vs_hand": 2.0, "grid_seconds": 15.0}

STRATEGIES = ("onehot", "label_smoothing(eps=0.1)", "ols(alpha=0.5)",
              "tvo(init=average_nudge, adapt=sigma, normalize=true)", "bootstrap_soft(beta=0.95)")


def headline_jobs(count: int, epochs: int, salt: int) -> list[JobSpec]:
    base = {"dataset": "digits", "hidden": [128], "activation": "relu", "output": "softmax",
            "loss": "ce", "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "batch_size": 64,
            "epochs": epochs, "device": "cuda"}
    return [JobSpec.from_dict({**base, "strategy": STRATEGIES[i % 5],
                               "seed": salt * 100_000 + i // 5}) for i in range(count)]


def jobs_per_hour(size: int, count: int, epochs: int, root: Path, salt: int) -> float:
    specs = headline_jobs(count, epochs, salt)
    torch.cuda.synchronize()
    started = time.perf_counter()
    for pack in plan_packs(specs, size):
        ends = run_stack(StackRequest(str(root), tuple(pack)))
        assert all(end.state == "done" for end in ends), [end.error for end in ends]
    torch.cuda.synchronize()
    return count / (time.perf_counter() - started) * 3600


def measure(sizes: list[int], count: int, epochs: int) -> dict[int, float]:
    rates = {}
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        root = Path(tmp)
        jobs_per_hour(4, 4, 1, root / "warm", salt=0)  # CUDA context, kernels, data on device
        for index, size in enumerate(sizes, start=1):
            jobs = min(count, 64) if size == 1 else count  # alone: a sample is enough
            rates[size] = jobs_per_hour(size, jobs, epochs, root / str(size), salt=index)
            print(f"  stacks of {size:>5}: {rates[size]:>12,.0f} jobs/hour ({jobs} jobs)",
                  flush=True)
    return rates


def hand_written_on_gpu(models: int, epochs: int) -> float:
    """The hand-written stack (bench_headline.hand_written) of `models` on the GPU, one stack:
    seconds, the data loading excluded as tvo's shared data is."""
    hand_written(4, 4, epochs=1, device="cuda")  # warm: context, kernels
    return hand_written(models, models, epochs=epochs, device="cuda")


def grid_through_tvo(seeds: int) -> float:
    """The headline grid with `seeds` seeds per strategy through `tvo run` as a user types it."""
    import os
    import subprocess

    with tempfile.TemporaryDirectory(prefix="bench_gpu_grid_") as tmp:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "runner", "run", str(GRID), f"seed=range({seeds})",
                        "device=cuda", "--backend", "inline", "--out", tmp], check=True,
                       stdout=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[2],
                       env={**os.environ, "TVO_MAX_JOBS": str(max(10_000, 5 * seeds))})
        return time.perf_counter() - started


def test_gpu_jobs_per_hour() -> None:
    import pytest

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: the GPU benchmark needs one")
    rates = measure([1, 64], 128, 5)
    assert rates[64] > rates[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,64,1000")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--grid-seeds", type=int, default=2000,
                        help="seeds per strategy of the grid run through tvo (0: skip it)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("skipped: torch sees no CUDA device")
        return
    print(f"{torch.cuda.get_device_name()}: headline job, {args.epochs} epochs")
    sizes = [int(size) for size in args.sizes.split(",")]
    rates = measure(sizes, args.jobs, args.epochs)
    best = max(rates, key=lambda size: rates[size])
    print(f"best: stacks of {best}, {rates[best]:,.0f} jobs/hour; alone {rates[1]:,.0f} "
          f"jobs/hour ({rates[best] / rates[1]:.0f}x)" if 1 in rates else "")
    largest = max(sizes)
    hand = hand_written_on_gpu(largest, args.epochs)
    ours = largest / rates[largest] * 3600
    print(f"a stack of {largest}: tvo {ours:.2f} s, hand-written {hand:.2f} s: "
          f"{ours / hand:.1f}x (goal <= {GOALS['stack_vs_hand']}x)", flush=True)
    if args.grid_seeds:
        seconds = grid_through_tvo(args.grid_seeds)
        print(f"{5 * args.grid_seeds:,} headline jobs through `tvo run --backend inline "
              f"device=cuda`: {seconds:.1f} s (goal <= {GOALS['grid_seconds']:.0f} s at 10,000)")


if __name__ == "__main__":
    main()
