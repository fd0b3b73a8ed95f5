"""One look per compared value, shared by the PNG/SVG figures and the HTML report, so a strategy
looks the same in every plot, facet and file.

Colours are Okabe and Ito's colour-blind-safe set (2008; black and yellow left out: black is the
reference lines', yellow vanishes on white). Six colours tell six groups apart; beyond six a
group also gets its own line style (and marker), so no two of 36 groups look alike and colour is
never the only cue past six. Per-class lines (the targets plot) take viridis, a perceptually
ordered colour-blind-safe map: class 0 dark, class K-1 light.
"""

from __future__ import annotations

from dataclasses import dataclass

COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00")
# the same dash patterns in matplotlib's and plotly.js's spelling
MATPLOTLIB_DASHES: tuple[str | tuple[float, tuple[float, ...]], ...] = (
    "-", (0, (5, 2)), (0, (1, 1.5)), (0, (5, 1.5, 1, 1.5)), (0, (9, 2.5)),
    (0, (9, 2, 1, 2, 1, 2)))
PLOTLY_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
MATPLOTLIB_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
PLOTLY_MARKERS = ("circle", "square", "triangle-up", "diamond", "triangle-down", "cross", "x")
# viridis from 0 to 0.9 in ten steps (its last tenth is a yellow too pale for lines on white)
VIRIDIS = ("#440154", "#482475", "#414487", "#355F8D", "#2A788E", "#21918C", "#22A884",
           "#44BF70", "#7AD151", "#BDDF26")


@dataclass(frozen=True)
class Style:
    color: str
    variant: int  # 0 for the first six groups, then 1, 2, ...: picks the dash and marker

    @property
    def dash(self) -> str | tuple[float, tuple[float, ...]]:
        return MATPLOTLIB_DASHES[self.variant % len(MATPLOTLIB_DASHES)]

    @property
    def marker(self) -> str:
        return MATPLOTLIB_MARKERS[self.variant % len(MATPLOTLIB_MARKERS)]

    @property
    def plotly_dash(self) -> str:
        return PLOTLY_DASHES[self.variant % len(PLOTLY_DASHES)]

    @property
    def plotly_marker(self) -> str:
        return PLOTLY_MARKERS[self.variant % len(PLOTLY_MARKERS)]


def styles(names: tuple[str, ...] | list[str]) -> dict[str, Style]:
    """Each name (in a fixed order, e.g. grid order) -> its style."""
    return {name: Style(COLORS[i % len(COLORS)], i // len(COLORS))
            for i, name in enumerate(names)}


def class_colors(count: int) -> list[str]:
    """`count` colours along viridis, one per class."""
    if count <= 1:
        return [VIRIDIS[0]] * count
    rgb = [tuple(int(color[i:i + 2], 16) for i in (1, 3, 5)) for color in VIRIDIS]
    colors = []
    for k in range(count):
        position = k / (count - 1) * (len(rgb) - 1)
        low = min(int(position), len(rgb) - 2)
        share = position - low
        mixed = (round(a + (b - a) * share) for a, b in zip(rgb[low], rgb[low + 1], strict=True))
        colors.append("#" + "".join(f"{value:02X}" for value in mixed))
    return colors
