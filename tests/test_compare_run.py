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
from runner.report.selection import MethodResult, selection_rows, write_comparison
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


def test_aggregate_files_of_a_comparison(grid_file, tmp_path):
    assert runner.invoke(app, ["run", "fair.yaml", "--backend", "inline"]).exit_code == 0
    grid = load_grid("fair.yaml")
    written = write_comparison(Path("outputs/fair"), dict(grid.base), dict(grid.sweeps),
                               grid.compare, tmp_path / "summary")
    assert [p.name for p in written] == ["selection.csv", "tuning_curves.csv",
                                         "tuning_curves.png"]
    result = runner.invoke(app, ["aggregate", "outputs/fair", "--no-plots"])
    assert result.exit_code == 0, result.output
    summary = Path("outputs/fair/summary")
    assert (summary / "selection.csv").read_text() == \
        (tmp_path / "summary" / "selection.csv").read_text()
    assert "## Comparison protocol" in (summary / "report.md").read_text()
    rows = list(csv.DictReader((tmp_path / "summary" / "selection.csv").open()))
    assert [row["strategy"] for row in rows] == ["onehot",
                                                 "label_smoothing(eps=0.2, variant=uniform)"]
    assert all(row["final_seeds"] == "2" and row["configurations_scored"] == "3" for row in rows)
    curves = list(csv.DictReader((tmp_path / "summary" / "tuning_curves.csv").open()))
    assert len(curves) == 2 * 3


def test_holm_and_the_paired_test_by_hand():
    from runner.grid.protocol import Selection, read_compare

    compare = read_compare("g", {"by": "strategy", "tune": {"lr": "uniform(0.1, 1)"},
                                 "budget": 2, "select": "val_acc", "final_seeds": [0, 1, 2]})

    def method(strategy: str, accs: list[float]) -> MethodResult:
        selection = Selection({"strategy": strategy, "dataset": "moons"}, {"lr": 0.5}, 0.9,
                              [0.8, 0.9], 0)
        return MethodResult(selection, dict(enumerate(accs)))

    rows = selection_rows([method("onehot", [0.80, 0.82, 0.84]),
                           method("label_smoothing(eps=0.2)", [0.83, 0.84, 0.88]),  # +3, 2, 4
                           method("label_smoothing(eps=0.1)", [0.80, 0.83, 0.83])], compare)
    # paired t on the differences: eps=0.2 = (.03, .02, .04), mean .03, sd .01: t = 5.196,
    # p = 0.0351; eps=0.1 d = (0, .01, -.01): t = 0, p = 1. Holm: 0.0351 * 2, 1.
    assert rows[1]["p_vs_baseline"] == pytest.approx(0.03508, abs=1e-4)
    assert rows[1]["p_holm"] == pytest.approx(2 * 0.03508, abs=2e-4)
    assert rows[2]["p_vs_baseline"] == pytest.approx(1.0) and rows[2]["p_holm"] == 1.0
    assert rows[0]["test_acc_mean"] == pytest.approx(0.82)
    # t(0.975, 2) = 4.303, sem = 0.02 / sqrt(3): half width 0.0497
    assert rows[0]["test_acc_ci_high"] - 0.82 == pytest.approx(0.04968, abs=1e-4)
