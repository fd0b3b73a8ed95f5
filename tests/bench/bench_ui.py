"""Benchmark of `tvo ui`: how long the page and the API take on a grid of 10,000 (or more) jobs.

Run:  python -m tests.bench.bench_ui [--jobs 10000] [--epochs 20] [--keep DIR] [--repeats 3]

Builds one grid of --jobs done jobs (10 strategies x 2 learning rates x seeds, --epochs + 1
metrics rows each) through the project's writers (tests.fake_grid, as a run leaves them; with
--keep the dir is reused), starts `python -m runner ui ROOT --port 0` as a user does, and times:
- how long a fresh server takes to read the grid ahead (grid_status, load_grid, the default
  view of each tab); then each API request the page makes, the first time (questions it did
  not read ahead are computed then) and again (answered from what it keeps until the grid's
  results change); wall-clock over real HTTP, JSON included;
- the page in headless Chromium (when installed): from navigation to the curves drawn, on a
  server just started (it reads the grids ahead as it starts: the page waits for that read),
  on a server that has read them, and again.

Baseline, measured in the same run in this process: the least any reader of these results does
for the curves, load_grid and one polars group-by (mean, std, count per strategy, lr and epoch)
over every metrics row. The ratio says what the server adds: HTTP, JSON, the CI, its caches.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

STRATEGIES = 10
LEARNING_RATES = (0.1, 0.5)
GRID = "bench"
REQUESTS = (  # what the page asks when a user opens the grid and looks at each tab
    ("grid list", "/api/grids"),
    ("grid", f"/api/grids/{GRID}"),
    ("curves", f"/api/grids/{GRID}/curves?metric=test_acc&by=strategy,lr"),
    ("curves, each job (200)", f"/api/grids/{GRID}/curves?metric=test_acc&by=strategy,lr"
                               "&seeds=1"),
    ("curves, another metric", f"/api/grids/{GRID}/curves?metric=train_loss&by=strategy,lr"),
    ("curves, by strategy", f"/api/grids/{GRID}/curves?metric=test_acc&by=strategy"),
    ("table, first page", f"/api/grids/{GRID}/table?metric=test_acc&level=job&limit=50"),
    ("table, sorted+filtered", f"/api/grids/{GRID}/table?metric=test_acc&level=job&limit=50"
                               "&sort=last&desc=1&f.strategy=fixed&f.seed=%3E100"),
    ("table, by group", f"/api/grids/{GRID}/table?metric=test_acc&level=group"
                        "&by=strategy,lr&limit=50"),
    ("table, another metric", f"/api/grids/{GRID}/table?metric=val_acc&level=job&limit=50"),
    ("parallel coordinates", f"/api/grids/{GRID}/parallel?metric=test_acc"),
    ("jobs, first page", f"/api/grids/{GRID}/jobs?state=&offset=0"),
)


def build(root: Path, jobs: int, epochs: int) -> Path:
    from tests.fake_grid import write_sized_grid

    seeds = max(1, jobs // (STRATEGIES * len(LEARNING_RATES)))
    grid_dir = root / GRID
    if (grid_dir / "jobs.parquet").exists():
        return grid_dir
    started = time.perf_counter()
    write_sized_grid(grid_dir, strategies=STRATEGIES, lrs=LEARNING_RATES, seeds=seeds,
                     epochs=epochs)
    print(f"built {STRATEGIES * len(LEARNING_RATES) * seeds:,} jobs in "
          f"{time.perf_counter() - started:.1f} s -> {grid_dir}")
    return grid_dir


def baseline(grid_dir: Path) -> float:
    """load_grid and the curves' group-by, in this process: seconds."""
    import polars as pl

    from runner.report.load import load_grid

    started = time.perf_counter()
    data = load_grid(grid_dir)
    data.collect(data.metrics.select("strategy", "lr", "epoch", "test_acc")
                 .group_by("strategy", "lr", "epoch")
                 .agg(pl.col("test_acc").mean().alias("mean"),
                      pl.col("test_acc").std().alias("std"), pl.len()))
    return time.perf_counter() - started


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def api_times(root: Path, repeats: int) -> tuple[float, dict[str, tuple[float, float]]]:
    """The seconds a fresh server takes to read the grid ahead; then per request: (first,
    best of the repeats after it)."""
    from tests.ui_server import start_ui

    server = start_ui(root)
    try:
        started = time.perf_counter()
        while not server.get("/api/session")["read_ahead_done"]:
            time.sleep(0.05)
        read_ahead = time.perf_counter() - started
        times = {}
        for name, path in REQUESTS:
            first = timed(lambda path=path: server.get(path))
            again = min(timed(lambda path=path: server.get(path)) for _ in range(repeats))
            times[name] = (first, again)
        return read_ahead, times
    finally:
        server.stop()


def page_times(root: Path, repeats: int) -> tuple[float, float, float] | None:
    """Navigation to the curves drawn: (server just started, server that has read the grids
    ahead, best again), or None without Chromium."""
    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.ui_server import start_ui

    options = webdriver.ChromeOptions()
    profile = tempfile.mkdtemp(prefix="tvo-ui-bench-")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                     "--disable-background-networking", f"--user-data-dir={profile}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    server = start_ui(root)
    drawn = ("return document.querySelectorAll('#chart-curves .main-svg .trace').length > 0")
    try:
        def open_page() -> float:
            driver.get("about:blank")
            started = time.perf_counter()
            driver.get(f"{server.url}#/grid/{GRID}")
            WebDriverWait(driver, 600, poll_frequency=0.02).until(
                lambda d: d.execute_script(drawn))
            return time.perf_counter() - started

        fresh = open_page()
        server.stop()
        server = start_ui(root)
        while not server.get("/api/session")["read_ahead_done"]:
            time.sleep(0.1)
        read = open_page()
        return fresh, read, min(open_page() for _ in range(repeats))
    finally:
        server.stop()
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="build the grid here, or reuse it")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="tvo-bench-ui-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        grid_dir = build(root, args.jobs, args.epochs)
        floor = min(baseline(grid_dir) for _ in range(args.repeats))
        read_ahead, times = api_times(root, args.repeats)
        page = page_times(root, args.repeats)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\n{args.jobs:,} jobs x {args.epochs + 1} epochs; a fresh server read the grid "
          f"ahead in {read_ahead:.3f} s; then each request, seconds: first / again")
    for name, (first, again) in times.items():
        print(f"  {name:<26} {first:7.3f} / {again:6.3f}")
    if page is not None:
        print(f"page, open to curves drawn: server just started {page[0]:.3f} s; after it read "
              f"the grid {page[1]:.3f} s; again {page[2]:.3f} s")
    print(f"baseline (load_grid + the curves' group-by in-process): {floor:.3f} s")
    print(f"ratio: reading ahead / baseline = {read_ahead / floor:.2f}x; a new question "
          f"(curves of another metric) / baseline = "
          f"{times['curves, another metric'][0] / floor:.2f}x; curves again / baseline = "
          f"{times['curves'][1] / floor:.4f}x")


if __name__ == "__main__":
    main()
