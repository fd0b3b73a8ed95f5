"""`tvo run --pack N` and `pack:` in the grid: packed units through the runner, inline and Ray."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from jobs import results
from jobs.train import run_job
from runner.cli import app
from runner.grid import expand, load_grid

runner = CliRunner()
GRID = """\
name: packed
base: {dataset: digits, hidden: [16], epochs: 2, output: sigmoid, loss: mse, lr: 0.5}
grid:
  seed: [0, 1, 2]
  strategy: [onehot, "fixed(c=0.9, nc=0.1)"]
"""
NOT_COMPARED = ["epoch_seconds", "samples_per_second", "grid"]


def metrics(run_dir: Path) -> list[dict]:
    return pq.read_table(run_dir / results.METRICS_FILE).drop_columns(NOT_COMPARED).to_pylist()


@pytest.fixture
def grid_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "packed.yaml"
    path.write_text(GRID)
    return path


def assert_packed_like_alone(grid_dir: Path, grid_file: Path, tmp_path: Path) -> None:
    specs = expand(load_grid(str(grid_file), []))
    for spec in specs:
        run_dir = grid_dir / "runs" / spec.job_id
        assert "training in a pack of 6 jobs" in (run_dir / results.LOG_FILE).read_text()
        alone = run_job(spec, tmp_path / "alone" / spec.job_id)
        assert alone.state == "done"
        packed, single = metrics(run_dir), metrics(tmp_path / "alone" / spec.job_id)
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
    assert ("packed: 12 jobs in 8 units of up to 4 (all packs at once; a running grid packs what "
            "is free to run); 6 run alone: method=target_space trains layer targets with its own "
            "solver; only method=weights is packed") in " ".join(result.output.split())


@pytest.mark.parametrize("value", ["0", "lots", "true"])
def test_a_bad_pack_value_is_one_line_exit_2(grid_file, value):
    grid_file.write_text(GRID + f"pack: {value}\n")
    result = runner.invoke(app, ["run", str(grid_file), "--backend", "inline"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {grid_file}: pack: got ")
    assert "expected auto, off or a whole number >= 1" in result.stderr
    assert not (grid_file.parent / "outputs").exists()
