"""Benchmark: a 64-job grid trained packed (jobs.pack.run_pack) against one job after another
(run_job), end to end (run dirs, evaluation every epoch, checkpoints), in one run.

Run: python tests/bench/bench_pack.py [--hidden 16,128] [--threads 1] [--repeats 2]
     [--pack-sizes 16,64] [--seeds 16] [--epochs 20]

The grid: digits, mlp with one hidden layer (16 units: the tiny models packing is for; 128: the
JobSpec default, where one 2-core CPU is already busy computing), ce/softmax, sgd lr 0.1 batch
64, 16 seeds x 4 static strategies (onehot and three fixed(c, nc, normalize=true)
label-smoothing-like targets). Every variant runs in the
same process with the same thread count, and ratios are taken within one repeat (the order of
the variants alternates between repeats). Two clocks: wall time, and the process's CPU time
(all its threads), which other users of a shared machine disturb much less than the wall clock.
Goal: packed >= 3x faster than unpacked. Also checks that packed and unpacked final test
accuracies agree.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from jobs.pack import plan_packs, run_pack  # noqa: E402

from jobs.entry import JobRequest  # noqa: E402
from jobs.spec import JobSpec  # noqa: E402
from jobs.train import run_job  # noqa: E402

STRATEGIES = ("onehot", "fixed(c=0.9, nc=0.1, normalize=true)",
              "fixed(c=0.8, nc=0.2, normalize=true)", "fixed(c=0.95, nc=0.05, normalize=true)")


def grid(hidden: int, seeds: int, epochs: int) -> list[JobSpec]:
    return [JobSpec.from_dict({"dataset": "digits", "hidden": [hidden], "epochs": epochs,
                               "device": "cpu", "seed": seed, "strategy": strategy})
            for seed in range(seeds) for strategy in STRATEGIES]


Clocks = tuple[float, float]  # (wall seconds, CPU seconds)


def unpacked(specs: list[JobSpec], out: Path) -> Clocks:
    wall, cpu = time.perf_counter(), time.process_time()
    for spec in specs:
        assert run_job(spec, out / spec.job_id).state == "done"
    return time.perf_counter() - wall, time.process_time() - cpu


def packed(specs: list[JobSpec], out: Path, size: int) -> Clocks:
    wall, cpu = time.perf_counter(), time.process_time()
    for pack in plan_packs(specs, size):
        requests = [JobRequest(spec, str(out / spec.job_id)) for spec in pack]
        assert all(result.state == "done" for result in run_pack(requests))
    return time.perf_counter() - wall, time.process_time() - cpu


def final_accuracies(specs: list[JobSpec], out: Path) -> list[float]:
    return [pq.read_table(out / s.job_id / "metrics.parquet").column("test_acc")[-1].as_py()
            for s in specs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", default="16,128", help="hidden widths, one grid each")
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--pack-sizes", default="16,64")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [int(size) for size in args.pack_sizes.split(",")]
    for hidden in (int(width) for width in args.hidden.split(",")):
        bench(grid(hidden, args.seeds, args.epochs), sizes, args.repeats)


def bench(specs: list[JobSpec], sizes: list[int], repeats: int) -> None:
    spec = specs[0]
    print(f"{len(specs)} jobs: digits mlp {list(spec.hidden)}, {spec.epochs} epochs, "
          f"{torch.get_num_threads()} thread(s), pack sizes {sizes}")
    with tempfile.TemporaryDirectory(prefix="bench_pack_") as tmp:
        root = Path(tmp)
        warm = [s.replace(epochs=1) for s in specs[:2]]  # imports, data, first-call costs
        unpacked(warm, root / "warm_unpacked")
        packed(warm, root / "warm_packed", 2)
        variants = ["unpacked", *sizes]
        ratios: dict[int, list[Clocks]] = {size: [] for size in sizes}
        for repeat in range(repeats):
            clocks: dict[str | int, Clocks] = {}
            accuracies = {}
            for variant in variants if repeat % 2 == 0 else variants[::-1]:
                out = root / str(variant)
                clocks[variant] = unpacked(specs, out) if variant == "unpacked" \
                    else packed(specs, out, int(variant))
                accuracies[variant] = final_accuracies(specs, out)
                shutil.rmtree(out)
            wall, cpu = clocks["unpacked"]
            line = f"repeat {repeat + 1}: unpacked {wall:6.2f} s wall {cpu:6.2f} s cpu"
            for size in sizes:
                gap = max(abs(a - b) for a, b in
                          zip(accuracies[size], accuracies["unpacked"], strict=True))
                ratio = (wall / clocks[size][0], cpu / clocks[size][1])
                ratios[size].append(ratio)
                line += (f" | packs of {size}: {clocks[size][0]:5.2f} s wall {clocks[size][1]:5.2f}"
                         f" s cpu = {ratio[0]:4.2f}x wall {ratio[1]:4.2f}x cpu"
                         f" (final test_acc gap {gap:.4f})")
            print(line, flush=True)
    for size, values in ratios.items():
        walls, cpus = [v[0] for v in values], [v[1] for v in values]
        print(f"packs of {size}: speed-up {min(walls):.2f}-{max(walls):.2f}x wall, "
              f"{min(cpus):.2f}-{max(cpus):.2f}x cpu (goal >= 3x)")


if __name__ == "__main__":
    main()
