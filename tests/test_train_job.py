"""run_job: every dataset, model, loss and optimiser trains; determinism, resume, divergence."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from jobs.engine.train import run_job
from jobs.rundir import results
from jobs.spec import FILE_DATASETS, JobSpec
from tests.datafiles import write_cifar, write_mnist

TINY = {"hidden": [8], "epochs": 1, "batch_size": 32}
NOT_COMPARED = ["epoch_seconds", "samples_per_second", "grid"]  # timings, and where it was run


def metrics(run_dir: Path):
    return pq.read_table(run_dir / results.METRICS_FILE).drop_columns(NOT_COMPARED).to_pylist()


def train(tmp_path: Path, name: str = "job", **settings) -> tuple[JobSpec, Path, object]:
    spec = JobSpec.from_dict({**TINY, **settings})
    run_dir = tmp_path / name
    return spec, run_dir, run_job(spec, run_dir)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_mnist(root, "MNIST")
    write_mnist(root, "FashionMNIST")
    write_cifar(root)
    return root


@pytest.mark.parametrize("settings", [
    {"dataset": "digits"},
    {"dataset": "digits", "model": "cnn"},
    {"dataset": "mnist1d", "activation": "tanh", "init": "xavier"},
    {"dataset": "spirals", "activation": "lecun_tanh", "batch_size": 0, "shortcuts": True},
    {"dataset": "moons", "activation": "leaky_relu", "init": "he", "dropout": 0.2},
    {"dataset": "mnist", "model": "cnn"},
    {"dataset": "fashion_mnist", "normalize": "minmax"},
    {"dataset": "cifar10", "model": "cnn", "normalize": "none"},
], ids=lambda s: "-".join(str(v) for v in s.values()))
def test_every_dataset_and_model_trains_one_epoch(tmp_path, data_root, settings):
    on_disk = settings["dataset"] in FILE_DATASETS  # the others take no data_root
    spec, run_dir, result = train(tmp_path, **settings,
                                  **({"data_root": str(data_root)} if on_disk else {}))
    assert result.state == "done", result.error
    rows = metrics(run_dir)
    assert [row["epoch"] for row in rows] == [0, 1]
    assert all(0 <= row["test_acc"] <= 1 for row in rows)


@pytest.mark.parametrize("settings", [
    {"loss": "ce"},
    {"loss": "mse", "output": "sigmoid", "activation": "sigmoid"},
    {"loss": "mse", "output": "tanh"},
    {"loss": "mse", "output": "linear"},
    {"loss": "bce", "output": "sigmoid"},
    {"loss": "bce", "output": "softmax"},
    {"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4},
    {"optimizer": "rmsprop", "lr": 0.01},
    {"optimizer": "adam", "lr": 0.01, "l1": 1e-4},
    {"optimizer": "adamw", "lr": 0.01, "weight_decay": 0.01},
    {"schedule": "step", "step_size": 1, "epochs": 2},
    {"schedule": "exponential", "gamma": 0.9, "epochs": 2},
    {"schedule": "plateau", "patience": 0, "epochs": 2},
    {"schedule": "cosine", "epochs": 2},
], ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_every_loss_optimiser_and_schedule_trains(tmp_path, settings):
    spec, run_dir, result = train(tmp_path, **settings)
    assert result.state == "done", result.error
    rows = metrics(run_dir)
    assert rows[-1]["epoch"] == spec.epochs
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] or spec.loss != "ce"


def test_a_schedule_changes_the_logged_learning_rate(tmp_path):
    _, run_dir, _ = train(tmp_path, schedule="step", step_size=1, gamma=0.5, epochs=3, lr=0.2)
    assert [row["learning_rate"] for row in metrics(run_dir)] == [0.2, 0.1, 0.05, 0.025]


def test_the_run_dir_holds_every_file_of_the_design(tmp_path):
    # a job that ends within its first checkpoint interval never needed a checkpoint
    spec, run_dir, result = train(tmp_path, epochs=2)
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(
        [results.SPEC_FILE, results.STATUS_FILE, results.METRICS_FILE, results.LOG_FILE])
    status = json.loads((run_dir / results.STATUS_FILE).read_text())
    assert status["state"] == "done" and status["attempts"] == 1 and status["device"] == "cpu"
    assert status["epochs_done"] == 2 and status["test_acc"] == result.test_acc
    assert json.loads((run_dir / results.SPEC_FILE).read_text())["spec"] == spec.to_dict()
    assert "epoch 2/2" in (run_dir / results.LOG_FILE).read_text()


def test_metrics_follow_the_schema_and_read_back_with_pandas_polars_and_duckdb(tmp_path):
    spec, run_dir, _ = train(tmp_path, epochs=2, strategy="fixed(c=0.8, nc=0.2)", loss="mse",
                             output="sigmoid")
    table = pq.read_table(run_dir / results.METRICS_FILE)
    assert table.schema.equals(results.metrics_schema())
    assert table.schema.metadata[b"tvo.schema"] == b"metrics"
    assert table.schema.metadata[b"tvo.schema_version"] == results.SCHEMA_VERSION.encode()
    row = table.to_pylist()[-1]
    assert row["job_id"] == spec.job_id and row["strategy_name"] == "fixed"
    assert row["strategy"] == "fixed(c=0.8, nc=0.2, normalize=false)"
    assert row["hidden"] == [8] and row["lr"] == spec.lr
    assert row["target_class"] == pytest.approx([0.8] * 10)
    assert row["target_nonclass"] == pytest.approx([0.2] * 10)
    assert row["epoch_seconds"] > 0 and row["samples_per_second"] > 0

    import duckdb
    import pandas
    import polars

    path = str(run_dir / results.METRICS_FILE)
    assert len(pandas.read_parquet(path)) == 3
    assert polars.read_parquet(path)["epoch"].to_list() == [0, 1, 2]
    assert duckdb.sql(f"select max(epoch) from '{path}'").fetchall() == [(2,)]


def _check_bins(row: dict, output: str) -> None:
    """The row's bins are those its ECE comes from: ECE = sum_b n_b/N |acc_b - conf_b|."""
    bins = row["reliability"]
    if output == "tanh":
        assert bins is None and row["ece"] is None
        return
    assert len(bins) == 10 and all(len(b) == 3 for b in bins)
    total = sum(count for count, _, _ in bins)
    if output == "softmax":  # the bins' accuracy is that of the top-1 predictions
        assert sum(count * acc for count, _, acc in bins) / total == pytest.approx(
            row["test_acc"])
    else:  # one probability per test sample and class
        assert total % 10 == 0
    assert all(b == [0.0, 0.0, 0.0] for b in bins if b[0] == 0)
    for index, (count, conf, acc) in enumerate(bins):
        if count:
            assert index / 10 <= conf <= (index + 1) / 10 and 0 <= acc <= 1
    ece = sum(count / total * abs(acc - conf) for count, conf, acc in bins)
    assert row["ece"] == pytest.approx(ece, abs=1e-6)


