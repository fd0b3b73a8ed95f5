"""Every figure of tvo aggregate stays readable at 4, 14 and 40 groups: no text overlaps another
and none runs off the figure (RESEARCH.md sec. 12: text extents after a draw)."""

from __future__ import annotations

import itertools

import pytest
from matplotlib.text import Text

from runner.report.load import load_grid
from runner.report.plot_data import read_plot_data
from runner.report.plots import make_figures
from runner.report.summary import summarise
from tests.fake_grid import write_sized_grid

TOLERANCE = 0.5  # pixels: boxes that merely touch are fine
SHAPES = {  # name: (strategies, datasets, learning rates) -> groups
    "4 groups: 2 strategies x 2 data sets": (2, ("digits", "mnist1d"), (0.1,)),
    "14 groups: the study's 7 strategies x 2 data sets": (7, ("digits", "mnist1d"), (0.1,)),
    "40 groups: 10 strategies x 2 data sets x 2 lr": (10, ("digits", "mnist1d"), (0.1, 0.5)),
    "40 groups: 40 strategies in one panel": (40, ("digits",), (0.1,)),
}


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


@pytest.fixture(scope="module", params=list(SHAPES), ids=lambda name: name.split(":")[0])
def figures(request, tmp_path_factory):
    strategies, datasets, lrs = SHAPES[request.param]
    root = write_sized_grid(tmp_path_factory.mktemp("grid"), strategies=strategies,
                            datasets=datasets, lrs=lrs)
    data = load_grid(root)
    summary = summarise(data)
    assert len(summary.groups) == strategies * len(datasets) * len(lrs)
    return make_figures(summary, read_plot_data(data, summary.groups))


def test_every_figure_is_made(figures):
    assert set(figures) == {"test_acc", "train_loss", "targets", "final_acc", "calibration"}


@pytest.mark.parametrize("name", ["test_acc", "train_loss", "targets", "final_acc",
                                  "calibration"])
def test_no_text_overlaps_or_is_clipped(figures, name, monkeypatch):
    assert layout_problems(figures[name], monkeypatch) == []


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
