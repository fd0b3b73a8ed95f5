"""Benchmark: training throughput of a tvo job against two plain PyTorch loops, in one run.

Run: python tests/bench/bench_train_throughput.py [--threads N] [--epochs N]

Same model, data, optimiser, batch size and thread count for all:
- dataloader: the loop a user writes first, a DataLoader over a TensorDataset;
- slicing: pre-shuffled tensors sliced into batches (the fast plain loop), nothing between epochs;
- slicing+eval: the same loop as a user writes it to see results: it sums the loss and counts
  correct predictions per batch (`.item()`, as the PyTorch tutorial does) and measures test
  accuracy after each epoch;
- tvo: run_job, reading the samples/second it records per epoch.
Every figure is the training pass alone (shuffle, batches, the epoch's loss and accuracy); what a
loop does between epochs (tvo: evaluation and checkpoint) is outside the timing, but its after-
effect on the next epoch (caches) is not. Goals on a 2-core machine: digits 64-128-10 >= 2x
dataloader and >= 0.95x slicing; MNIST-shaped 784-256-10 within 5 % of slicing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from jobs.data.datasets import load_dataset  # noqa: E402
from jobs.engine.train import run_job  # noqa: E402
from jobs.nn.models import build_model  # noqa: E402
from jobs.spec import JobSpec  # noqa: E402

BATCH = 128
LR = 0.1


def plain_model(spec: JobSpec, data) -> torch.nn.Module:
    torch.manual_seed(spec.seed)
    return build_model(spec, data.input_shape, data.num_classes)


def dataloader_loop(spec: JobSpec, data, epochs: int) -> list[float]:
    model = plain_model(spec, data)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    loader = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=BATCH, shuffle=True)
    rates = []
    for _ in range(epochs):
        start = time.perf_counter()
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        rates.append(len(data.x_train) / (time.perf_counter() - start))
    return rates


def slicing_loop(spec: JobSpec, data, epochs: int) -> list[float]:
    model = plain_model(spec, data)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    n = len(data.x_train)
    rates = []
    for _ in range(epochs):
        start = time.perf_counter()
        perm = torch.randperm(n)
        x, y = data.x_train[perm], data.y_train[perm]
        for i in range(0, n, BATCH):
            loss = F.cross_entropy(model(x[i:i + BATCH]), y[i:i + BATCH])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        rates.append(n / (time.perf_counter() - start))
    return rates


def slicing_eval_loop(spec: JobSpec, data, epochs: int) -> list[float]:
    model = plain_model(spec, data)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    n = len(data.x_train)
    rates = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        perm = torch.randperm(n)
        x, y = data.x_train[perm], data.y_train[perm]
        running_loss, correct = 0.0, 0
        for i in range(0, n, BATCH):
            outputs = model(x[i:i + BATCH])
            loss = F.cross_entropy(outputs, y[i:i + BATCH])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running_loss += loss.item() * len(outputs)
            correct += (outputs.argmax(1) == y[i:i + BATCH]).sum().item()
        rates.append(n / (time.perf_counter() - start))
        model.eval()
        with torch.no_grad():
            test_acc = (model(data.x_test).argmax(1) == data.y_test).float().mean().item()
        assert running_loss >= 0 and 0 <= correct <= n and 0 <= test_acc <= 1
    return rates


def tvo_job(spec: JobSpec, workdir: Path) -> list[float]:
    grid_dir = workdir / spec.job_id
    result = run_job(spec, grid_dir)
    assert result.state == "done", result.error
    [results_file] = grid_dir.glob("results/*.parquet")
    rows = pq.read_table(results_file).to_pylist()
    return [row["samples_per_second"] for row in rows if row["epoch"] > 0]


def write_mnist_shaped(root: Path, n_train: int, n_test: int) -> None:
    """Random images in the real MNIST IDX layout, so the job reads them like MNIST."""
    from jobs.data.files import IDX_UBYTE_IMAGES, IDX_UBYTE_LABELS
    from tests.datafiles import write_idx

    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), IDX_UBYTE_IMAGES, gz=False)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte",
                  rng.integers(0, 10, n, dtype=np.uint8), IDX_UBYTE_LABELS, gz=False)


def bench(label: str, spec: JobSpec, epochs: int, rounds: int,
          workdir: Path) -> dict[str, float]:
    data = load_dataset(spec.dataset, data_root=spec.data_root or None, normalize=spec.normalize)
    loops = {"dataloader": dataloader_loop, "slicing": slicing_loop,
             "slicing+eval": slicing_eval_loop}
    rates: dict[str, list[float]] = {name: [] for name in [*loops, "tvo"]}
    for round_ in range(rounds):  # interleave so drift in machine load hits all alike
        for name, loop in loops.items():
            rates[name] += loop(spec, data, epochs)[2:]  # the first epochs warm up
        rates["tvo"] += tvo_job(spec.replace(seed=round_), workdir)[2:]
    median = {name: statistics.median(values) for name, values in rates.items()}
    print(f"\n{label}: samples/s (median of {len(rates['tvo'])} epochs)")
    for name, value in median.items():
        print(f"  {name:<13} {value:>10,.0f}")
    print(f"  tvo / dataloader   = {median['tvo'] / median['dataloader']:.2f}x")
    print(f"  tvo / slicing      = {median['tvo'] / median['slicing']:.3f}x")
    print(f"  tvo / slicing+eval = {median['tvo'] / median['slicing+eval']:.3f}x")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved runs of each loop")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {BATCH}")
    common = {"optimizer": "sgd", "lr": LR, "batch_size": BATCH, "epochs": args.epochs,
              "device": "cpu"}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        digits = JobSpec.from_dict({**common, "dataset": "digits", "hidden": [128]})
        bench("digits MLP 64-128-10", digits, args.epochs, args.rounds, workdir)
        write_mnist_shaped(workdir / "data", 12000, 1000)
        mnist = JobSpec.from_dict({**common, "dataset": "mnist", "hidden": [256],
                                   "data_root": str(workdir / "data")})
        bench("MNIST-shaped MLP 784-256-10", mnist, args.epochs, args.rounds, workdir)


if __name__ == "__main__":
    main()
