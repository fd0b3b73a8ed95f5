"""One look per compared value (a colour, and a dash and marker beyond ten), shared by the PNG/SVG
figures and the HTML report, so a strategy looks the same in every plot, facet and file."""

from __future__ import annotations

from dataclasses import dataclass

# matplotlib's tab10, spelt out so that the HTML report needs no matplotlib
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")
# beyond ten values the colours repeat with another dash and marker (light tab20 shades are
# hard to tell from the white background at a line width of 1.5)
MATPLOTLIB_DASHES = ("-", "--", ":", "-.")
PLOTLY_DASHES = ("solid", "dash", "dot", "dashdot")
MATPLOTLIB_MARKERS = ("o", "s", "^", "D")
PLOTLY_MARKERS = ("circle", "square", "triangle-up", "diamond")


@dataclass(frozen=True)
class Style:
    color: str
    variant: int  # index into the dash and marker tuples

    @property
    def dash(self) -> str:
        return MATPLOTLIB_DASHES[self.variant]

    @property
    def marker(self) -> str:
        return MATPLOTLIB_MARKERS[self.variant]

    @property
    def plotly_dash(self) -> str:
        return PLOTLY_DASHES[self.variant]

    @property
    def plotly_marker(self) -> str:
        return PLOTLY_MARKERS[self.variant]


def styles(names: tuple[str, ...] | list[str]) -> dict[str, Style]:
    """Each name (in a fixed order, e.g. grid order) -> its style."""
    variants = len(MATPLOTLIB_DASHES)
    return {name: Style(COLORS[i % len(COLORS)], (i // len(COLORS)) % variants)
            for i, name in enumerate(names)}
