"""Every figure of tvo aggregate stays readable at 4, 14 and 40 groups: no text overlaps another
and none runs off the figure (RESEARCH.md sec. 12: text extents after a draw), facets come
sorted by value, and every panel has its tick labels."""

from __future__ import annotations

import itertools

import pytest
from matplotlib.text import Text

from runner.report.load import load_grid
from runner.report.model import TuningPanel
from runner.report.plot_data import read_plot_data
from runner.report.plots import all_figures, make_figures
from runner.report.summary import summarise
from runner.report.tables import done_ids, per_job_measures
from runner.report.tasks import across_tasks
from runner.report.tuning import tuning_curve
from tests.fake_grid import write_sized_grid

TOLERANCE = 0.5  # pixels: boxes that merely touch are fine
SHAPES = {  # name: (strategies, datasets, learning rates) -> groups; values out of order
    "4 groups: 2 strategies x 2 data sets": (2, ("mnist1d", "digits"), (0.1,)),
    "14 groups: the study's 7 strategies x 2 data sets": (7, ("mnist1d", "digits"), (0.1,)),
    "40 groups: 10 strategies x 2 data sets x 2 lr": (10, ("mnist1d", "digits"), (0.5, 0.1)),
    "40 groups: 40 strategies in one panel": (40, ("digits",), (0.1,)),
}
PROFILED = ("4 groups", "14 groups")  # facets that are tasks (data sets) alone


def drawn_texts(figure, monkeypatch) -> list:
    """The texts a draw actually renders (tick labels outside the view are not), with boxes."""
    drawn = []
    draw = Text.draw

    def recording_draw(text, renderer):
        if text.get_visible() and text.get_text().strip():
            drawn.append(text)
        return draw(text, renderer)

    with monkeypatch.context() as patch:
        patch.setattr(Text, "draw", recording_draw)
        figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    # the text's own box: an annotation's extent would include its leader line
    return [(text.get_text(), Text.get_window_extent(text, renderer)) for text in drawn]


def layout_problems(figure, monkeypatch) -> list[str]:
    texts = drawn_texts(figure, monkeypatch)
    width, height = figure.canvas.get_width_height()
    problems = []
    for text, box in texts:
        if (box.x0 < -TOLERANCE or box.y0 < -TOLERANCE or box.x1 > width + TOLERANCE
                or box.y1 > height + TOLERANCE):
            problems.append(f"{text!r} runs off the figure: {box.bounds} in {width}x{height}")
    for (text_a, a), (text_b, b) in itertools.combinations(texts, 2):
        overlap_x = min(a.x1, b.x1) - max(a.x0, b.x0)
        overlap_y = min(a.y1, b.y1) - max(a.y0, b.y0)
        if overlap_x > TOLERANCE and overlap_y > TOLERANCE:
            problems.append(f"{text_a!r} overlaps {text_b!r}")
    return problems


def with_tuning_and_profiles(data, summary, plot_data):
    """The plot data of a comparison of these groups as methods: a tuning curve each (the same
    4 made-up validation scores) and, where the facets are data sets, performance profiles."""
    import dataclasses

    import numpy as np

    curve = tuning_curve([0.61, 0.72, 0.55, 0.80], [1, 2, 3, 4], bounds=(0.0, 1.0))
    labels = summary.labels
    tuning = [TuningPanel(group.label, labels.hue_label(group.key), labels.facet_label(group.key),
                          *(np.asarray(values) for values in (curve.budgets, curve.expected,
                                                              curve.lower, curve.upper)))
              for group in summary.groups]
    tasks = across_tasks(summary, per_job_measures(data, done_ids(summary.groups), 0.9))
    return dataclasses.replace(plot_data, tuning=tuning, tuning_metric="val_acc",
                               profiles=tasks.profiles if tasks else [],
                               profile_tasks=tasks.described if tasks else "")


@pytest.fixture(scope="module", params=list(SHAPES), ids=lambda name: name.split(":")[0])
def figures(request, tmp_path_factory):
    strategies, datasets, lrs = SHAPES[request.param]
    root = write_sized_grid(tmp_path_factory.mktemp("grid"), strategies=strategies,
                            datasets=datasets, lrs=lrs)
    data = load_grid(root)
    summary = summarise(data)
    assert len(summary.groups) == strategies * len(datasets) * len(lrs)
    plot_data = with_tuning_and_profiles(data, summary,
                                         read_plot_data(data, summary.groups))
    return request.param.split(":")[0], summary, make_figures(summary, plot_data)


def test_every_figure_is_made(figures):
    shape, _, made = figures
    assert set(made) == set(all_figures()) - ({"performance_profile"} if shape not in PROFILED
                                        else set())


def tick_labels(axes, axis: str) -> list[str]:
    ticks = axes.xaxis if axis == "x" else axes.yaxis
    return [label.get_text() for label in ticks.get_ticklabels()
            if label.get_visible() and label.get_text()]


@pytest.mark.parametrize("name", all_figures())
def test_no_text_overlaps_or_is_clipped_and_every_panel_has_tick_labels(figures, name,
                                                                         monkeypatch):
    _, _, made = figures
    if name not in made:
        return
    figure = made[name]
    assert layout_problems(figure, monkeypatch) == []  # (this draws the figure)
    for axes in figure.axes:
        assert tick_labels(axes, "x"), f"{name}: a panel without x tick labels"
        first_column = axes.get_subplotspec().is_first_col()
        if name != "final_acc" or first_column:  # dot rows: the names once, at the left
            assert tick_labels(axes, "y"), f"{name}: a panel without y tick labels"


def panel_titles(figure) -> list[str]:
    """Panel titles in reading order (top row first, left to right)."""
    panels = [axes for axes in figure.axes if axes.get_title()]
    panels.sort(key=lambda axes: (-axes.get_position().y0, axes.get_position().x0))
    return [axes.get_title().replace("\n", " ") for axes in panels]


@pytest.mark.parametrize("name", ["test_acc", "train_loss", "final_acc", "calibration"])
def test_facets_come_sorted_by_value(figures, name):
    _, summary, made = figures
    titles = panel_titles(made[name])
    facets = summary.labels.facet_order
    assert titles == list(facets) or facets == ("",)
    # data sets by name, learning rates by size: grids wrote them in the other order
    assert titles == sorted(titles, key=lambda title: [
        (part.split("=")[0], float(part.split("=")[1]) if part.startswith("lr=")
         else part.split("=")[1]) for part in title.split("; ")]) or facets == ("",)


def test_the_check_sees_overlaps_and_clipping(monkeypatch):
    """The check itself: a label drawn over another and one off the edge are both caught."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4, 3))
    FigureCanvasAgg(figure)
    figure.text(0.5, 0.5, "one label")
    figure.text(0.52, 0.5, "another label")
    figure.text(0.95, 0.1, "cut off at the right edge")
    problems = layout_problems(figure, monkeypatch)
    assert "'one label' overlaps 'another label'" in problems
    assert any(p.startswith("'cut off at the right edge' runs off the figure") for p in problems)