@pytest.mark.parametrize("output", ["softmax", "sigmoid", "tanh"])
def test_the_final_epoch_records_the_reliability_bins_its_ece_comes_from(tmp_path, output):
    """softmax: one top-1 confidence per test sample; sigmoid: one per sample and class;
    tanh: no probabilities, no bins. Earlier epochs keep their ECE but not its bins (the report
    draws the final epoch's); a job that may stop early records them at every evaluated epoch,
    as any of them may be its last."""
    loss = "ce" if output == "softmax" else "mse"
    _, run_dir, _ = train(tmp_path, epochs=2, loss=loss, output=output)
    rows = pq.read_table(run_dir / results.METRICS_FILE).to_pylist()
    assert [row["epoch"] for row in rows] == [0, 1, 2]
    assert all(row["reliability"] is None for row in rows[:-1])
    assert all((row["ece"] is None) == (output == "tanh") for row in rows)
    _check_bins(rows[-1], output)
    _, run_dir, _ = train(tmp_path, "early", epochs=2, loss=loss, output=output,
                          stop_patience=5, val_fraction=0.2)
    rows = pq.read_table(run_dir / results.METRICS_FILE).to_pylist()
    assert [row["epoch"] for row in rows] == [0, 1, 2]
    for row in rows:
        _check_bins(row, output)


