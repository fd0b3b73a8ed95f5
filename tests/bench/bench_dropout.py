"""Benchmark: dropout masks for a whole stack at once (jobs.engine.dropout) against one mask per
member from its own torch.Generator (tvo's way before), in one run.

Run: python tests/bench/bench_dropout.py [--rounds 5] [--device cpu|cuda]

- One draw of a [64, 128] mask (a hidden layer of the headline job) for stacks of 1, 16, 64 and
  256 members: the stacked draw has no Python loop over members, so its time grows with the
  elements drawn, not with a per-member call; the goal is that N = 256 costs a small factor of
  N = 1 per draw on a GPU (on the CPU, where the elements dominate, it grows with them).
- One training epoch of a stack of 64 headline jobs (digits MLP 64-128-10, SGD momentum, batch
  64) without dropout, with dropout 0.1 drawn the stacked way, and with dropout 0.1 drawn member
  by member (the issue measured 279 ms -> 430 ms an epoch for the latter).
Medians over rounds, CPU seconds on the CPU (a shared machine), wall on a GPU (synchronised).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from jobs.engine.dropout import MemberDropout  # noqa: E402
from jobs.engine.stack import Stack  # noqa: E402
from jobs.engine.train import shared_dataset  # noqa: E402
from jobs.spec import JobSpec  # noqa: E402
from tests.engine_members import fresh_members  # noqa: E402

SIZES = (1, 16, 64, 256)
MASK = (64, 128)


class DropoutPerMember(MemberDropout):
    """tvo's masks before: one Bernoulli draw per member from its own generator on the CPU,
    stacked and copied to the device."""

    def __init__(self, probabilities: Sequence[float], seeds: Sequence[int],
                 device: torch.device) -> None:
        super().__init__(probabilities, seeds, device)
        self.probabilities = list(probabilities)
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]

    def masks(self, shape: Sequence[int]) -> torch.Tensor:
        masks = []
        for p, generator in zip(self.probabilities, self.generators, strict=True):
            if p > 0:
                masks.append(torch.empty(shape).bernoulli_(1 - p, generator=generator).div_(1 - p))
            else:
                masks.append(torch.ones(shape))
        return torch.stack(masks).to(self.device)


def timed(action: Callable[[], object], device: torch.device, repeat: int = 1) -> float:
    """Seconds per call: CPU time on the CPU, synchronised wall time on a GPU."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    started = time.perf_counter() if cuda else time.process_time()
    for _ in range(repeat):
        action()
    if cuda:
        torch.cuda.synchronize()
    return ((time.perf_counter() if cuda else time.process_time()) - started) / repeat


def draw_times(device: torch.device, rounds: int) -> None:
    print(f"one draw of a {MASK[0]}x{MASK[1]} mask per member (ms, median of {rounds}):")
    print(f"  {'members':>8} {'stacked':>9} {'per member':>11}")
    for size in SIZES:
        figures = {}
        for kind in (MemberDropout, DropoutPerMember):
            dropout = kind([0.1] * size, list(range(size)), device)
            dropout.start_epoch(1)
            dropout.masks(MASK)  # warm: caches, kernels
            figures[kind] = statistics.median(
                timed(lambda d=dropout: d.masks(MASK), device, repeat=10) for _ in range(rounds))
        print(f"  {size:>8} {1000 * figures[MemberDropout]:>9.3f} "
              f"{1000 * figures[DropoutPerMember]:>11.3f}")


def epoch_times(device: torch.device, rounds: int) -> None:
    base = {"dataset": "digits", "hidden": [128], "activation": "relu", "output": "softmax",
            "loss": "ce", "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "batch_size": 64,
            "epochs": 20, "device": device.type}
    variants = {"no dropout": (0.0, MemberDropout), "dropout 0.1, stacked": (0.1, MemberDropout),
                "dropout 0.1, per member": (0.1, DropoutPerMember)}
    stacks = {}
    for name, (p, kind) in variants.items():
        specs = [JobSpec.from_dict({**base, "seed": seed, "dropout": p}) for seed in range(64)]
        data = shared_dataset(specs[0], device)
        stack = Stack(fresh_members(specs, data, device), data, device)
        stack.dropout = kind([p] * 64, [m.dropout_seed for m in stack.members], device)
        stacks[name] = stack
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for epoch in range(1, rounds + 2):  # interleaved; the first epoch warms up
        for name, stack in stacks.items():
            spent = timed(lambda s=stack, e=epoch: s.train_epoch(e), device)
            if epoch > 1:
                seconds[name].append(spent)
    print(f"one epoch of a stack of 64 headline jobs (ms, median of {rounds}):")
    for name, values in seconds.items():
        print(f"  {name:<24} {1000 * statistics.median(values):8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    draw_times(device, args.rounds)
    epoch_times(device, args.rounds)


if __name__ == "__main__":
    main()
