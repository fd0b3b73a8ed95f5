"""`tvo aggregate` through the CLI: output formats, files, plots, exact errors and exit codes."""

from __future__ import annotations

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from runner.cli.app import app
from runner.report.load import load_grid
from runner.report.plots import make_figures
from runner.report.summary import summarise
from tests.test_aggregate import FIXED, MOVING, build_grid

runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIXED_CANONICAL = "fixed(c=0.9, nc=0.1, normalize=false)"


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """A partial grid, aggregated once with plots (the slow part) for the tests that read it."""
    root = build_grid(tmp_path_factory.mktemp("grid"), partial=True)
    result = runner.invoke(app, ["aggregate", str(root)])
    assert result.exit_code == 0, result.output
    return root, result


def test_table_output_names_groups_best_first_and_what_is_missing(grid):
    root, result = grid
    out = result.stdout
    assert out.index("fixed") < out.index("onehot") and "normalize" not in out  # short labels
    assert "10 jobs: 6 done, 1 diverged, 1 failed, 1 running, 1 pending" in out
    assert "failed " in out and "RuntimeError: out of memory" in out
    assert f"wrote {root / 'summary'}/: metrics.parquet, summary.parquet, summary.csv" in out


def test_files_written_with_report_plots_and_command(grid):
    root, _ = grid
    summary = root / "summary"
    figures = ("test_acc", "train_loss", "final_acc", "calibration")  # no target moves
    names = {"metrics.parquet", "summary.parquet", "summary.csv", "summary.tex", "report.md",
             "report.html",
             *(f"{name}.{fmt}" for name in figures for fmt in ("png", "svg"))}
    assert {p.name for p in summary.iterdir()} == names  # no temporary files left
    for png in summary.glob("*.png"):
        assert png.read_bytes()[:8] == PNG_MAGIC
    for svg in summary.glob("*.svg"):
        assert b"<svg" in svg.read_bytes()[:1000]
    report = (summary / "report.md").read_text()
    assert report.startswith("# Results of grid fake\n\nMade by `tvo aggregate "
                             f"{root} --threshold 0.9` on ")
    for name in figures:
        assert f"]({name}.png)" in report
    assert ("| strategy | seeds | final acc ± 95% CI | IQM [95% CI] | Δ acc vs baseline [95% "
            "CI] | p |") in report
    import pyarrow.parquet as pq

    table = pq.read_table(summary / "summary.parquet")
    assert table.num_rows == 2 and table.schema.metadata[b"tvo.schema"] == b"summary"
    assert table.column("strategy").to_pylist() == [FIXED_CANONICAL, "onehot"]


def test_curve_plots_have_one_line_per_group_and_targets_only_where_they_move(tmp_path):
    from tests.fake_grid import curve_rows, make_spec, write_run

    build_grid(tmp_path, partial=True)
    moving = make_spec(strategy="tvo(adapt=sigma)", seed=0)
    write_run(tmp_path, moving, curve_rows([0.1, 0.5, 0.8, 0.9], targets=MOVING))
    data = load_grid(tmp_path)
    summary = summarise(data)
    from runner.report.plot_data import read_plot_data
    from runner.report.plots import plot_notes

    plot_data = read_plot_data(data, summary.groups)
    figures, notes = make_figures(summary, plot_data), plot_notes(summary, plot_data)
    for name in ("test_acc", "train_loss"):
        [axes] = figures[name].axes  # one facet: only the strategy differs
        colors = [line.get_color() for line in axes.get_lines()]
        assert len(colors) == 3 and len(set(colors)) == 3
        legend = figures[name].legends[0]
        assert [t.get_text() for t in legend.get_texts()] == ["onehot", "fixed", "tvo"]
        if name == "test_acc":  # onehot: mean of its three done seeds per epoch
            onehot_color = legend.legend_handles[0].get_color()
            onehot = next(line for line in axes.get_lines() if line.get_color() == onehot_color)
            assert list(onehot.get_ydata()) == pytest.approx([0.4 / 3, 1.8 / 3, 2.71 / 3,
                                                              2.76 / 3])
    [panel] = figures["targets"].axes  # onehot and fixed never move: no panel for them
    assert panel.get_title() == "tvo (raw c_i, nc_i)"  # fake runs record no target tables
    assert len(panel.get_lines()) == 20  # c_i and nc_i of 10 classes
    assert list(panel.get_lines()[0].get_ydata()) == pytest.approx([0.9, 0.8, 0.7, 0.75])
    legend = [t.get_text() for t in figures["targets"].legends[0].get_texts()]
    assert legend == [f"class {i}" for i in range(10)] + ["class value (T_ii)",
                                                           "non-class value (mean T_ij)"]
    assert notes == []


