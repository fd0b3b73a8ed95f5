"""Preflight: a grid's data, device and output dir are checked before anything is written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cluster.base import Resources
from jobs.spec import JobSpec
from runner.cli.app import app
from runner.dispatch.preflight import PreflightError, check_datasets, check_devices, check_writable
from tests.test_run_cli import corrupt_mnist

runner = CliRunner()
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")


def mnist(root: str, **settings: object) -> JobSpec:
    return JobSpec.from_dict({"dataset": "mnist", "data_root": root, **settings})


def test_missing_and_unreadable_data_are_found_once_per_root(tmp_path: Path) -> None:
    with pytest.raises(PreflightError, match="missing .*MNIST/raw/train-images-idx3-ubyte"):
        check_datasets([mnist(str(tmp_path)), mnist(str(tmp_path), seed=1)])
    corrupt_mnist(tmp_path)
    check_datasets([mnist(str(tmp_path))])  # present, readable, IDX magic: the job decides
    (tmp_path / "MNIST" / "raw" / IDX_FILES[1]).write_bytes(b"<html>")
    with pytest.raises(PreflightError, match="is not an IDX file"):
        check_datasets([mnist(str(tmp_path))])
    if os.geteuid() != 0:  # root reads any file
        (tmp_path / "MNIST" / "raw" / IDX_FILES[1]).chmod(0)
        with pytest.raises(PreflightError, match="cannot read"):
            check_datasets([mnist(str(tmp_path))])


def test_device_cuda_needs_cuda_here_or_gpus_in_the_grid() -> None:
    cuda = [JobSpec.from_dict({"device": "cuda"})]
    check_devices([JobSpec()], "inline", Resources())
    if not torch.cuda.is_available():
        for backend in ("inline", "ray"):
            with pytest.raises(PreflightError, match="torch sees no CUDA GPU on this machine"):
                check_devices(cuda, backend, Resources())
    with pytest.raises(PreflightError, match="asks SLURM for no GPU; set resources"):
        check_devices(cuda, "slurm", Resources())
    with pytest.raises(PreflightError, match="asks the Ray cluster for no GPU"):
        check_devices(cuda, "ray", Resources(), ray_address="10.0.0.1:6379")
    check_devices(cuda, "slurm", Resources(gpus=1))


def test_the_output_dir_must_be_creatable(tmp_path: Path) -> None:
    check_writable(tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(PreflightError, match="is a file, not a directory"):
        check_writable(tmp_path / "file" / "grid")
    with pytest.raises(PreflightError, match="path too long"):
        check_writable(tmp_path / ("x" * 300))
    if os.geteuid() != 0:
        (tmp_path / "ro").mkdir(mode=0o500)
        with pytest.raises(PreflightError, match="not writable"):
            check_writable(tmp_path / "ro" / "grid")


def test_run_and_train_refuse_before_writing(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("")
    for args in (["run", "quickstart", "--out", "file/x"], ["train", "--out", "file/x"],
                 ["run", "quickstart", "dataset=mnist", "data_root=nodata", "--backend",
                  "slurm"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    if not torch.cuda.is_available():
        result = runner.invoke(app, ["run", "quickstart", "device=cuda", "--dry-run"])
        assert result.exit_code == 2 and "torch sees no CUDA GPU" in result.stderr
