"""run_job: every dataset, model, loss and optimiser trains; determinism, resume, divergence."""

from __future__ import annotations

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
from jobs.rundir.run_dir import RunDir
from jobs.spec import FILE_DATASETS, JobSpec
from tests import rundir_view
from tests.datafiles import write_cifar, write_mnist

TINY = {"hidden": [8], "epochs": 1, "batch_size": 32}
NOT_COMPARED = ["epoch_seconds", "samples_per_second", "grid"]  # timings, and where it was run


class Trained:
    """A job trained into a grid dir of its own."""

    def __init__(self, spec: JobSpec, grid_dir: Path) -> None:
        self.spec, self.grid_dir = spec, grid_dir

    def rows(self) -> list[dict]:
        return rundir_view.rows(self.grid_dir, self.spec.job_id)

    def record(self):
        return rundir_view.record(self.grid_dir, self.spec.job_id)

    def log(self) -> str:
        return rundir_view.log(self.grid_dir, self.spec.job_id)


def metrics(job: Trained) -> list[dict]:
    return [{key: value for key, value in row.items() if key not in NOT_COMPARED}
            for row in job.rows()]


def train(tmp_path: Path, name: str = "job", **settings) -> tuple[JobSpec, Trained, object]:
    spec = JobSpec.from_dict({**TINY, **settings})
    return spec, Trained(spec, tmp_path / name), run_job(spec, tmp_path / name)


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
    spec, job, result = train(tmp_path, **settings,
                              **({"data_root": str(data_root)} if on_disk else {}))
    assert result.state == "done", result.error
    rows = metrics(job)
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
    spec, job, result = train(tmp_path, **settings)
    assert result.state == "done", result.error
    rows = metrics(job)
    assert rows[-1]["epoch"] == spec.epochs
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] or spec.loss != "ce"


def test_a_schedule_changes_the_logged_learning_rate(tmp_path):
    _, job, _ = train(tmp_path, schedule="step", step_size=1, gamma=0.5, epochs=3, lr=0.2)
    assert [row["learning_rate"] for row in metrics(job)] == [0.2, 0.1, 0.05, 0.025]


def test_the_grid_dir_holds_the_files_of_the_design_and_none_per_job(tmp_path):
    # a job that ends within its first checkpoint interval never needed a checkpoint
    spec, job, result = train(tmp_path, epochs=2)
    files = rundir_view.files(job.grid_dir)
    assert [name.split("/")[0] for name in files] == ["logs", "results", "state"]
    assert not any(spec.job_id in name for name in files)  # no file of the job's own
    record = job.record()
    assert (record.state, record.attempts, record.epochs_done) == ("done", 1, 2)
    assert record.test_acc == result.test_acc and record.committed.endswith(".parquet")
    assert "epoch 2/2" in job.log()


def test_metrics_follow_the_schema_and_read_back_with_pandas_polars_and_duckdb(tmp_path):
    spec, job, _ = train(tmp_path, epochs=2, strategy="fixed(c=0.8, nc=0.2)", loss="mse",
                         output="sigmoid")
    table = pq.read_table(job.record().committed)
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

    path = job.record().committed
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
    _, job, _ = train(tmp_path, epochs=2, loss=loss, output=output)
    rows = job.rows()
    assert [row["epoch"] for row in rows] == [0, 1, 2]
    assert all(row["reliability"] is None for row in rows[:-1])
    assert all((row["ece"] is None) == (output == "tanh") for row in rows)
    _check_bins(rows[-1], output)
    _, job, _ = train(tmp_path, "early", epochs=2, loss=loss, output=output,
                      stop_patience=5, val_fraction=0.2)
    rows = job.rows()
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

    resumed, straight = Trained(spec, tmp_path / "resumed"), Trained(spec, tmp_path / "straight")
    with pytest.raises(Interrupt):
        run_job(spec, tmp_path / "resumed", progress=stop_after_epoch_two, checkpoint_seconds=0)
    assert resumed.record().state == "running"  # its process (this one) lives on
    assert resumed.rows() == []
    result = run_job(spec, tmp_path / "resumed")
    assert result.state == "done"
    assert resumed.record().attempts == 2
    assert "resumed after epoch 2" in resumed.log()
    run_job(spec, tmp_path / "straight")
    assert metrics(resumed) == metrics(straight)


