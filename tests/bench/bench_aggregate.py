"""Benchmark of tvo aggregate: 1,000 jobs x 1,000 epochs (1M metrics rows in 16 results files,
stacks of 63 jobs, as a run of 1,000 jobs on 2 cores leaves them).

Run:  python -m tests.bench.bench_aggregate [--jobs 1000] [--epochs 1000]
  or  python -m pytest tests/bench/bench_aggregate.py -s

Reports read, group and write times separately (plots excluded), for the first run (the
statistics read the 8 columns they use from every run's file; the write streams all 58 into the
compacted file) and the second (the compacted file is reused), against a baseline measured in
the same run: pyarrow.dataset reading the same files with threads and grouping the final-epoch
accuracy per job. Goal: read + group under 0.3 s, both runs.

Then the whole command as a user runs it, `tvo aggregate DIR` with plots, report.html and every
file, in a fresh process (imports included), wall-clock, best of --repeats once the compacted
file exists. Goal: under 3 s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from jobs.request import stack_id
from jobs.rundir import results
from jobs.rundir.layout import OutputDir
from jobs.rundir.states import JobState, Outcome
from jobs.spec import JobSpec

STRATEGIES = ("onehot", "fixed(c=0.9, nc=0.1)")
LEARNING_RATES = (0.1, 0.2, 0.3, 0.4, 0.5)
CLASSES = 10
GOAL_SECONDS = 0.3  # read + group
COMMAND_GOAL_SECONDS = 3.0  # the whole `tvo aggregate DIR`, plots included


def _list_column(values: np.ndarray) -> pa.Array:
    rows, width = values.shape
    offsets = np.arange(0, rows * width + 1, width, dtype=np.int32)
    return pa.ListArray.from_arrays(offsets, values.ravel())


STACK = 63  # jobs per results file: the stacks pack=auto makes of 1,000 jobs on 2 cores


def write_grid(root: Path, jobs: int, epochs: int) -> None:
    """jobs x epochs metrics rows in results files of STACK jobs each, as a run leaves them
    (plus jobs.parquet)."""
    schema = results.metrics_schema()
    specs = []
    tables = []
    for index in range(jobs):
        spec = JobSpec.from_dict({
            "loss": "mse", "output": "sigmoid", "epochs": epochs - 1,
            "strategy": STRATEGIES[index % len(STRATEGIES)],
            "lr": LEARNING_RATES[(index // len(STRATEGIES)) % len(LEARNING_RATES)],
            "seed": index // (len(STRATEGIES) * len(LEARNING_RATES)),
        })
        specs.append(spec)
        rng = np.random.default_rng(index)
        epoch = np.arange(epochs, dtype=np.int32)
        accuracy = 1 - 0.9 * np.exp(-epoch / (epochs / 20)) - rng.uniform(0, 0.02, epochs)
        fixed = results.spec_columns(spec, "bench")
        columns = {name: pa.array([value] * epochs, schema.field(name).type)
                   for name, value in fixed.items()}
        columns["epoch"] = pa.array(epoch)
        for name in ("learning_rate", "train_loss", "train_acc", "test_loss", "test_nll",
                     "confidence", "margin", "ece", "epoch_seconds", "samples_per_second",
                     "val_loss", "val_acc", "val_nll", "val_ece"):
            columns[name] = pa.array(rng.uniform(0, 1, epochs))
        columns["test_acc"] = pa.array(accuracy)
        columns["target_class"] = _list_column(np.full((epochs, CLASSES), 0.9))
        columns["target_nonclass"] = _list_column(np.full((epochs, CLASSES), 0.1))
        columns["target_matrix"] = pa.nulls(epochs, schema.field("target_matrix").type)
        # the final epoch's 10 reliability bins [count, mean confidence, accuracy], as jobs
        # write them (earlier rows: null)
        bins = rng.uniform(0, 1, (10, 3))
        offsets = np.zeros(epochs + 1, dtype=np.int32)
        offsets[-1] = 10
        mask = np.arange(epochs) < epochs - 1
        columns["reliability"] = pa.ListArray.from_arrays(
            offsets, _list_column(bins), mask=pa.array(mask))
        columns["ts_residual"] = pa.nulls(epochs, pa.float64())
        tables.append(pa.table([columns[f.name] for f in schema], schema=schema))
    for start in range(0, jobs, STACK):
        chosen = specs[start:start + STACK]
        stack = stack_id(spec.job_id for spec in chosen)
        commit = results.Commit(stack, time.time(), {
            spec.job_id: Outcome(JobState.DONE, None, epochs - 1) for spec in chosen})
        results.write_stack_results(OutputDir(root).results_file(stack),
                                    pa.concat_tables(tables[start:start + STACK]), commit)
    results.write_parquet(root / "jobs.parquet", results.jobs_table(specs, "bench"))


def pyarrow_baseline(root: Path) -> float:
    """The plain way: pyarrow.dataset with threads, then final epoch and best accuracy per job."""
    import pyarrow.dataset as ds

    started = time.perf_counter()
    files = [str(p) for p in sorted(root.glob("results/*.parquet"))]
    table = ds.dataset(files, format="parquet").to_table(
        columns=["job_id", "epoch", "test_acc", "test_nll", "ece", "confidence", "margin",
                 "train_loss"], use_threads=True)
    last = table.group_by("job_id").aggregate([("epoch", "max"), ("test_acc", "max")])
    assert last.num_rows > 0
    return time.perf_counter() - started


def pyarrow_read_all(root: Path) -> float:
    """What compaction must do on a first run (every column), the pyarrow.dataset way."""
    import pyarrow.dataset as ds

    started = time.perf_counter()
    files = [str(p) for p in sorted(root.glob("results/*.parquet"))]
    ds.dataset(files, format="parquet").to_table(use_threads=True)
    return time.perf_counter() - started


def timed_run(root: Path) -> dict[str, float]:
    from runner.report import pipeline
    from runner.report.contents import Contents
    from runner.report.load import SUMMARY_DIR, load_grid
    from runner.report.summary import summarise

    times = {}
    started = time.perf_counter()
    data = load_grid(root)
    times["read"] = time.perf_counter() - started
    started = time.perf_counter()
    summary = summarise(data)
    times["group"] = time.perf_counter() - started
    started = time.perf_counter()
    _, rendered = pipeline.render(Contents(data, summary, "bench"))
    pipeline.write(data, root / SUMMARY_DIR, summary, rendered)
    times["write"] = time.perf_counter() - started
    assert sum(row["runs"] for row in summary.rows) == len(data.jobs)
    times["compaction"] = data.compaction
    return times


def warm_imports() -> None:
    """Imports are paid once per process (polars, scipy.stats, torch via jobs.spec): not data."""
    import polars  # noqa: F401
    from scipy import stats  # noqa: F401

    from runner.report import pipeline  # noqa: F401


def whole_command(root: Path, repeats: int) -> list[tuple[float, float]]:
    """Wall-clock and CPU seconds (its figure workers included) of `python -m runner aggregate
    ROOT`, plots and all, each run. The CPU time says what a busy machine hides."""
    import resource
    import subprocess
    import sys

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    times = []
    for _ in range(repeats):
        started, cpu_before = time.perf_counter(), cpu()
        subprocess.run([sys.executable, "-m", "runner", "aggregate", str(root)], check=True,
                       capture_output=True)
        times.append((time.perf_counter() - started, cpu() - cpu_before))
    return times


def redraw(root: Path) -> None:
    """Forget the plots' fingerprint, so the next run draws them (a first aggregation)."""
    import pyarrow.parquet as pq

    path = root / "summary" / "summary.parquet"
    table = pq.read_table(path)
    metadata = {**table.schema.metadata, b"tvo.figures": b""}
    results.write_parquet(path, table.replace_schema_metadata(metadata))


