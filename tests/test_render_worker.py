"""The figure worker: its files are those drawn in one process, the curve plots sent ahead
included; a drawing that fails is an error naming the cause; shares of about equal cost."""

from __future__ import annotations

import dataclasses

import pytest

from runner.report.load import load_grid
from runner.report.plot_data import read_curves, read_plot_data
from runner.report.plots import figure_names
from runner.report.render_worker import FigureWorkers, draw_share, split
from runner.report.summary import summarise
from tests.fake_grid import curve_rows, make_spec, write_run
from tests.test_aggregate import MOVING, build_grid


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """A grid with moving targets (all five figures), its summary, plot data and the files
    drawn here, in one process."""
    root = tmp_path_factory.mktemp("grid")
    build_grid(root, partial=True)
    write_run(root, make_spec(strategy="tvo(adapt=sigma)", seed=0),
              curve_rows([0.1, 0.5, 0.8, 0.9], targets=MOVING))
    data = load_grid(root)
    summary = summarise(data)
    plot_data = read_plot_data(data, summary.groups)
    names = figure_names(summary, plot_data)
    assert names == ["test_acc", "train_loss", "targets", "final_acc", "calibration"]
    return data, summary, plot_data, draw_share(summary, plot_data, names)


def _svg_without_date(files: dict[str, bytes]) -> dict[str, bytes]:
    return {name: b"\n".join(line for line in content.splitlines() if b"<dc:date>" not in line)
            for name, content in files.items()}


@pytest.mark.parametrize("ahead", [False, True], ids=["all at once", "curves ahead"])
def test_the_worker_draws_the_files_one_process_draws(drawn, ahead):
    data, summary, plot_data, expected = drawn
    workers = FigureWorkers()
    try:
        if ahead:  # as the pipeline sends them: in the summary's order, before the statistics
            workers.draw_curves(summary.labels, read_curves(data, summary.groups))
        workers.draw(summary, plot_data)
        files = workers.files()
    finally:
        workers.close()
    assert sorted(files) == sorted(expected)
    assert _svg_without_date(files) == _svg_without_date(expected)


@pytest.mark.parametrize("where", ["worker", "fork"])
def test_a_drawing_that_fails_is_an_error_with_its_cause(drawn, where):
    """The worker draws test_acc and calibration, its fork train_loss and final_acc (split)."""
    _, summary, plot_data, _ = drawn
    broken = "test_acc" if where == "worker" else "train_loss"
    plot_data = dataclasses.replace(plot_data, trajectories=[],
                                    curves={**plot_data.curves, broken: ["not a curve"]})
    workers = FigureWorkers()
    try:
        workers.draw(summary, plot_data)
        cause = "AttributeError: 'str' object has no attribute 'group'"
        if where == "fork":
            cause = f"RuntimeError: a forked figure process failed: {cause}"
        with pytest.raises(RuntimeError, match=f"drawing the figures failed: {cause}"):
            workers.files()
    finally:
        workers.close()


def test_figures_are_split_into_shares_of_about_equal_cost():
    assert split(["test_acc", "train_loss", "final_acc", "calibration"]) == [
        ["test_acc", "calibration"], ["train_loss", "final_acc"]]
    assert split(["test_acc", "train_loss", "targets", "final_acc", "calibration"]) == [
        ["targets", "calibration"], ["test_acc", "train_loss", "final_acc"]]
    assert split(["final_acc"]) == [["final_acc"], []]
    assert split([]) == [[], []]
