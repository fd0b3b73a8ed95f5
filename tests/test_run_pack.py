"""Packing through the runner: by default (auto), `--pack auto|off|N` and `pack:` in the grid."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from jobs.engine.train import run_job
from runner.cli.app import app
from runner.grid.expand import expand, load_grid
from tests import rundir_view

runner = CliRunner()
GRID = """\
name: packed
base: {dataset: digits, hidden: [16], epochs: 2, output: sigmoid, loss: mse, lr: 0.5}
grid:
  seed: [0, 1, 2]
  strategy: [onehot, "fixed(c=0.9, nc=0.1)"]
"""
NOT_COMPARED = ["epoch_seconds", "samples_per_second", "grid"]


def metrics(grid_dir: Path, job_id: str) -> list[dict]:
    return [{key: value for key, value in row.items() if key not in NOT_COMPARED}
            for row in rundir_view.rows(grid_dir, job_id)]


@pytest.fixture
def grid_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "packed.yaml"
    path.write_text(GRID)
    return path


def assert_packed_like_alone(grid_dir: Path, grid_file: Path, tmp_path: Path) -> None:
    specs = expand(load_grid(str(grid_file), []))
    for spec in specs:
        assert f"] {len(specs)} jobs on " in rundir_view.log(grid_dir, spec.job_id)
        alone = run_job(spec, tmp_path / "alone")
        assert alone.state == "done"
        packed, single = metrics(grid_dir, spec.job_id), metrics(tmp_path / "alone", spec.job_id)
        assert [row["epoch"] for row in packed] == [row["epoch"] for row in single]
        for row_packed, row_single in zip(packed, single, strict=True):
            for key, value in row_single.items():
                if isinstance(value, float):
                    assert row_packed[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
                else:
                    assert row_packed[key] == value, key


def test_pack_option_runs_compatible_jobs_as_one_unit_inline(grid_file, tmp_path):
    result = runner.invoke(app, ["run", str(grid_file), "--backend", "inline", "--pack", "8"])
    assert result.exit_code == 0, result.output
    assert_packed_like_alone(tmp_path / "outputs" / "packed", grid_file, tmp_path)


def test_pack_in_the_grid_file_on_a_real_ray(grid_file, tmp_path):
    grid_file.write_text(GRID + "pack: auto\n")
    result = runner.invoke(app, ["run", str(grid_file), "--backend", "ray", "--max-parallel", "1"])
    assert result.exit_code == 0, result.output
    assert_packed_like_alone(tmp_path / "outputs" / "packed", grid_file, tmp_path)


def test_dry_run_says_how_jobs_are_packed_and_which_run_alone(grid_file):
    result = runner.invoke(app, ["run", str(grid_file), "--pack", "4",
                                 "method=weights,target_space", "--dry-run"])
    assert result.exit_code == 0
    assert ("packing --pack 4: 12 jobs in 8 stacks of 1-3; 6 train alone: "
            "method=target_space solves for its weights on a fixed batch of its own; it trains "
            "as a stack of one") in " ".join(result.output.split())


def test_a_grid_packs_by_default(grid_file, tmp_path):
    dry = runner.invoke(app, ["run", str(grid_file), "--dry-run", "--max-parallel", "2"])
    assert ("packing auto for 2 at once: 6 jobs in 2 stacks of 3 (their work balanced over "
            "the slots)") in dry.output
    result = runner.invoke(app, ["run", str(grid_file), "--backend", "inline"])
    assert result.exit_code == 0, result.output
    assert_packed_like_alone(tmp_path / "outputs" / "packed", grid_file, tmp_path)


def test_pack_off_trains_each_job_alone(grid_file, tmp_path):
    dry = runner.invoke(app, ["run", str(grid_file), "--dry-run", "--pack", "off"])
    assert "packing off: each job trains alone" in dry.output
    result = runner.invoke(app, ["run", str(grid_file), "--backend", "inline", "--pack", "off"])
    assert result.exit_code == 0, result.output
    for spec in expand(load_grid(str(grid_file), [])):
        assert "] 1 jobs on " in rundir_view.log(tmp_path / "outputs" / "packed", spec.job_id)


@pytest.mark.parametrize("value", ["0", "lots", "-3"])
def test_a_bad_pack_option_is_one_line_exit_2(grid_file, value):
    result = runner.invoke(app, ["run", str(grid_file), "--pack", value])
    assert result.exit_code == 2
    assert result.stderr == (f"Error: --pack: got {value!r}; expected auto, off or a whole number "
                             ">= 1 (jobs trained together as one stack)\n")
    assert not (grid_file.parent / "outputs").exists()


@pytest.mark.parametrize("value", ["0", "lots", "true"])
def test_a_bad_pack_value_is_one_line_exit_2(grid_file, value):
    grid_file.write_text(GRID + f"pack: {value}\n")
    result = runner.invoke(app, ["run", str(grid_file), "--backend", "inline"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {grid_file}: pack: got ")
    assert "expected auto, off or a whole number >= 1" in result.stderr
    assert not (grid_file.parent / "outputs").exists()
