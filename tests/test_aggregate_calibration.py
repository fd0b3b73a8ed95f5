"""ECE and NLL that do not apply (tanh, lecun_tanh and linear outputs write null): shown as n/a,
never as 0, left out of the calibration plot with a note, and defined in the report."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest

from runner.aggregate.formats import to_json
from runner.aggregate.latex import to_latex
from runner.aggregate.pipeline import aggregate
from tests.fake_grid import curve_rows, make_spec, write_run


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """onehot with sigmoid and with tanh outputs, 3 seeds each; tanh writes null ECE and NLL."""
    root = tmp_path_factory.mktemp("grid")
    for output in ("sigmoid", "tanh"):
        for seed in range(3):
            rows = curve_rows([0.1, 0.6, 0.9 + 0.01 * seed])
            if output == "tanh":
                for row in rows:
                    row.update(ece=None, test_nll=None)
            write_run(root, make_spec(output=output, seed=seed), rows)
    return root, aggregate(root)


def test_null_ece_is_not_applicable_not_zero(grid):
    _, result = grid
    rows = {row["output"]: row for row in result.summary.rows}
    assert math.isnan(rows["tanh"]["ece_mean"]) and math.isnan(rows["tanh"]["test_nll_mean"])
    assert rows["sigmoid"]["ece_mean"] == pytest.approx(0.05)
    assert rows["tanh"]["final_test_acc_mean"] == pytest.approx(0.91)


def test_not_applicable_in_every_output(grid):
    root, result = grid
    summary = root / "summary"
    report = (summary / "report.md").read_text()
    assert "| tanh | 3 | 0.9100 ± 0.0248 |" in report
    tanh_line = next(line for line in report.splitlines() if line.startswith("| tanh |"))
    assert tanh_line.count("n/a") == 2  # NLL and ECE
    csv_rows = {r["output"]: r for r in csv.DictReader(io.StringIO(
        (summary / "summary.csv").read_text()))}
    assert csv_rows["tanh"]["ece_mean"] == "" and csv_rows["tanh"]["test_nll_mean"] == ""
    tanh = next(g for g in json.loads(to_json(result.summary, {}))["groups"]
                if g["output"] == "tanh")
    assert tanh["ece_mean"] is None and tanh["test_nll_ci_low"] is None
    assert "n/a" in (summary / "summary.tex").read_text()


def test_calibration_plot_leaves_them_out_with_a_note(grid):
    root, result = grid
    assert result.rendered.plot_notes == [
        "no target trajectories: no strategy in this grid moved c_i or nc_i",
        "ECE and NLL are not applicable to 1 group(s) (tanh, lecun_tanh or linear outputs are "
        "no probabilities): left out of the calibration plots"]
    report = (root / "summary" / "report.md").read_text()
    assert "](calibration.png)" in report and result.rendered.plot_notes[1] in report
    page = (root / "summary" / "report.html").read_text()
    assert 'id="chart-ece"' in page and result.rendered.plot_notes[1] in page


def test_a_grid_without_any_ece_has_no_calibration_plot(tmp_path):
    for seed in range(2):
        rows = curve_rows([0.1, 0.8])
        for row in rows:
            row.update(ece=None, test_nll=None)
        write_run(tmp_path, make_spec(output="linear", seed=seed), rows)
    result = aggregate(tmp_path)
    assert "calibration" not in result.rendered.plots
    assert not (tmp_path / "summary" / "calibration.png").exists()
    assert "n/a" in to_latex(result.summary, grid="g", command="c")


def test_definitions_say_how_each_metric_is_computed_per_output(grid):
    root, _ = grid
    report = (root / "summary" / "report.md").read_text()
    definitions = report[report.index("## Definitions"):report.index("## Statistics")]
    for phrase in ("10 equal-width bins", "one-vs-rest", "N*K", "1[y_i = k]",
                   "sum over classes of the binary log loss", "max_k cos(o, T_k)",
                   "largest minus the second-largest output", "tanh, lecun_tanh, linear",
                   "not applicable (n/a)", "never divided by their sum"):
        assert phrase in definitions, phrase
    statistics = report[report.index("## Statistics"):]
    for phrase in ("scipy.stats.ttest_rel", "scipy.stats.ttest_ind, equal_var=False",
                   'multipletests, method="holm"'):
        assert phrase in statistics, phrase
