"""`tvo aggregate` as a library call: read, summarise, render, then write everything at once.

Everything is computed and rendered in memory before the first file is written, and each file
is written atomically (temporary name, fsync, rename), so an error leaves the previous summary
untouched rather than half-replaced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.rundir import results
from runner.report import formats
from runner.report import markdown as report
from runner.report.load import (
    SUMMARY_DIR,
    AggregateError,
    GridData,
    load_grid,
    state_counts,
    write_compacted,
)
from runner.report.model import PlotData
from runner.report.render_worker import FigureWorkers
from runner.report.tables import (
    Summary,
    compare_with_baseline,
    describe,
    done_ids,
    format_value,
    make_groups,
    per_job_measures,
    rank_order,
    resolve_keys,
)

SUMMARY_PARQUET = "summary.parquet"
SUMMARY_CSV = "summary.csv"
REPORT_FILE = "report.md"
HTML_REPORT_FILE = "report.html"
LATEX_FILE = "summary.tex"


@dataclass(frozen=True)
class Rendered:
    """The text and image files of a summary, rendered but not yet written."""

    files: dict[str, bytes]  # name inside summary/ -> content
    plots: list[str]  # figure names: each has name.png and name.svg in files, or on disk
    plot_notes: list[str] = field(default_factory=list)
    figures: str = ""  # fingerprint of the figures (figure_cache)
    figures_kept: bool = False  # the figures on disk were drawn from the same inputs


@dataclass(frozen=True)
class Aggregation:
    data: GridData
    summary: Summary
    rendered: Rendered
    written: list[Path]

    @property
    def summary_dir(self) -> Path:
        return self.data.grid_dir / SUMMARY_DIR

    def meta(self) -> dict[str, Any]:
        baseline = self.summary.baseline
        return {
            "grid": self.data.name,
            "dir": str(self.data.grid_dir),
            "threshold": self.summary.threshold,
            "group_by": self.summary.keys,
            "baseline": None if baseline is None else f"{baseline[0]}={format_value(baseline[1])}",
            "jobs": state_counts(self.data.jobs),
        }


def check_threshold(threshold: float) -> None:
    if not 0 < threshold <= 1:
        raise AggregateError(f"--threshold must be an accuracy in (0, 1], got {threshold:g}")


def render(data: GridData, summary: Summary, *, command: str,
           plot_data: PlotData | None = None, drawn: dict[str, bytes] | None = None,
           figures: str = "", kept: bool = False) -> Rendered:
    """Every file of summary/ in memory. `plot_data`: plots wanted, with the figures' files
    already `drawn` (by FigureWorkers), or `kept` on disk as they are, or drawn here."""
    from runner.report import html as html_report
    from runner.report.latex import to_latex

    files: dict[str, bytes] = {SUMMARY_CSV: formats.to_csv(summary).encode(),
                               LATEX_FILE: to_latex(summary, grid=data.name,
                                                    command=command).encode()}
    names: list[str] = []
    notes: list[str] = []
    specs: dict[str, Any] = {}
    if plot_data is not None:
        from runner.report.plots import FORMATS, figure_names, plot_notes
        from runner.report.render_worker import draw_share

        names = figure_names(summary, plot_data)
        notes = plot_notes(summary, plot_data)
        specs = html_report.charts(summary, plot_data)
        if not kept:
            drawn = drawn if drawn is not None else draw_share(summary, plot_data, names)
            files.update({f"{name}.{fmt}": drawn[f"{name}.{fmt}"] for name in names
                          for fmt in FORMATS})  # in report order, whichever worker drew them
    files[HTML_REPORT_FILE] = html_report.render(data, summary, command=command, specs=specs,
                                                 notes=notes).encode()
    text = report.render(data, summary, command=command, plots=names, plot_notes=notes)
    files[REPORT_FILE] = text.encode()
    return Rendered(files, names, notes, figures, kept)


def write(data: GridData, summary: Summary, rendered: Rendered) -> list[Path]:
    """Write the compacted metrics (if they changed), summary.parquet and the rendered files."""
    from runner.report.plots import PLOT_FILES

    summary_dir = data.grid_dir / SUMMARY_DIR
    written = []
    try:
        if not data.compacted_current:
            write_compacted(data)
            written.append(data.compacted_path)
        from runner.report import figure_cache

        if rendered.figures:
            from runner.report.plots import FORMATS

            figures = figure_cache.metadata(rendered.figures, [
                f"{name}.{fmt}" for name in rendered.plots for fmt in FORMATS])
        else:
            figures = figure_cache.stored(summary_dir / SUMMARY_PARQUET)
        results.write_parquet(summary_dir / SUMMARY_PARQUET,
                              formats.summary_table(summary, figures))
        written.append(summary_dir / SUMMARY_PARQUET)
        for name, content in rendered.files.items():
            results.atomic_write_bytes(summary_dir / name, content)
            written.append(summary_dir / name)
        for name in PLOT_FILES:  # an earlier run's plot that this one chose not to make
            if rendered.plots and name.rsplit(".", 1)[0] not in rendered.plots:
                (summary_dir / name).unlink(missing_ok=True)
    except OSError as exc:
        raise AggregateError(f"cannot write {summary_dir}: {exc.strerror or exc}") from None
    return written


def aggregate(grid_dir: Path, *, threshold: float = 0.9, by: Sequence[str] | None = None,
              baseline: str | None = None, plots: bool = True,
              command: str = "tvo aggregate", workers: FigureWorkers | None = None,
              ) -> Aggregation:
    """Summarise a grid dir into DIR/summary/ and return what was computed and written.

    With plots, worker processes draw the figures while this one compares the groups and
    renders the tables and the reports (render_worker says why). `workers`: started by the
    caller before its imports, or here when needed; ended here either way.
    """
    check_threshold(threshold)
    from runner.report.stats import import_in_background

    try:
        data = load_grid(Path(grid_dir))
        figures, kept = "", False
        measures = curves = None
        if plots:
            from runner.report import figure_cache
            from runner.report.plot_data import read_curves

            # before the metrics are read: the worker draws only figures that changed
            keys = resolve_keys(list(data.jobs.values()), by)
            groups, labels = make_groups(list(data.jobs.values()), keys)
            figures = figure_cache.fingerprint(data.sources, keys, labels, groups)
            kept = figure_cache.unchanged(data.grid_dir / SUMMARY_DIR / SUMMARY_PARQUET, figures)
            if kept and workers:
                workers.close()
            workers = None if kept else workers or FigureWorkers()
            if workers:  # the curve plots go first, in the summary's order of the groups
                measures = per_job_measures(data, done_ids(groups), threshold)
                curves = read_curves(data, [groups[i] for i in rank_order(groups, measures)])
                if any(curves.values()):
                    workers.draw_curves(labels, curves)
        # the statistics libraries load while the rest is read (polars releases the GIL); with
        # figures to draw, only once the curves are on their way (a thread importing holds the
        # GIL most of the time, and would delay them)
        import_in_background()
        described, measures = describe(data, threshold=threshold, by=by, baseline=baseline,
                                       measures=measures)
        plot_data = None
        if plots:
            from runner.report.plot_data import read_plot_data

            plot_data = read_plot_data(data, described.groups, curves)
            if workers:
                workers.draw(described, plot_data)
        summary = compare_with_baseline(described, measures)
        drawn = workers.files() if workers else None
        rendered = render(data, summary, command=command, plot_data=plot_data, drawn=drawn,
                          figures=figures, kept=kept)
    finally:
        if workers:
            workers.close()
    written = write(data, summary, rendered)
    from runner.report.selection import add_comparison  # grids with `compare:` only

    written += add_comparison(data.grid_dir, data.grid_dir / SUMMARY_DIR, plots)
    return Aggregation(data, summary, rendered, written)
