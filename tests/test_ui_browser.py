"""`tvo ui` in a real headless Chromium, doing what a user does: open a grid and see its curves,
download a figure, start the quickstart and watch it finish, start an uploaded grid and cancel
it while it runs (and `tvo status` agrees).

Needs Debian's chromium and chromium-driver (.ci/run installs them); skipped where they are
absent, except under .ci/run (TVO_BROWSER_TESTS=required). One server and one browser serve
the whole module.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fake_grid import write_sized_grid
from tests.headless_chromium import headless_chromium
from tests.ui_grids import write_compared_grid
from tests.ui_server import REPO, start_ui

LONG_GRID = """\
name: long
base: {dataset: digits, hidden: [8], loss: mse, output: sigmoid, epochs: 5000}
grid: {seed: [0, 1]}
"""


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("out")
    write_sized_grid(root / "fake", strategies=3, seeds=3)
    write_compared_grid(root)
    return root


@pytest.fixture(scope="module")
def server(root):
    server = start_ui(root)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def started():
    """Pids of the runs the page starts: stopped at the end if a failed test left one going."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads):
    arguments = ("--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1280,1000")
    prefs = {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    with headless_chromium(arguments, prefs) as driver:
        driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                               {"behavior": "allow", "downloadPath": str(downloads)})
        yield driver


def until(driver, condition, timeout: float = 20.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)


def text_of(driver, selector: str) -> str:
    """The element's text, read in one step (the page redraws parts of itself as it refreshes)."""
    return driver.execute_script(
        "const found = document.querySelector(arguments[0]);"
        "return found ? found.textContent : '';", selector)


def errors(driver) -> list[str]:
    """Console messages of level SEVERE (software WebGL's warnings are not ours)."""
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE"]


def traces(driver, chart: str) -> int:
    return driver.execute_script(
        f"return document.querySelectorAll('#{chart} .main-svg .trace').length")


def test_a_grid_shows_its_curves_one_line_and_band_per_group(server, browser):
    browser.get(server.url)
    until(browser, lambda d: d.find_elements("css selector", 'tr[data-grid="fake"]'))
    assert text_of(browser, 'tr[data-grid="fake"] td[data-state="done"]') == "9"
    browser.find_element("css selector", 'tr[data-grid="fake"]').click()
    until(browser, lambda d: traces(d, "chart-curves") > 0)
    legend = browser.execute_script(
        "return Array.from(document.querySelectorAll('#chart-curves .legend .traces'))"
        ".map(entry => entry.textContent)")
    assert legend == ["onehot", "tvo", "fixed"]  # the report's labels: what tells them apart
    # a line and a band (two edges) per group; seeds are drawn only when asked
    assert browser.execute_script("return document.getElementById('chart-curves').data"
                                  ".length") == 9
    browser.find_element("id", "show-seeds").click()
    until(browser, lambda d: d.execute_script(
        "return document.getElementById('chart-curves').data.length") == 9 + 9)
    found = errors(browser)
    assert found == [], found
    requested = browser.execute_script("return performance.getEntriesByType('resource')"
                                       ".map(entry => entry.name)")
    assert all(url.startswith(server.base) for url in requested)  # nothing from a CDN


def test_a_figure_downloads_as_svg_and_png(server, browser, downloads):
    if "#/grid/fake" not in browser.current_url:
        browser.get(server.url + "#/grid/fake")
    until(browser, lambda d: traces(d, "chart-curves") > 0)
    browser.find_element("id", "chart-curves-svg").click()
    svg = downloads / "fake-test_acc.svg"
    until(browser, lambda d: svg.exists() and svg.stat().st_size > 0)
    assert svg.read_text().startswith("<svg") and "test_acc" in svg.read_text()
    browser.find_element("id", "chart-curves-png").click()
    png = downloads / "fake-test_acc.png"
    until(browser, lambda d: png.exists() and png.stat().st_size > 0)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_parallel_coordinates_draw_one_axis_per_swept_setting(server, browser):
    browser.get(server.url + "#/grid/fake")
    until(browser, lambda d: d.find_elements("id", "tab-parallel"))
    browser.find_element("id", "tab-parallel").click()
    until(browser, lambda d: "final test_acc" in text_of(d, "#chart-parallel"))
    assert "WebGL is not supported" not in text_of(browser, "#chart-parallel")
    assert "onehot" in text_of(browser, "#chart-parallel")
    found = errors(browser)
    assert found == [], found


