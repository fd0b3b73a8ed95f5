"""Benchmark: cost of one training iteration in target space against weight space, in one run.

Run: python tests/bench/bench_target_space.py [--threads N] [--iterations N] [--repeats N]

An iteration is what the training loop does per batch: forward (in target space: realise the
targets over the fixed batch, ridge solves included, then the mini-batch network), loss,
backward, Adam step. Both methods are built by build_model from a JobSpec, as in a job, and timed
alternately; the ratio is of the medians. Nets:
- spirals: the paper's 2-5-5-5-2 tanh net with shortcuts, full batch (194), all 194 points as the
  fixed batch. The paper reports target space at about 2-2.5x weight space here.
- mnist-shaped: 784-256-10 relu on random data of MNIST's shape, mini-batch 100, fixed batch 100
  (the wide branch of the solve: 100 rows, 785 columns).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from jobs.data.datasets import load_dataset  # noqa: E402
from jobs.nn.models import build_model  # noqa: E402
from jobs.spec import JobSpec  # noqa: E402

SPIRALS = {"dataset": "spirals", "normalize": "none", "hidden": [5, 5, 5], "activation": "tanh",
           "shortcuts": True, "optimizer": "adam", "lr": 0.01, "batch_size": 0, "ts_rows": 194}
MNIST_SHAPED = {"dataset": "digits", "hidden": [256], "activation": "relu", "optimizer": "adam",
                "lr": 0.001, "ts_rows": 100}


def make_step(settings: dict, method: str, x: torch.Tensor, y: torch.Tensor,
              train_inputs: torch.Tensor, input_shape: tuple[int, ...], num_classes: int):
    spec = JobSpec.from_dict({**settings, "method": method})
    torch.manual_seed(0)
    model = build_model(spec, input_shape, num_classes, train_inputs=train_inputs).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.lr)

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def seconds_per_iteration(step, iterations: int) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    return (time.perf_counter() - start) / iterations


def compare(name: str, settings: dict, x: torch.Tensor, y: torch.Tensor,
            train_inputs: torch.Tensor, input_shape: tuple[int, ...], num_classes: int,
            iterations: int, repeats: int) -> float:
    steps = {method: make_step(settings, method, x, y, train_inputs, input_shape, num_classes)
             for method in ("weights", "target_space")}
    for step in steps.values():  # warm-up
        seconds_per_iteration(step, max(iterations // 10, 5))
    times: dict[str, list[float]] = {method: [] for method in steps}
    for _ in range(repeats):  # alternate, so load from elsewhere hits both alike
        for method, step in steps.items():
            times[method].append(seconds_per_iteration(step, iterations))
    weights, target = (statistics.median(times[m]) for m in ("weights", "target_space"))
    ratio = target / weights
    print(f"{name:<13} weights {weights * 1e3:7.3f} ms  target_space {target * 1e3:7.3f} ms  "
          f"ratio {ratio:5.2f}x")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.iterations} iterations x "
          f"{args.repeats} repeats, medians")

    spirals = load_dataset("spirals", normalize="none")
    compare("spirals", SPIRALS, spirals.x_train, spirals.y_train, spirals.x_train, (2,), 2,
            args.iterations, args.repeats)

    generator = torch.Generator().manual_seed(0)
    train_inputs = torch.rand(1000, 1, 28, 28, generator=generator)
    x = torch.rand(100, 1, 28, 28, generator=generator)
    y = torch.randint(0, 10, (100,), generator=generator)
    compare("mnist-shaped", MNIST_SHAPED, x, y, train_inputs, (1, 28, 28), 10,
            args.iterations, args.repeats)


if __name__ == "__main__":
    main()