def run(jobs: int, epochs: int, repeats: int = 5) -> dict[str, dict[str, float]]:
    warm_imports()
    with tempfile.TemporaryDirectory(prefix="tvo-bench-") as folder:
        root = Path(folder)
        started = time.perf_counter()
        write_grid(root, jobs, epochs)
        print(f"wrote {jobs} jobs x {epochs} epochs = {jobs * epochs:,} rows in "
              f"{time.perf_counter() - started:.1f} s")
        baseline = min(pyarrow_baseline(root) for _ in range(3))
        read_all = min(pyarrow_read_all(root) for _ in range(2))
        first = timed_run(root)
        second = min((timed_run(root) for _ in range(3)), key=lambda t: t["read"] + t["group"])
        drawing = []
        for _ in range(repeats):
            redraw(root)
            drawing += whole_command(root, 1)
        kept = whole_command(root, repeats)
    print(f"baseline pyarrow.dataset read + per-job group (8 columns): {baseline:.3f} s; "
          f"reading every column with it: {read_all:.3f} s")
    for name, times in (("first run (read every run's file, compact in the write)", first),
                        ("second run (compacted file reused)", second)):
        total = times["read"] + times["group"]
        print(f"{name}: read {times['read']:.3f} s, group {times['group']:.3f} s, "
              f"write {times['write']:.3f} s; read+group {total:.3f} s = "
              f"{total / baseline:.2f}x baseline (goal {GOAL_SECONDS} s) [{times['compaction']}]")
    for name, runs in (("drawing every plot", drawing), ("plots unchanged, kept", kept)):
        walls, cpus = sorted(w for w, _ in runs), sorted(c for _, c in runs)
        print(f"tvo aggregate DIR, {name}: wall best {walls[0]:.2f} s, median "
              f"{walls[len(walls) // 2]:.2f} s; CPU (all processes) median "
              f"{cpus[len(cpus) // 2]:.2f} s; {len(runs)} runs (goal {COMMAND_GOAL_SECONDS} s)")
    return {"baseline": {"read+group": baseline}, "first": first, "second": second,
            "command": {"best": min(w for w, _ in drawing)}}


def test_bench_aggregate() -> None:
    times = run(1000, 1000)
    for name in ("first", "second"):
        assert times[name]["read"] + times[name]["group"] < GOAL_SECONDS, name
    assert times["command"]["best"] < COMMAND_GOAL_SECONDS


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5, help="runs of the whole command")
    arguments = parser.parse_args()
    run(arguments.jobs, arguments.epochs, arguments.repeats)
