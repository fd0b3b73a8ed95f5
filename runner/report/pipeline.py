"""`tvo aggregate` as a library call: read, summarise, render, then write everything at once.

Everything is computed and rendered in memory before the first file is written, and each file
is written atomically (temporary name, fsync, rename), so an error leaves the previous summary
untouched rather than half-replaced. A grid with a `compare:` section is summarised over its
final runs, with its selection and tuning stage beside them (stages, selection), in the same
pass: every file has one writer. `--by` and `--baseline` write into a folder of their own under
summary/ (`by-strategy`, `vs-strategy=fixed-c=0.9-nc=0.1`), never over the default summary.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.rundir import results
from runner.report import formats
from runner.report.contents import Contents
from runner.report.labels import format_value
from runner.report.load import (
    SUMMARY_DIR,
    AggregateError,
    GridData,
    load_grid,
    state_counts,
    write_compacted,
)
from runner.report.model import PlotData, Summary, TuningPanel
from runner.report.render_worker import FigureWorkers

SUMMARY_PARQUET = "summary.parquet"
SUMMARY_CSV = "summary.csv"
REPORT_FILE = "report.md"
HTML_REPORT_FILE = "report.html"
LATEX_FILE = "summary.tex"
MAX_FOLDER_NAME = 100


@dataclass(frozen=True)
class Rendered:
    """The text and image files of a summary, rendered but not yet written."""

    files: dict[str, bytes]  # name inside the summary folder -> content
    plots: list[str]  # figure names: each has name.png and name.svg in files, or on disk
    plot_notes: list[str] = field(default_factory=list)
    figures: str = ""  # fingerprint of the figures (figure_cache)
    figures_kept: bool = False  # the figures on disk were drawn from the same inputs


@dataclass(frozen=True)
class Aggregation:
    contents: Contents
    rendered: Rendered
    written: list[Path]
    summary_dir: Path
    plot_data: PlotData | None = None  # what the figures and charts drew (None: --no-plots)

    @property
    def data(self) -> GridData:
        return self.contents.data

    @property
    def summary(self) -> Summary:
        return self.contents.summary

    def meta(self) -> dict[str, Any]:
        baseline = self.summary.baseline
        return {
            "grid": self.data.name,
            "dir": str(self.data.grid_dir),
            "threshold": self.summary.threshold,
            "group_by": self.summary.keys,
            "baseline": None if baseline is None else f"{baseline[0]}={format_value(baseline[1])}",
            "jobs": state_counts(self.data.jobs),
            "stages": self.contents.stages or None,
        }


def check_threshold(threshold: float) -> None:
    if not 0 < threshold <= 1:
        raise AggregateError(f"--threshold must be an accuracy in (0, 1], got {threshold:g}")


def variant_folder(by: Sequence[str] | None, baseline: tuple[str, Any] | None,
                   baseline_given: bool) -> str:
    """The sub-folder of summary/ for a --by or --baseline summary ("" for the default one)."""
    parts = []
    if by is not None:
        parts.append("by-" + "+".join(by))
    if baseline_given and baseline is not None:
        parts.append(f"vs-{baseline[0]}={format_value(baseline[1])}")
    name = re.sub(r"[^A-Za-z0-9_.=+-]+", "-", "_".join(parts)).strip("-.")
    return name[:MAX_FOLDER_NAME]


def render(contents: Contents, *, plot_data: PlotData | None = None,
           drawn: dict[str, bytes] | None = None, figures: str = "",
           kept: bool = False) -> tuple[Contents, Rendered]:
    """Every file of the summary folder in memory. `plot_data`: plots wanted, with the
    figures' files already `drawn` (by FigureWorkers), or `kept` on disk as they are, or drawn
    here."""
    import dataclasses

    from runner.report import html as html_report
    from runner.report import markdown as report
    from runner.report.latex import to_latex

    summary = contents.summary
    files: dict[str, bytes] = {SUMMARY_CSV: formats.to_csv(summary).encode()}
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
    contents = dataclasses.replace(contents, plots=names, plot_notes=notes)
    if contents.protocol is not None:
        from runner.report.selection import files as protocol_files

        files.update(protocol_files(contents.protocol))
    files[LATEX_FILE] = to_latex(contents).encode()
    files[HTML_REPORT_FILE] = html_report.render(contents, specs).encode()
    files[REPORT_FILE] = report.render(contents).encode()
    return contents, Rendered(files, names, notes, figures, kept)


def write(data: GridData, summary_dir: Path, summary: Summary, rendered: Rendered) -> list[Path]:
    """Write the compacted metrics (if they changed), summary.parquet and the rendered files."""
    from runner.report.plots import plot_files

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
        for name in plot_files():  # an earlier run's plot that this one chose not to make
            if rendered.plots and name.rsplit(".", 1)[0] not in rendered.plots:
                (summary_dir / name).unlink(missing_ok=True)
    except OSError as exc:
        raise AggregateError(f"cannot write {summary_dir}: {exc.strerror or exc}") from None
    return written


@dataclass(frozen=True)
class Scope:
    """The jobs a summary covers: all of the grid's, or a comparison grid's final runs."""

    data: GridData
    jobs: list[Any]  # model.Job, in grid order of the compared values
    stages: Any = None  # stages.Stages of a comparison grid, else None
    default_baseline: tuple[str, Any] | None = None  # None: baseline.DEFAULT_BASELINE
    method_settings: tuple[str, ...] = ()  # a comparison's tuned settings

    @property
    def default_keys(self) -> list[str] | None:
        return self.stages.protocol.keys() if self.stages else None


def scope(data: GridData) -> Scope:
    """Every job, or for a grid with `compare:` its final runs (stages.py)."""
    from runner.report.stages import FINAL, find_stages, read_protocol

    protocol = read_protocol(data.grid_dir)
    if protocol is None:
        return Scope(data, list(data.jobs.values()))
    stages = find_stages(data, protocol)
    order = {repr(method): i for i, method in enumerate(protocol.methods)}
    jobs = sorted(stages.jobs(data, FINAL), key=lambda job: order.get(  # colours in grid order
        repr(job.settings.get(protocol.compare.by)), len(order)))
    return Scope(data, jobs, stages, (protocol.compare.by, protocol.methods[0]),
                 tuple(protocol.compare.tune))


def _tuning_panels(stages: Any, curves: list[tuple[str, Any]],
                   summary: Summary) -> list[TuningPanel]:
    """The tuning curves as the figures draw them: each method's hue and facet."""
    import numpy as np

    labels = summary.labels
    contexts = {method.label: method.context for method in stages.methods}
    panels = []
    for label, curve in curves:
        key = tuple(contexts[label].get(k) for k in summary.keys)
        hue = labels.hue_label(key) if labels.keys else label
        panels.append(TuningPanel(label, hue, labels.facet_label(key) if labels.keys else "",
                                  np.asarray(curve.budgets), np.asarray(curve.expected),
                                  np.asarray(curve.lower), np.asarray(curve.upper)))
    return panels


