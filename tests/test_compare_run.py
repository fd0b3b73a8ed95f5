"""The comparison protocol through `tvo run`: both stages, resumed after a kill between them and
inside the second; and what `tvo aggregate` reports of it."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runner.cli.app import app
from runner.grid.expand import load_grid
from runner.grid.protocol import select, stage_one, stage_two
from tests import rundir_view

runner = CliRunner()
GRID = """\
name: fair
base: {dataset: moons, hidden: [8], epochs: 2, seed: 0}
grid: {strategy: [onehot, "label_smoothing(eps=0.2)"]}
compare:
  by: strategy
  tune: {lr: "loguniform(0.05, 2)"}
  budget: 3
  select: val_acc
  final_seeds: [10, 11]
"""


@pytest.fixture
def grid_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fair.yaml").write_text(GRID)
    return tmp_path / "fair.yaml"


def results_files(grid_dir: Path, specs) -> dict[str, Path]:
    """Job -> the results file that committed it."""
    return {spec.job_id: Path(rundir_view.record(grid_dir, spec.job_id).committed)
            for spec in specs}


def test_both_stages_run_and_resume_after_a_kill_between_and_inside_them(grid_file):
    result = runner.invoke(app, ["run", "fair.yaml", "--backend", "inline"])
    assert result.exit_code == 0, result.output
    assert "stage 1 of 2: 3 configurations of lr for each strategy" in result.output
    assert "stage 2 of 2: seeds 10, 11 of each selected configuration" in result.output
    grid = load_grid("fair.yaml")
    grid_dir = Path("outputs/fair")
    first = stage_one(grid.base, grid.sweeps, grid.compare)
    final = stage_two(select(grid_dir, grid.base, grid.sweeps, grid.compare), grid.compare)
    assert len(first) == 6 and len(final) == 4
    assert all(rundir_view.record(grid_dir, spec.job_id).finished for spec in first + final)
    final_rows = {spec.job_id: rundir_view.rows(grid_dir, spec.job_id, timing=False)
                  for spec in final}
    stage_one_written = {path: path.stat().st_mtime_ns
                         for path in results_files(grid_dir, first).values()}
    # killed between the stages: no final job was committed
    for path in set(results_files(grid_dir, final).values()):
        path.unlink()
    again = runner.invoke(app, ["run", "fair.yaml", "--backend", "inline"])
    assert again.exit_code == 0, again.output
    assert {path: path.stat().st_mtime_ns
            for path in stage_one_written} == stage_one_written  # nothing retrained
    assert "6 already done before this run" in again.output
    assert stage_two(select(grid_dir, grid.base, grid.sweeps, grid.compare),
                     grid.compare) == final  # the same selection
    for spec in final:  # trained again, to the same rows
        assert rundir_view.rows(grid_dir, spec.job_id, timing=False) == final_rows[spec.job_id]


def test_aggregate_reports_the_comparison_answer_first(grid_file):
    assert runner.invoke(app, ["run", "fair.yaml", "--backend", "inline"]).exit_code == 0
    result = runner.invoke(app, ["aggregate", "outputs/fair", "--no-plots"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.index("selection (stage 1") < out.index("final seeds (stage 2)") < out.index(
        "tuning curves") < out.index("grid fair: final runs")
    assert "10 jobs: 10 done (6 tuning, 4 final)" in out
    summary = Path("outputs/fair/summary")
    rows = list(csv.DictReader((summary / "selection.csv").open()))
    assert [row["strategy"] for row in rows] == ["onehot",
                                                 "label_smoothing(eps=0.2, variant=uniform)"]
    assert all(row["final_seeds"] == "2" and row["configurations_scored"] == "3" for row in rows)
    assert len(list(csv.DictReader((summary / "tuning.csv").open()))) == 2 * 3
    assert len(list(csv.DictReader((summary / "tuning_curves.csv").open()))) == 2 * 3
    report = (summary / "report.md").read_text()
    assert report.index("## Selection") < report.index("## Final seeds") < report.index(
        "## Tuning curves") < report.index("## Verdicts") < report.index("## Results of the")
    assert report.count("## Selection") == 1  # written once, by its one writer