def test_csv_output_parses(grid):
    root, _ = grid
    result = runner.invoke(app, ["aggregate", str(root), "--format", "csv", "--no-plots"])
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["strategy"] for r in rows] == [FIXED_CANONICAL, "onehot"]
    assert float(rows[1]["final_test_acc_mean"]) == pytest.approx(0.92)
    assert rows[1]["failed"] == "1" and rows[0]["baseline"] == "strategy=onehot"
    assert rows[1]["p_value"] == ""  # the baseline has no p-value
    assert result.stdout == (root / "summary" / "summary.csv").read_text()
    assert "10 jobs: 6 done" in result.stderr  # notes do not spoil the data


def test_json_output_parses(grid):
    root, _ = grid
    result = runner.invoke(app, ["aggregate", str(root), "--format", "json", "--no-plots",
                                 "--threshold", "0.95"])
    assert result.exit_code == 0
    content = json.loads(result.stdout)
    assert content["grid"] == "fake" and content["threshold"] == 0.95
    assert content["group_by"] == ["strategy"] and content["baseline"] == "strategy=onehot"
    assert content["jobs"] == {"done": 6, "failed": 1, "diverged": 1, "running": 1,
                               "pending": 1}
    fixed, onehot = content["groups"]
    assert fixed["significant"] is True and onehot["p_value"] is None
    assert fixed["test"] == "paired t" and fixed["label"] == "fixed"
    assert onehot["threshold_reached"] == 1 and onehot["threshold_never"] == 2


def test_markdown_output_is_a_table(grid):
    root, _ = grid
    result = runner.invoke(app, ["aggregate", str(root), "--format", "markdown", "--no-plots"])
    assert result.exit_code == 0
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("| ") for line in lines[:1] + lines[2:])
    assert lines[1] == "|" + "---|" * 15
    # the IQM of 3 seeds is their mean (a quarter of 3 runs is no run to trim)
    assert lines[2].startswith("| fixed | 3 | 0.9600 ± 0.0248 | 0.9600 [")
    assert "| +0.0400 [" in lines[2]
    assert lines[3].startswith("| onehot | 3/7 | 0.9200 ± 0.0497 | 0.9200 [")
    assert "| baseline | — |" in lines[3]


def test_no_plots_keeps_earlier_plots(grid):
    root, _ = grid
    assert runner.invoke(app, ["aggregate", str(root), "--no-plots"]).exit_code == 0
    assert (root / "summary" / "test_acc.png").exists()
    assert "Plots were not made this time (--no-plots)" in (
        root / "summary" / "report.md").read_text()


def test_train_output_dir_aggregates(tmp_path):
    from tests.fake_grid import curve_rows, make_spec, write_run

    write_run(tmp_path / "train", make_spec(), curve_rows([0.1, 0.5]), grid="train")
    result = runner.invoke(app, ["aggregate", str(tmp_path / "train"), "--no-plots"])
    assert result.exit_code == 0, result.output
    assert "1 job: 1 done" in result.stdout and "all jobs" in result.stdout


def test_by_nothing_makes_one_group(grid):
    root, _ = grid
    result = runner.invoke(app, ["aggregate", str(root), "--by", "", "--format", "json",
                                 "--no-plots"])
    assert result.exit_code == 0
    [group] = json.loads(result.stdout)["groups"]
    assert (group["group"], group["jobs"], group["runs"], group["seeds"]) == (
        "all jobs", 10, 6, 3)  # seeds 0-2 of each strategy


def error_of(args: list[str]) -> tuple[int, str]:
    result = runner.invoke(app, ["aggregate", *args])
    return result.exit_code, result.stderr


def test_empty_or_missing_dir_is_a_one_line_error(tmp_path):
    assert error_of([str(tmp_path)]) == (2, (
        f"Error: {tmp_path} is not a tvo output dir: no results under it (pass the folder that "
        "tvo run or tvo train wrote, e.g. outputs/<grid name>)\n"))
    missing = tmp_path / "nope"
    assert error_of([str(missing)]) == (2, (
        f"Error: {missing} does not exist or is not a folder; pass the output dir of a grid, "
        "e.g. outputs/<grid name>\n"))
    assert not (tmp_path / "summary").exists()