def test_the_same_spec_gives_bit_identical_metrics(tmp_path):
    settings = {"epochs": 3, "dropout": 0.3, "seed": 4}
    _, first, _ = train(tmp_path, "a", **settings)
    _, second, _ = train(tmp_path, "b", **settings)
    assert metrics(first) == metrics(second)
    _, other_seed, _ = train(tmp_path, "c", **{**settings, "seed": 5})
    assert metrics(other_seed) != metrics(first)


class Interrupt(BaseException):
    """Stands for the process being stopped mid-job (not an error the job records)."""


def test_an_interrupted_job_resumes_to_the_same_metrics(tmp_path):
    settings = {"epochs": 4, "dropout": 0.3, "schedule": "step", "step_size": 1,
                "optimizer": "adam", "lr": 0.01}
    spec = JobSpec.from_dict({**TINY, **settings})

    def stop_after_epoch_two(epoch, epochs, row):
        if epoch == 3:  # epoch 3 is measured but its checkpoint is never written
            raise Interrupt

    with pytest.raises(Interrupt):
        run_job(spec, tmp_path / "resumed", progress=stop_after_epoch_two, checkpoint_seconds=0)
    assert results.read_status(tmp_path / "resumed")["state"] == "running"
    assert not (tmp_path / "resumed" / results.METRICS_FILE).exists()
    result = run_job(spec, tmp_path / "resumed")
    assert result.state == "done"
    assert results.read_status(tmp_path / "resumed")["attempts"] == 2
    assert "resumed after epoch 2" in (tmp_path / "resumed" / results.LOG_FILE).read_text()
    run_job(spec, tmp_path / "straight")
    assert metrics(tmp_path / "resumed") == metrics(tmp_path / "straight")


def test_a_finished_job_is_not_trained_again(tmp_path):
    spec, run_dir, first = train(tmp_path, epochs=1)
    before = (run_dir / results.METRICS_FILE).stat().st_mtime_ns
    again = run_job(spec, run_dir)
    assert again == first
    assert (run_dir / results.METRICS_FILE).stat().st_mtime_ns == before
    assert results.read_status(run_dir)["attempts"] == 1


def test_a_nan_loss_ends_the_job_as_diverged_with_the_epochs_so_far(tmp_path):
    _, run_dir, result = train(tmp_path, output="linear", loss="mse", lr=1e4, epochs=5,
                               hidden=[16])
    assert result.state == "diverged"
    assert result.error == "training loss became nan in epoch 1"
    status = results.read_status(run_dir)
    assert status["state"] == "diverged" and "traceback" not in status
    rows = pq.read_table(run_dir / results.METRICS_FILE).to_pylist()
    assert [row["epoch"] for row in rows] == [0, 1]
    assert torch.isnan(torch.tensor(rows[1]["train_loss"]))
    assert results.is_finished(run_dir)


def test_an_error_in_the_job_is_recorded_with_its_traceback(tmp_path):
    spec = JobSpec.from_dict({**TINY, "dataset": "mnist", "data_root": str(tmp_path / "none")})
    result = run_job(spec, tmp_path / "job")
    assert result.state == "failed"
    assert result.error.startswith("DataError: dataset 'mnist': missing ")
    status = results.read_status(tmp_path / "job")
    assert "Traceback" in status["traceback"] and status["state"] == "failed"
    assert not (tmp_path / "job" / results.METRICS_FILE).exists()