def _plot_data(data: GridData, groups: list[Any], curves: Any, summary: Summary,
               stages: Any, tuning: list[tuple[str, Any]], tasks: Any) -> PlotData:
    """What the figures draw: the groups' data, a comparison's tuning curves, the profiles."""
    import dataclasses

    from runner.report.plot_data import read_plot_data

    plot_data = read_plot_data(data, groups, curves)
    if stages is not None:
        plot_data = dataclasses.replace(plot_data, tuning=_tuning_panels(stages, tuning, summary),
                                        tuning_metric=stages.protocol.compare.select)
    if tasks is not None:
        plot_data = dataclasses.replace(plot_data, profiles=tasks.profiles,
                                        profile_tasks=tasks.described)
    return plot_data


def aggregate(grid_dir: Path, *, threshold: float = 0.9, by: Sequence[str] | None = None,
              baseline: str | None = None, plots: bool = True,
              command: str = "tvo aggregate", workers: FigureWorkers | None = None,
              ) -> Aggregation:
    """Summarise a grid dir into DIR/summary/ (or a sub-folder for --by/--baseline) and return
    what was computed and written.

    With plots, worker processes draw the figures while this one compares the groups and
    renders the tables and the reports (render_worker says why). `workers`: started by the
    caller before its imports, or here when needed; ended here either way.
    """
    check_threshold(threshold)
    from runner.report.baseline import DEFAULT_BASELINE, choose_baseline
    from runner.report.stages import FINAL, OUTSIDE, TUNING
    from runner.report.stats import import_in_background
    from runner.report.summary import compare_groups, describe, group_jobs, measure

    try:
        data = load_grid(Path(grid_dir))
        covered = scope(data)
        stages = covered.stages
        keys, groups, labels = group_jobs(covered.jobs, by, covered.default_keys)
        default = covered.default_baseline or DEFAULT_BASELINE
        chosen, _ = choose_baseline(groups, keys, baseline, default)  # a bad one fails here
        summary_dir = data.grid_dir / SUMMARY_DIR / variant_folder(by, chosen,
                                                                   baseline is not None)
        figures, kept = "", False
        if plots:
            from runner.report import figure_cache

            # before the metrics are read: the worker draws only figures that changed
            figures = figure_cache.fingerprint(data.sources, keys, labels, groups)
            kept = figure_cache.unchanged(summary_dir / SUMMARY_PARQUET, figures)
            if kept and workers:
                workers.close()
            workers = None if kept else workers or FigureWorkers()
        grouping = measure(data, keys, groups, labels, threshold=threshold)
        copies = {member.name for cluster in grouping.clusters for member in cluster[1:]}
        drawn_groups = [g for g in grouping.groups if g.name not in copies]
        curves = None
        if workers:  # the curve plots go first, in the summary's order of the groups
            from runner.report.plot_data import read_curves

            curves = read_curves(data, drawn_groups)
            if any(curves.values()):
                workers.draw_curves(grouping.labels, curves)
        # the statistics libraries load while the rest is read (polars releases the GIL); with
        # figures to draw, only once the curves are on their way (a thread importing holds the
        # GIL most of the time, and would delay them)
        import_in_background()
        summary = describe(grouping, threshold=threshold, baseline=baseline,
                           default_baseline=default, method_settings=covered.method_settings)
        from runner.report.selection import build, tuning_curves
        from runner.report.tasks import across_tasks

        tasks = across_tasks(summary, grouping.measures)
        tuning = tuning_curves(stages) if stages is not None else []
        plot_data = None
        if plots:
            plot_data = _plot_data(data, drawn_groups, curves, summary, stages, tuning, tasks)
            if workers:
                workers.draw(summary, plot_data)
        summary = compare_groups(summary, grouping.measures)
        protocol_report = build(stages, summary, data.jobs, tuning) if stages else None
        drawn = workers.files() if workers else None
        counts = ({stage: stages.count(stage) for stage in (TUNING, FINAL, OUTSIDE)}
                  if stages else {})
        contents = Contents(data, summary, command, protocol_report, tasks, counts)
        contents, rendered = render(contents, plot_data=plot_data, drawn=drawn,
                                    figures=figures, kept=kept)
    finally:
        if workers:
            workers.close()
    written = write(data, summary_dir, summary, rendered)
    return Aggregation(contents, rendered, written, summary_dir, plot_data)
