"""Headline benchmark: the 1,000-job digits grid through `tvo run` (default settings, embedded
Ray, every file) against a hand-written stacked loop that trains the same 1,000 models, same run.

Run: python tests/bench/bench_headline.py [--seeds 200] [--stack 125]
     (or python -m pytest tests/bench/bench_headline.py: a 100-job version, goal asserted)

The grid (tests/bench/headline.yaml): digits, MLP 64-128-10 relu, softmax + CE, SGD lr 0.1
momentum 0.9, batch 64, 20 epochs; 5 strategies x 200 seeds. The baseline is what a researcher
would write by hand for speed: N MLPs as one stack of [N, in, out] weights (baddbmm), one
fused cross-entropy on one-hot labels, SGD with momentum over the stacked tensors, test
accuracy after every epoch, no files, no strategies; two processes (one per core) with one
thread each, each training half the models in stacks of `--stack`. Goal: tvo <= 1.5x of it.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

HERE = Path(__file__).resolve().parent
GRID = HERE / "headline.yaml"
GOAL = 1.5


def hand_written(models: int, stack: int, epochs: int = 20, batch: int = 64,
                 lr: float = 0.1, momentum: float = 0.9, hidden: int = 128,
                 device: str = "cpu") -> float:
    """Train `models` MLPs in stacks of `stack` in this process, one thread; returns seconds."""
    import torch

    from jobs.data.datasets import load_dataset

    torch.set_num_threads(1)
    data = load_dataset("digits").to(torch.device(device))
    x, y = data.x_train.flatten(1), data.y_train
    x_test, y_test = data.x_test.flatten(1), data.y_test
    n, features = x.shape
    started = time.perf_counter()
    for first in range(0, models, stack):
        size = min(stack, models - first)
        generator = torch.Generator(device).manual_seed(first)
        shapes = [(features, hidden), (hidden,), (hidden, 10), (10,)]
        params = [(torch.randn(size, *shape, generator=generator, device=device) * 0.05)
                  .requires_grad_() for shape in shapes]
        buffers = [torch.zeros_like(p) for p in params]
        for _ in range(epochs):
            if device == "cpu":
                order = torch.stack([torch.randperm(n, generator=generator)
                                     for _ in range(size)])
            else:  # one sort of random keys: a randperm per model is `size` kernel launches
                order = torch.rand(size, n, generator=generator, device=device).argsort(dim=1)
            for start in range(0, n, batch):
                index = order[:, start:start + batch]
                w1, b1, w2, b2 = params
                hidden = torch.relu(torch.baddbmm(b1.unsqueeze(1), x[index], w1))
                logits = torch.baddbmm(b2.unsqueeze(1), hidden, w2)
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 10),
                                                         y[index].reshape(-1))
                grads = torch.autograd.grad(loss * size, params)
                with torch.no_grad():
                    for p, g, buf in zip(params, grads, buffers, strict=True):
                        buf.mul_(momentum).add_(g)
                        p.sub_(lr * buf)
            with torch.no_grad():
                w1, b1, w2, b2 = params
                hidden = torch.relu(torch.baddbmm(b1.unsqueeze(1), x_test.expand(size, -1, -1),
                                                  w1))
                predicted = torch.baddbmm(b2.unsqueeze(1), hidden, w2).argmax(dim=-1)
                (predicted == y_test).float().mean(dim=1).tolist()  # a sync per epoch, as tvo
    return time.perf_counter() - started


def baseline(models: int, stack: int, epochs: int = 20, hidden: int = 128) -> float:
    """The hand-written loop on every core: one process per core, a share of the models each
    (the processes' start and imports included, as tvo's are)."""
    started = time.perf_counter()
    cores = os.cpu_count() or 1
    shares = [models // cores + (1 if core < models % cores else 0) for core in range(cores)]
    with multiprocessing.get_context("spawn").Pool(cores) as pool:
        pool.starmap(hand_written, [(share, stack, epochs, 64, 0.1, 0.9, hidden)
                                    for share in shares])
    return time.perf_counter() - started


def through_tvo(seeds: int, out: Path) -> float:
    """`tvo run` of the grid with default settings, as a user types it (a fresh process)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "runner", "run", str(GRID), f"seed=range({seeds})",
                    "--out", str(out)], check=True, stdout=subprocess.DEVNULL,
                   cwd=HERE.parents[1])
    return time.perf_counter() - started


def measure(seeds: int, stack: int) -> tuple[float, float]:
    models = 5 * seeds
    with tempfile.TemporaryDirectory(prefix="bench_headline_",
                                     dir=os.environ.get("TMPDIR")) as tmp:
        tvo = through_tvo(seeds, Path(tmp))
    hand = baseline(models, stack)
    return tvo, hand


def test_headline_grid_within_goal_of_a_hand_written_stacked_loop() -> None:
    tvo, hand = measure(seeds=20, stack=50)
    print(f"100 jobs: tvo run {tvo:.1f} s, hand-written stacked loop {hand:.1f} s, "
          f"{tvo / hand:.2f}x (goal at 1,000 jobs: <= {GOAL}x)")
    assert tvo / hand <= 2 * GOAL  # 100 jobs carry Ray's start over fewer jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200, help="seeds per strategy (5 each)")
    parser.add_argument("--stack", type=int, default=125, help="models per hand-written stack")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    for round_ in range(args.rounds):
        tvo, hand = measure(args.seeds, args.stack)
        print(f"round {round_ + 1}: {5 * args.seeds} jobs: tvo run {tvo:.1f} s wall (Ray's "
              f"start and every file included), hand-written stacked loop {hand:.1f} s: "
              f"{tvo / hand:.2f}x (goal <= {GOAL}x)", flush=True)


if __name__ == "__main__":
    main()