def test_an_atomic_write_never_leaves_a_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.parquet"
    results.atomic_write_bytes(target, b"old")

    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        results.atomic_write_bytes(target, b"new content")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.parquet"]  # temp file removed


@pytest.mark.slow
def test_tvo_train_killed_with_sigkill_resumes_to_the_same_metrics(tmp_path):
    args = ["epochs=30", "hidden=[64]", "batch_size=8", "seed=2", "dropout=0.1"]
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "runner", "train", *args, "--out", str(out)]
    every_epoch = {**os.environ, "TVO_CHECKPOINT_SECONDS": "0"}  # a checkpoint to kill after
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=every_epoch)
    spec = JobSpec.from_dict(dict(a.split("=", 1) for a in args))
    checkpoint = out / "runs" / spec.job_id / results.CHECKPOINT_FILE
    deadline = time.monotonic() + 300  # generous: a loaded CI machine starts python slowly
    while not checkpoint.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    run_dir = out / "runs" / spec.job_id
    assert not (run_dir / results.METRICS_FILE).exists(), "the job finished before the kill"
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    assert not list(run_dir.glob(".*.tmp")), "a write cut short by the kill was left behind"
    # the reference runs the same way (a fresh process: same torch thread count)
    straight = tmp_path / "straight"
    subprocess.run([*command[:-1], str(straight)], check=True, stdout=subprocess.DEVNULL)
    assert metrics(run_dir) == metrics(straight / "runs" / spec.job_id)


def test_strategies_that_read_outputs_get_the_activated_outputs(tmp_path, monkeypatch):
    from jobs.strategies.literature import BootstrapStack

    seen = []
    original = BootstrapStack.batch_targets

    def spy(self, outputs, labels, indices, epoch):
        seen.append(outputs.detach().sum(dim=-1).flatten())
        return original(self, outputs, labels, indices, epoch)

    monkeypatch.setattr(BootstrapStack, "batch_targets", spy)
    _, _, result = train(tmp_path, strategy="bootstrap_soft")
    assert result.state == "done" and seen
    assert torch.allclose(torch.cat(seen), torch.ones(1), atol=1e-5)  # softmax rows, not logits


def test_results_are_readable_by_others_like_any_file(tmp_path):
    _, run_dir, _ = train(tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    for name in (results.METRICS_FILE, results.STATUS_FILE, results.SPEC_FILE):
        assert (run_dir / name).stat().st_mode & 0o777 == 0o666 & ~umask


def test_starting_a_job_leaves_other_writers_temp_files_alone(tmp_path):
    run_dir = tmp_path / "job"
    run_dir.mkdir()
    claim_in_progress = run_dir / ".claim-0.abc123.tmp"  # a runner about to link its claim
    claim_in_progress.write_text("{}")
    cut_short = run_dir / f".{results.CHECKPOINT_FILE}.xyz.tmp"  # a killed checkpoint write
    cut_short.write_bytes(b"partial")
    run_job(JobSpec.from_dict(TINY), run_dir)
    assert claim_in_progress.exists() and not cut_short.exists()


def test_ctrl_c_leaves_the_job_interrupted_and_resumable(tmp_path):
    spec = JobSpec.from_dict({**TINY, "epochs": 4})

    def ctrl_c_at_epoch_three(epoch, epochs, row):
        if epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job(spec, tmp_path / "job", progress=ctrl_c_at_epoch_three, checkpoint_seconds=0)
    status = results.read_status(tmp_path / "job")
    assert status["state"] == results.INTERRUPTED and "interrupted_at" in status
    assert not results.is_finished(tmp_path / "job")
    assert run_job(spec, tmp_path / "job").state == "done"
    assert "resumed after epoch 2" in (tmp_path / "job" / results.LOG_FILE).read_text()