def test_a_comparison_grid_opens_on_its_verdict_selection_and_tuning_curves(server, browser):
    browser.get(server.url + "#/grid/compared")
    until(browser, lambda d: traces(d, "chart-tuning") > 0, timeout=60)
    assert browser.execute_script("return document.querySelectorAll('#verdicts li')[1]"
                                  ".textContent").startswith("lecun reaches 0.899 final test")
    assert browser.execute_script(
        "return document.querySelectorAll('#selection-table tbody tr').length") == 2
    found = errors(browser)
    assert found == [], found


def start_from_the_page(browser, server, *, shipped: str | None = None,
                        upload: Path | None = None, overrides: str = "") -> None:
    """The start form as a user fills it: the grid, overrides, inline backend; check, start."""
    from selenium.webdriver.support.ui import Select

    browser.get(server.url + "#/start")
    until(browser, lambda d: d.find_elements("id", "check-button"))
    if upload is not None:
        browser.find_element("id", "source-upload").click()
        browser.find_element("id", "start-upload").send_keys(str(upload))
    else:
        Select(browser.find_element("id", "start-grid")).select_by_value(shipped)
    browser.find_element("id", "overrides").clear()
    browser.find_element("id", "overrides").send_keys(overrides)
    Select(browser.find_element("id", "backend")).select_by_value("inline")
    browser.find_element("id", "check-button").click()
    until(browser, lambda d: d.find_elements("id", "plan-table"))
    browser.find_element("id", "start-button").click()


def state_count(browser, state: str) -> str:
    return text_of(browser, f'#grid-counts [data-state="{state}"]')


def test_a_typo_gets_the_cli_s_error_and_starts_nothing(server, browser, root):
    browser.get(server.url + "#/start")
    until(browser, lambda d: d.find_elements("id", "check-button"))
    browser.find_element("id", "overrides").send_keys("lrr=0.1")
    browser.find_element("id", "check-button").click()
    until(browser, lambda d: d.find_elements("id", "start-error-line"))
    assert text_of(browser, "#start-error-line").startswith(
        "Error: lrr=0.1: unknown setting 'lrr' (did you mean 'lr'?)")
    assert not browser.find_element("id", "start-button").is_enabled()
    assert not (root / "quickstart").exists()
    assert [message for message in errors(browser)] == [  # the answer's status, logged
        f"{server.base}/api/plan - Failed to load resource: the server responded with a status "
        "of 400 (Bad Request)"]


@pytest.mark.slow
def test_the_quickstart_starts_and_is_watched_until_it_finishes(server, browser, root, started):
    start_from_the_page(browser, server, shipped="quickstart",
                        overrides="epochs=1\nseed=0\nhidden=[8]")
    until(browser, lambda d: d.current_url.endswith("#/grid/quickstart"))
    until(browser, lambda d: d.find_elements("id", "launch"))
    started.append(int(text_of(browser, "#launch").split("(pid ")[1].split(")")[0]))
    until(browser, lambda d: state_count(d, "done") == "done 8", timeout=120)
    until(browser, lambda d: "ended with exit code 0" in text_of(d, "#launch"))
    until(browser, lambda d: traces(d, "chart-curves") > 0)
    found = errors(browser)
    assert found == [], found


@pytest.mark.slow
def test_a_running_grid_is_cancelled_and_tvo_status_agrees(server, browser, root, started,
                                                           tmp_path):
    grid_file = tmp_path / "long.yaml"
    grid_file.write_text(LONG_GRID)
    start_from_the_page(browser, server, upload=grid_file)
    until(browser, lambda d: d.current_url.endswith("#/grid/long"))
    until(browser, lambda d: d.find_elements("id", "launch"))
    started.append(int(text_of(browser, "#launch").split("(pid ")[1].split(")")[0]))
    until(browser, lambda d: state_count(d, "running") == "running 2", timeout=120)
    browser.find_element("id", "tab-jobs").click()  # each running job with the epoch it reached
    until(browser, lambda d: "running (epoch " in text_of(d, "#jobs-table tbody"))
    browser.find_element("id", "cancel-grid").click()
    browser.find_element("id", "cancel-yes").click()
    until(browser, lambda d: state_count(d, "cancelled") == "cancelled 2", timeout=60)
    until(browser, lambda d: "ended with exit code 1" in text_of(d, "#launch"), timeout=30)
    status = subprocess.run([sys.executable, "-m", "runner", "status", str(root / "long")],
                            capture_output=True, text=True, cwd=REPO, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert "done 0 · running 0 · failed 0 · diverged 0 · cancelled 2 · pending 0" in (
        status.stdout)
    time.sleep(0.1)
    found = errors(browser)
    assert found == [], found
