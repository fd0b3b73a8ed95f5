"""What `tvo aggregate` reports of a comparison grid: stages never pooled, selection and ties on
validation shown in every output, answer first; and, for every grid, pairs of runs that agree on
every other setting, identical groups counted once, --by/--baseline in folders of their own."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import pytest
from scipy import stats as scipy_stats
from typer.testing import CliRunner

from runner.cli.app import app
from runner.grid.protocol import select
from runner.report.pipeline import aggregate
from tests.fake_grid import curve_rows, make_spec, write_compared_grid, write_run
from tests.test_aggregate_html import browser  # noqa: F401 (the headless Chromium fixture)

runner = CliRunner()
FIXED = "fixed(c=0.9, nc=0.1)"
# per method, its 4 configurations' (val_acc, val_loss, test_acc) in draw order
DISAGREE = {
    # validation picks configuration 0, whose tuning run (seed 0) has a test accuracy far
    # above the final seeds': pooled, it would lift the method's mean
    "onehot": [(0.90, 0.2, 0.99), (0.80, 0.2, 0.50), (0.70, 0.2, 0.50), (0.60, 0.2, 0.50)],
    # validation picks configuration 1; test would have picked configuration 0
    "fixed": [(0.60, 0.2, 0.99), (0.95, 0.2, 0.60), (0.70, 0.2, 0.50), (0.70, 0.2, 0.50)],
}
FINALS = {"onehot": [0.80, 0.82, 0.84, 0.86], "fixed": [0.84, 0.85, 0.86, 0.88]}


def row_of(summary, method: str) -> dict:
    return next(row for row in summary.rows if row["label"] == method)


@pytest.fixture(scope="module")
def disagreeing(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    grid = write_compared_grid(root, DISAGREE, FINALS)
    return root, grid, aggregate(root, plots=False)


def test_final_runs_alone_make_the_results_and_the_comparison(disagreeing):
    _, _, result = disagreeing
    summary = result.summary
    assert summary.keys == ["strategy"]  # the selected lr comes with its method
    onehot, fixed = row_of(summary, "onehot"), row_of(summary, "fixed")
    assert (onehot["runs"], onehot["seeds"]) == (4, 4)
    assert onehot["final_test_acc_mean"] == pytest.approx(0.83)  # pooled: (0.83 * 4 + .99) / 5
    # paired over the 4 final seeds, though the two methods' lr differ
    assert fixed["test"] == "paired t" and fixed["pairs"] == 4
    expected = scipy_stats.ttest_rel(FINALS["fixed"], FINALS["onehot"]).pvalue
    assert fixed["p_value"] == pytest.approx(expected)
    assert result.contents.stages == {"tuning": 8, "final": 8, "outside the protocol": 0}


def test_selection_is_on_validation_and_tuning_runs_are_ranked_by_it(disagreeing):
    root, grid, result = disagreeing
    from runner.report.selection import tuning_cells

    protocol = result.contents.protocol
    [onehot, fixed] = [item.method.selection for item in protocol.chosen]
    draws = [item.settings["lr"] for item in fixed.scored]
    assert fixed.settings == {"lr": draws[1]}  # validation's choice, not test's (draw 0)
    headers, cells = tuning_cells(protocol)
    assert "test_acc" not in " ".join(headers)  # never ranked on, nor shown with, test
    fixed_rows = [row for row in cells if row[0] == "fixed"]
    assert [row[3] for row in fixed_rows] == ["0.9500", "0.7000", "0.7000", "0.6000"]
    assert fixed_rows[0][5] == "selected"
    report = (root / "summary" / "report.md").read_text()
    assert report.index("## Selection") < report.index("## Final seeds") < report.index(
        "## Tuning curves") < report.index("## Verdicts") < report.index(
        "## Results of the final runs") < report.index("## Tuning stage")


def test_final_seeds_of_an_earlier_selection_are_outside_the_protocol(tmp_path):
    """A rule that selects otherwise (say, a tie broken another way) leaves the final seeds of
    the configuration chosen before in the dir: they are reported as outside, never pooled."""
    from runner.grid.protocol import stage_two

    grid = write_compared_grid(tmp_path, DISAGREE, FINALS)
    [onehot, _] = select(tmp_path, grid.base, grid.sweeps, grid.compare)
    earlier = dataclasses.replace(onehot, settings={"lr": onehot.scored[3].settings["lr"]})
    for spec in stage_two([earlier], grid.compare):
        write_run(tmp_path, spec, curve_rows([0.1, 0.2, 0.30]), grid="fakecmp")
    result = aggregate(tmp_path, plots=False)
    assert result.contents.stages == {"tuning": 8, "final": 8, "outside the protocol": 4}
    assert row_of(result.summary, "onehot")["final_test_acc_mean"] == pytest.approx(0.83)
    note = ("4 job(s) in this dir are in neither stage (e.g. the final seeds of an earlier "
            "selection, or jobs of another grid): left out of every table")
    assert note in result.contents.protocol.notes
    assert note in (tmp_path / "summary" / "report.md").read_text()


TIED = {
    # three configurations tie on val_acc 0.9; the lowest val_loss (draw 1) breaks the tie
    "onehot": [(0.90, 0.30, 0.95), (0.90, 0.10, 0.90), (0.80, 0.05, 0.99), (0.90, 0.20, 0.97)],
    "fixed": [(0.70, 0.2, 0.9), (0.95, 0.2, 0.9), (0.60, 0.2, 0.9), (0.50, 0.2, 0.9)],
}


def test_a_tie_is_broken_by_validation_loss_and_shown_in_every_output(tmp_path):
    grid = write_compared_grid(tmp_path, TIED, FINALS)
    result = runner.invoke(app, ["aggregate", str(tmp_path), "--no-plots"])
    assert result.exit_code == 0, result.output
    [onehot, _] = select(tmp_path, grid.base, grid.sweeps, grid.compare)  # as `tvo run` does
    assert len(onehot.tied) == 3 and onehot.settings == {"lr": onehot.scored[1].settings["lr"]}
    assert onehot.tie_break == "lowest val_loss (0.1)"
    lr = f"{onehot.settings['lr']:.3g}"
    shown = f"3 tied at 0.9000: lr={lr} (0.1000)"
    summary = tmp_path / "summary"
    for text in (result.stdout, (summary / "report.md").read_text(),
                 (summary / "report.html").read_text(),
                 (summary / "summary.tex").read_text().replace("\\_", "_")):
        assert shown in text and "broken by the lowest val_loss" in text
    [row, _] = csv.DictReader((summary / "selection.csv").open())
    assert (row["tied_configurations"], row["tie_broken_by"]) == ("3", "lowest val_loss (0.1)")
    assert float(row["selected_lr"]) == onehot.settings["lr"]


def quickstart_like(root: Path, finals: dict[tuple[str, float], list[float]]) -> Path:
    for (strategy, lr), accuracies in finals.items():
        for seed, final in enumerate(accuracies):
            write_run(root, make_spec(strategy=strategy, lr=lr, seed=seed),
                      curve_rows([0.1, 0.5, final]))
    return root


def test_runs_pair_on_every_other_setting_when_groups_pool_a_second_one(tmp_path):
    finals = {("onehot", 0.5): [0.70, 0.72, 0.74], ("onehot", 2.0): [0.90, 0.91, 0.93],
              (FIXED, 0.5): [0.80, 0.81, 0.85], (FIXED, 2.0): [0.89, 0.93, 0.92]}
    result = aggregate(quickstart_like(tmp_path, finals), by=["strategy"],
                       baseline=f"strategy={FIXED}", plots=False)
    onehot = row_of(result.summary, "onehot")
    assert (onehot["runs"], onehot["seeds"], onehot["pairs"]) == (6, 3, 6)
    ours = finals[("onehot", 0.5)] + finals[("onehot", 2.0)]
    theirs = finals[(FIXED, 0.5)] + finals[(FIXED, 2.0)]  # seed and lr alike, pair by pair
    assert onehot["diff_final_test_acc"] == pytest.approx(
        sum(a - b for a, b in zip(ours, theirs, strict=True)) / 6)
    assert onehot["p_value"] == pytest.approx(scipy_stats.ttest_rel(ours, theirs).pvalue)
    assert onehot["p_improvement"] == pytest.approx(2 / 6)  # wins 2 of the 6 pairs
    assert result.summary_dir == tmp_path / "summary" / (
        "by-strategy_vs-strategy=fixed-c=0.9-nc=0.1-normalize=false")


def test_groups_of_different_settings_with_no_pairs_are_not_compared(tmp_path):
    finals = {("onehot", 0.5): [0.70, 0.72, 0.74], (FIXED, 2.0): [0.89, 0.93, 0.92]}
    result = aggregate(quickstart_like(tmp_path, finals), by=["strategy"], plots=False)
    fixed = row_of(result.summary, "fixed")
    assert fixed["test"] is None and math.isnan(fixed["p_value"])
    assert fixed["test_note"].startswith("not compared: the two groups hold runs of different "
                                         "settings")
    report = (tmp_path / "summary" / "by-strategy" / "report.md").read_text()
    assert fixed["test_note"] in report


def test_by_and_baseline_never_overwrite_the_default_summary(tmp_path):
    finals = {("onehot", 0.5): [0.70, 0.72, 0.74], (FIXED, 0.5): [0.80, 0.81, 0.85]}
    quickstart_like(tmp_path, finals)
    aggregate(tmp_path, plots=False)
    default = {path.name: path.read_bytes() for path in (tmp_path / "summary").iterdir()
               if path.is_file() and path.name != "metrics.parquet"}
    result = runner.invoke(app, ["aggregate", str(tmp_path), "--no-plots", "--baseline",
                                 f"strategy={FIXED}"])
    assert result.exit_code == 0, result.output
    variant = tmp_path / "summary" / "vs-strategy=fixed-c=0.9-nc=0.1-normalize=false"
    assert f"wrote {variant}/" in result.stdout and (variant / "report.md").is_file()
    assert {path.name: path.read_bytes() for path in (tmp_path / "summary").iterdir()
            if path.is_file() and path.name != "metrics.parquet"} == default


def test_bit_identical_groups_are_found_counted_once_and_drawn_once(tmp_path):
    finals = {"onehot": [0.80, 0.81, 0.83], "tvo(adapt=none)": [0.85, 0.86, 0.90],
              "tvo(adapt=sigma)": [0.85, 0.86, 0.90], FIXED: [0.84, 0.84, 0.86]}
    for strategy, accuracies in finals.items():
        for seed, final in enumerate(accuracies):
            write_run(tmp_path, make_spec(strategy=strategy, seed=seed),
                      curve_rows([0.1, 0.5, final]))
    result = aggregate(tmp_path)
    summary = result.summary
    copies = [row for row in summary.rows if row["identical_to"] is not None]
    assert len(copies) == 1 and len(summary.identical) == 1
    copy = copies[0]
    first = next(row for row in summary.rows if row["group"] == copy["identical_to"])
    assert {first["label"], copy["label"]} == {"tvo(adapt=none)", "tvo(adapt=sigma)"}
    assert copy["p_holm"] == first["p_holm"]
    # Holm over 2 distinct comparisons (fixed, and the tvo pair once), not 3
    from statsmodels.stats.multitest import multipletests

    fixed = row_of(summary, "fixed")
    adjusted = multipletests([fixed["p_value"], first["p_value"]], method="holm")[1]
    assert [fixed["p_holm"], first["p_holm"]] == pytest.approx(list(adjusted))
    drawn = {group.name for group in result.plot_data.groups}
    assert copy["group"] not in drawn and first["group"] in drawn
    assert any(" = " in name for name in summary.labels.aliases.values())
    assert summary.identical[0] in (tmp_path / "summary" / "report.md").read_text()


@pytest.fixture(scope="module")
def compared_page(tmp_path_factory, browser):  # noqa: F811 (the imported fixture)
    root = tmp_path_factory.mktemp("page")
    write_compared_grid(root, TIED, FINALS)
    aggregate(root)
    browser.get((root / "summary" / "report.html").as_uri())
    return browser


def test_report_html_shows_the_selection_and_the_tuning_curves_first(compared_page):
    from selenium.webdriver.common.by import By

    page = compared_page
    assert page.get_log("browser") == []
    headings = [h.text for h in page.find_elements(By.TAG_NAME, "h2")]
    assert headings[:5] == ["Selection (stage 1: tuning, on validation)",
                            "Final seeds (stage 2): the comparison", "Tuning curves",
                            "Verdicts", "Results of the final runs"]
    rows = page.find_elements(By.CSS_SELECTOR, "#selection tbody tr")
    assert [row.find_elements(By.TAG_NAME, "td")[0].text for row in rows] == ["onehot",
                                                                              "fixed"]
    assert "3 tied at 0.9000" in rows[0].text and "lowest val_loss" in rows[0].text
    answer = page.find_elements(By.CSS_SELECTOR, "#answer tbody tr")
    assert answer[1].text.startswith("fixed 4 0.8575 [")
    for chart in ("tuning_curves", "test_acc", "final_acc"):
        traces = page.execute_script(
            f"return document.querySelectorAll('#chart-{chart} .main-svg .trace').length")
        assert traces > 0, chart
    panels = page.execute_script(  # one panel per method, its band filled
        "return document.getElementById('chart-tuning_curves').data"
        ".filter(t => t.fill === 'toself').length")
    assert panels == 2