def test_bad_options_are_one_line_errors_and_write_nothing(tmp_path):
    root = build_grid(tmp_path)
    assert error_of([str(root), "--by", "strategy,colour"])[1].startswith(
        "Error: --by got unknown setting 'colour'; valid: dataset, normalize, noise, val_fraction,")
    assert error_of([str(root), "--baseline", "lr=0.1"]) == (2, (
        "Error: --baseline key 'lr' is not a grouping setting; the groups differ in: strategy "
        "(choose the grouping with --by)\n"))
    assert error_of([str(root), "--baseline", "strategy=fixed(c=0.7, nc=0.3)"]) == (2, (
        "Error: --baseline strategy=fixed(c=0.7, nc=0.3, normalize=false) matches no group; "
        f"strategy takes: {FIXED_CANONICAL}, onehot\n"))
    assert error_of([str(root), "--baseline", "onehot"]) == (2, (
        "Error: --baseline got 'onehot'; expected KEY=VALUE, e.g. strategy=onehot\n"))
    assert error_of([str(root), "--threshold", "90"]) == (2, (
        "Error: --threshold must be an accuracy in (0, 1], got 90\n"))
    assert not (root / "summary").exists()
    code, message = error_of([str(root), "--format", "xml"])
    assert code == 2 and "Invalid value for '--format'" in message


def test_failed_call_leaves_the_earlier_summary_untouched(tmp_path):
    root = build_grid(tmp_path)
    assert runner.invoke(app, ["aggregate", str(root), "--no-plots"]).exit_code == 0
    before = {p.name: p.read_bytes() for p in (root / "summary").iterdir()}
    broken = sorted((root / "results").iterdir())[0]
    broken.write_bytes(b"garbage")
    code, message = error_of([str(root), "--no-plots"])
    assert code == 2 and message.startswith(f"Error: {broken} is not a readable results file")
    assert {p.name: p.read_bytes() for p in (root / "summary").iterdir()} == before


def test_aggregate_is_in_the_help():
    result = runner.invoke(app, ["aggregate", "--help"])
    assert result.exit_code == 0
    assert "Example: tvo aggregate outputs/quickstart" in result.stdout
    assert FIXED  # the grid fixture's strategy, kept importable for the other tests


def test_aggregate_runs_without_importing_torch(grid):
    """torch's import costs about a second; nothing `tvo aggregate` does needs it."""
    import subprocess
    import sys

    root, _ = grid
    script = ("import sys; from typer.testing import CliRunner; from runner.cli.app import app; "
              f"result = CliRunner().invoke(app, ['aggregate', {str(root)!r}, '--no-plots', "
              "'--format', 'csv']); assert result.exit_code == 0, result.output; "
              "print('torch' in sys.modules)")
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           check=True).stdout
    assert shown.strip() == "False"


def test_figures_are_drawn_again_only_when_what_they_show_changed(tmp_path):
    from tests.fake_grid import curve_rows, make_spec, write_run

    root = build_grid(tmp_path)
    first = runner.invoke(app, ["aggregate", str(root)])
    assert first.exit_code == 0 and "plots unchanged" not in first.stdout
    png = root / "summary" / "test_acc.png"
    drawn = png.stat().st_mtime_ns
    assert runner.invoke(app, ["aggregate", str(root), "--no-plots"]).exit_code == 0
    again = runner.invoke(app, ["aggregate", str(root), "--format", "latex"])
    assert again.exit_code == 0
    assert ("plots unchanged since they were drawn: kept test_acc, train_loss, final_acc, "
            "calibration (PNG and SVG)") in again.stderr
    assert png.stat().st_mtime_ns == drawn
    assert "](test_acc.png)" in (root / "summary" / "report.md").read_text()
    write_run(root, make_spec(strategy="onehot", seed=9), curve_rows([0.1, 0.2, 0.3, 0.5]))
    changed = runner.invoke(app, ["aggregate", str(root)])
    assert changed.exit_code == 0 and "plots unchanged" not in changed.stdout
    assert png.stat().st_mtime_ns != drawn


def test_figure_workers_import_neither_torch_nor_the_data_libraries():
    """A figure worker needs numpy and matplotlib only: polars, pyarrow and scipy would cost
    each worker most of a second (render_worker, model)."""
    import subprocess
    import sys

    script = ("import sys; import runner.report.render_worker, runner.report.figures, "
              "runner.report.plots; print(sorted(m for m in ('torch', 'polars', 'pyarrow', "
              "'scipy', 'pandas') if m in sys.modules))")
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           check=True).stdout
    assert shown.strip() == "[]"
