"""ECE and NLL that do not apply (tanh, lecun_tanh and linear outputs write null): shown as n/a,
never as 0, left out of the calibration plot with a note, and defined in the report."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest

from runner.report.formats import to_json
from runner.report.latex import results_table
from runner.report.load import load_grid
from runner.report.pipeline import aggregate
from runner.report.plot_data import read_plot_data
from runner.report.summary import summarise
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
                    row.update(ece=None, test_nll=None, reliability=None)
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
    assert 'id="chart-calibration"' in page and result.rendered.plot_notes[1] in page


def test_a_grid_without_any_ece_has_no_calibration_plot(tmp_path):
    for seed in range(2):
        rows = curve_rows([0.1, 0.8])
        for row in rows:
            row.update(ece=None, test_nll=None, reliability=None)
        write_run(tmp_path, make_spec(output="linear", seed=seed), rows)
    result = aggregate(tmp_path)
    assert "calibration" not in result.rendered.plots
    assert not (tmp_path / "summary" / "calibration.png").exists()
    assert "n/a" in results_table(result.summary, grid="g", command="c")


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


def test_reliability_bins_are_pooled_over_seeds_at_the_final_epoch(tmp_path):
    """Counts add up; mean confidence and accuracy are weighted by the counts; a bin empty in
    every seed is NaN (not drawn); an earlier epoch's bins are not used."""
    empty = [[0.0, 0.0, 0.0]] * 10
    seeds = [{5: [2.0, 0.55, 0.5], 9: [2.0, 0.95, 1.0]}, {5: [6.0, 0.51, 1.0]}]
    for seed, filled in enumerate(seeds):
        final = [filled.get(b, [0.0, 0.0, 0.0]) for b in range(10)]
        rows = curve_rows([0.1, 0.6, 0.9])
        for row in rows:
            row["reliability"] = empty
        rows[-1]["reliability"] = final
        write_run(tmp_path, make_spec(seed=seed), rows)
    data = load_grid(tmp_path)
    summary = summarise(data)
    [pooled] = read_plot_data(data, summary.groups).reliability
    assert pooled.count.tolist() == [0, 0, 0, 0, 0, 8, 0, 0, 0, 2]
    assert pooled.confidence[5] == pytest.approx((2 * 0.55 + 6 * 0.51) / 8)
    assert pooled.accuracy[5] == pytest.approx((2 * 0.5 + 6 * 1.0) / 8)
    assert (pooled.confidence[9], pooled.accuracy[9]) == pytest.approx((0.95, 1.0))
    assert np.isnan(pooled.accuracy[0]) and np.isnan(pooled.confidence[8])


def test_metrics_without_reliability_bins_aggregate_with_a_note(tmp_path):
    """Metrics files from before the column (it reads as null): those groups are left out of
    the reliability diagrams with a note; with none left, there is no calibration plot."""
    def old_rows():
        rows = curve_rows([0.1, 0.8])
        for row in rows:
            del row["reliability"]
        return rows

    mixed, old = tmp_path / "mixed", tmp_path / "old"
    for seed in range(2):
        write_run(mixed, make_spec(seed=seed, lr=0.1), old_rows())
        write_run(mixed, make_spec(seed=seed, lr=0.5), curve_rows([0.1, 0.8]))
        write_run(old, make_spec(seed=seed), old_rows())
    note = ("1 group(s) with an ECE have no reliability bins (metrics written before tvo "
            "recorded them): left out of the calibration plots")
    result = aggregate(mixed)
    assert result.rendered.plots[-1] == "calibration" and note in result.rendered.plot_notes
    assert note in (mixed / "summary" / "report.md").read_text()
    result = aggregate(old)
    assert "calibration" not in result.rendered.plots and note in result.rendered.plot_notes
    assert not (old / "summary" / "calibration.png").exists()
