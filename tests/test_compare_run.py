"""The comparison protocol through `tvo run`: both stages, resumed after a kill between them and
inside the second; and what `tvo aggregate` reports of it."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jobs.rundir import results
from runner.cli.app import app
from runner.grid.expand import load_grid
from runner.grid.protocol import select, stage_one, stage_two

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


def run_dirs(grid_dir: Path, specs) -> list[Path]:
    return [grid_dir / "runs" / spec.job_id for spec in specs]


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
    assert all(results.is_finished(d) for d in run_dirs(grid_dir, first + final))
    finished = {d: (d / results.METRICS_FILE).read_bytes() for d in run_dirs(grid_dir, final)}
    stage_one_written = [(d / results.METRICS_FILE).stat().st_mtime_ns
                         for d in run_dirs(grid_dir, first)]
    # killed between the stages: no final job had started; then inside stage 2: one had ended
    for run_dir in run_dirs(grid_dir, final)[1:]:
        shutil.rmtree(run_dir)
    again = runner.invoke(app, ["run", "fair.yaml", "--backend", "inline"])
    assert again.exit_code == 0, again.output
    assert [(d / results.METRICS_FILE).stat().st_mtime_ns
            for d in run_dirs(grid_dir, first)] == stage_one_written  # nothing retrained
    assert "6 already done before this run" in again.output
    assert stage_two(select(grid_dir, grid.base, grid.sweeps, grid.compare),
                     grid.compare) == final  # the same selection
    for run_dir, content in finished.items():
        assert results.is_finished(run_dir)
        assert content  # rewritten runs end with metrics again


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
