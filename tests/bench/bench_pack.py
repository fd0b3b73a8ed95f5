"""Benchmark: what stacking buys, and what an adaptive strategy costs inside a stack.

Run: python tests/bench/bench_pack.py [--members 16] [--epochs 20] [--rounds 3]

On the headline grid's job (digits MLP 64-128-10, softmax + CE, SGD momentum, 20 epochs, one
thread, every file written):
- a stack of 16 one-hot members against the same 16 jobs one after another (each a stack of
  one): what packing buys;
- a stack of 16 members of each adaptive strategy against the stack of 16 one-hot members: the
  cost of the strategy's stacked state (goal: within 1.3x of one-hot for every strategy).
Rounds interleave the variants so that drift in the machine's load hits all alike; each figure
is the median over rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from jobs.engine.train import run_job, run_stack  # noqa: E402
from jobs.request import StackRequest  # noqa: E402
from jobs.spec import JobSpec  # noqa: E402

ADAPTIVE = ("ols(alpha=0.5)", "pskd(alpha_T=0.8)", "sat(m=0.9, start_epoch=1)",
            "bootstrap_soft(beta=0.95)", "bootstrap_hard(beta=0.8)",
            "tvo(init=average_nudge, adapt=sigma, normalize=true)",
            "tvo(init=average_nudge, adapt=sigma, cadence=batch, normalize=true)",
            "two_stage(eps=0.1, switch_epoch=10)")
GOAL = 1.3
BASE = {"dataset": "digits", "hidden": [128], "activation": "relu", "output": "softmax",
        "loss": "ce", "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "batch_size": 64,
        "device": "cpu"}


def members(strategy: str, count: int, epochs: int, salt: int) -> list[JobSpec]:
    return [JobSpec.from_dict({**BASE, "strategy": strategy, "epochs": epochs,
                               "seed": salt * 1000 + seed}) for seed in range(count)]


def stacked(specs: list[JobSpec], root: Path) -> float:
    started = time.perf_counter()
    ends = run_stack(StackRequest(str(root), tuple(specs)))
    assert all(end.state == "done" for end in ends), [end.error for end in ends]
    return time.perf_counter() - started


def one_by_one(specs: list[JobSpec], root: Path) -> float:
    started = time.perf_counter()
    for spec in specs:
        assert run_job(spec, root).state == "done"
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    seconds: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_pack_") as tmp:
        root = Path(tmp)
        stacked(members("onehot", 2, 1, salt=999), root / "warm")
        for round_ in range(args.rounds):
            variants = ["alone", "onehot", *ADAPTIVE]
            for salt, name in enumerate(variants if round_ % 2 == 0 else variants[::-1]):
                specs = members("onehot" if name == "alone" else name, args.members,
                                args.epochs, salt=round_ * 100 + salt)
                out = root / f"{round_}-{salt}"
                took = one_by_one(specs, out) if name == "alone" else stacked(specs, out)
                seconds.setdefault(name, []).append(took)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    onehot = median["onehot"]
    print(f"{args.members} members, {args.epochs} epochs, 1 thread, median of {args.rounds}:")
    print(f"  one after another (stacks of one): {median['alone']:6.2f} s")
    print(f"  one stack of one-hot members:      {onehot:6.2f} s "
          f"({median['alone'] / onehot:.2f}x faster than one after another)")
    for name in ADAPTIVE:
        ratio = median[name] / onehot
        print(f"  {name:<66} {median[name]:6.2f} s = {ratio:.2f}x one-hot "
              f"({'ok' if ratio <= GOAL else 'over'} the {GOAL}x goal)")


if __name__ == "__main__":
    main()