def test_a_finished_job_is_not_trained_again(tmp_path):
    spec, job, first = train(tmp_path, epochs=1)
    before = rundir_view.files(job.grid_dir)
    again = run_job(spec, job.grid_dir)
    assert again == first
    assert rundir_view.files(job.grid_dir) == before
    assert job.record().attempts == 1


def test_a_nan_loss_ends_the_job_as_diverged_with_the_epochs_so_far(tmp_path):
    _, job, result = train(tmp_path, output="linear", loss="mse", lr=1e4, epochs=5,
                           hidden=[16])
    assert result.state == "diverged"
    assert result.error == "training loss became nan in epoch 1"
    assert job.record().state == "diverged" and "Traceback" not in job.log()
    rows = job.rows()
    assert [row["epoch"] for row in rows] == [0, 1]
    assert torch.isnan(torch.tensor(rows[1]["train_loss"]))
    assert job.record().finished


def test_an_error_in_the_job_is_recorded_with_its_traceback(tmp_path):
    spec = JobSpec.from_dict({**TINY, "dataset": "mnist", "data_root": str(tmp_path / "none")})
    result = run_job(spec, tmp_path / "job")
    assert result.state == "failed"
    assert result.error.startswith("DataError: dataset 'mnist': missing ")
    job = Trained(spec, tmp_path / "job")
    assert "Traceback" in job.log() and job.record().state == "failed"
    assert job.rows() == []


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
    """SIGKILL after the first checkpoint, rerun: it resumes (dropout's generator included) and
    ends with the metrics of a run never killed. Six epochs leave the poller five to see the
    checkpoint in; a job that outran the kill anyway (a starved poller) is tried again."""
    args = ["epochs=6", "hidden=[64]", "batch_size=8", "seed=2", "dropout=0.1"]
    spec = JobSpec.from_dict(dict(a.split("=", 1) for a in args))
    every_epoch = {**os.environ, "TVO_CHECKPOINT_SECONDS": "0"}  # a checkpoint to kill after
    for attempt in range(3):
        out = tmp_path / f"killed-{attempt}"
        command = [sys.executable, "-m", "runner", "train", *args, "--out", str(out)]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, env=every_epoch)
        while (rundir_view.checkpointed_epoch(out, spec.job_id) is None
               and process.poll() is None):
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        killed = Trained(spec, out)
        if killed.rows() == []:
            break
    assert killed.rows() == [], "the job finished before the kill, three times"
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    assert "resumed after epoch" in killed.log()
    assert not list(out.rglob(".*.tmp")), "a write cut short by the kill was left behind"
    # the reference runs the same way (a fresh process: same torch thread count)
    straight = tmp_path / "straight"
    subprocess.run([*command[:-1], str(straight)], check=True, stdout=subprocess.DEVNULL)
    assert metrics(killed) == metrics(Trained(spec, straight))
    assert [row["epoch"] for row in metrics(killed)] == list(range(7))  # 0: before training


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
    _, job, _ = train(tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    for name in rundir_view.files(job.grid_dir):
        assert (job.grid_dir / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_a_sweep_removes_writes_a_kill_cut_short_and_leaves_live_writers_alone(tmp_path):
    spec, job, _ = train(tmp_path)
    live = job.grid_dir / "results" / ".abc.parquet.123.tmp"  # a stack writing its results
    live.write_text("{}")
    cut_short = job.grid_dir / "results" / ".def.parquet.456.tmp"  # a write a kill cut short
    cut_short.write_bytes(b"partial")
    os.utime(cut_short, (time.time() - 7200, time.time() - 7200))
    RunDir(job.grid_dir).sweep({spec.job_id})
    assert live.exists() and not cut_short.exists()


def test_ctrl_c_leaves_the_job_interrupted_and_resumable(tmp_path):
    spec = JobSpec.from_dict({**TINY, "epochs": 4})

    def ctrl_c_at_epoch_three(epoch, epochs, row):
        if epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job(spec, tmp_path / "job", progress=ctrl_c_at_epoch_three, checkpoint_seconds=0)
    job = Trained(spec, tmp_path / "job")
    record = job.record()
    assert (record.state, record.interrupted, record.finished) == ("pending", True, False)
    assert "interrupted; the next run resumes 1 jobs from their last checkpoint" in job.log()
    assert run_job(spec, tmp_path / "job").state == "done"
    assert "resumed after epoch 2" in job.log()
