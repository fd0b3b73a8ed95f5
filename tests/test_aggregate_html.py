"""summary/report.html in a real headless Chromium: it loads offline with no console errors,
every chart renders, tables sort and the legend toggles a strategy in every facet.

Needs Debian's chromium and chromium-driver (.ci/run installs them); skipped where they are
absent, except under .ci/run (TVO_BROWSER_TESTS=required). The chart specs are also checked by
plotly's own figure validation.
"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from runner.report.html import charts
from runner.report.pipeline import aggregate
from tests.fake_grid import write_sized_grid
from tests.headless_chromium import headless_chromium

# the PNGs' order; 7 strategies on 2 data sets also get performance profiles
CHARTS = ["test_acc", "train_loss", "targets", "final_acc", "calibration", "performance_profile"]


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """14 groups: 7 strategies x 2 data sets, aggregated with plots."""
    root = write_sized_grid(tmp_path_factory.mktemp("grid"), strategies=7,
                            datasets=("digits", "mnist1d"), seeds=3)
    aggregate(root)
    return root


def test_chart_specs_are_valid_plotly_figures(grid):
    import plotly.graph_objects as go

    result = aggregate(grid)
    specs = charts(result.summary, result.plot_data)
    assert list(specs) == CHARTS
    for spec in specs.values():
        go.Figure(spec)  # raises on any attribute plotly.js does not know


class Sources(HTMLParser):
    """Every tag attribute that would make a browser fetch something (script src, link href)."""

    def __init__(self) -> None:
        super().__init__()
        self.fetched: list[str] = []
        self.charts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.fetched += [f"{tag} {name}={value}" for name, value in attrs
                         if name in ("src", "href")]
        self.charts += ("class", "chart") in attrs


def test_page_is_self_contained(grid):
    page = (grid / "summary" / "report.html").read_text()
    sources = Sources()
    sources.feed(page)
    assert sources.fetched == [] and sources.charts == len(CHARTS)
    assert "Holm" in page and "paired t" in page


@pytest.fixture(scope="module")
def browser():
    with headless_chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def page(grid, browser):
    browser.get((grid / "summary" / "report.html").as_uri())
    return browser


def test_page_loads_without_console_messages_or_fetches(page):
    assert page.title == "Results of grid fake"
    assert page.get_log("browser") == []
    resources = page.execute_script("return performance.getEntriesByType('resource')"
                                    ".map(entry => entry.name)")
    assert resources == []  # plotly.js is inline; nothing else is asked for


def test_every_chart_renders(page):
    for name in CHARTS:
        traces = page.execute_script(
            f"return document.querySelectorAll('#chart-{name} .main-svg .trace').length")
        assert traces > 0, name
        legend = page.execute_script(
            f"return document.querySelectorAll('#chart-{name} .legend .traces').length")
        assert legend > 0, name


def test_tables_sort_by_a_clicked_column(page):
    from selenium.webdriver.common.by import By

    def column(index: int) -> list[str]:
        rows = page.find_elements(By.CSS_SELECTOR, "#results tbody tr")
        return [row.find_elements(By.TAG_NAME, "td")[index].text for row in rows]

    headers = page.find_elements(By.CSS_SELECTOR, "#results thead th")
    names = [header.text for header in headers]
    accuracy = names.index("final acc ± 95% CI")
    headers[accuracy].click()
    ascending = [float(text.split()[0]) for text in column(accuracy)]
    assert ascending == sorted(ascending) and len(ascending) == 14
    headers[accuracy].click()
    assert [float(text.split()[0]) for text in column(accuracy)] == sorted(ascending,
                                                                           reverse=True)
    strategy = names.index("strategy")
    headers[strategy].click()
    assert column(strategy) == sorted(column(strategy))


def test_a_legend_click_hides_the_strategy_in_every_facet(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    visible = ("return document.getElementById('chart-test_acc').data"
               ".filter(t => t.legendgroup === 'onehot' && t.visible !== 'legendonly').length")
    assert page.execute_script(visible) == 4  # line and CI band in each of 2 facets
    entries = page.find_elements(By.CSS_SELECTOR, "#chart-test_acc .legend .traces")
    assert [e.find_element(By.CSS_SELECTOR, ".legendtext").text for e in entries][:2] == [
        "onehot", "tvo"]  # grid order, as in the PNG legends
    toggle = entries[0].find_element(By.CSS_SELECTOR, ".legendtoggle")
    page.execute_script("arguments[0].scrollIntoView({block: 'center'});", toggle)
    toggle.click()
    # plotly waits for a possible double click before it toggles
    WebDriverWait(page, 5).until(lambda driver: driver.execute_script(visible) == 0)
    assert page.get_log("browser") == []
