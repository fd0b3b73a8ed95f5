"""jobs.metric_catalogue: every metric is one declaration, and the outputs read it.

One metric is added to the catalogue here (monkeypatched, no other file touched) and followed
through a real training run and `tvo aggregate`: into the results schema and file, TensorBoard's
scalars, the summary's columns and tables, the report's Definitions, LaTeX, the app and the
identical-runs hash, the report's figures and charts over epochs.
"""

from __future__ import annotations

import csv
import dataclasses
import statistics
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from jobs import metric_catalogue
from jobs.metric_catalogue import FINAL, HIGHER, Metric, Summary, arrow_type
from jobs.rundir import results, tensorboard
from jobs.rundir.layout import TENSORBOARD_DIR
from jobs.spec import JobSpec
from tests import rundir_view

# The measurement columns of the metrics files as users read them (DESIGN.md's Parquet schema):
# names, order and Arrow types. The catalogue must keep them.
USER_COLUMNS = (
    ("epoch", "int32"), ("learning_rate", "double"), ("train_loss", "double"),
    ("train_acc", "double"), ("test_loss", "double"), ("test_acc", "double"),
    ("test_nll", "double"), ("confidence", "double"), ("margin", "double"), ("ece", "double"),
    ("reliability", "list<item: list<item: double>>"), ("val_loss", "double"),
    ("val_acc", "double"), ("val_nll", "double"), ("val_ece", "double"),
    ("target_class", "list<item: double>"), ("target_nonclass", "list<item: double>"),
    ("target_matrix", "list<item: list<item: double>>"), ("ts_residual", "double"),
    ("epoch_seconds", "double"), ("samples_per_second", "double"),
)
# a metric nobody declared yet: the engine measures confidence on the validation split too
NEW = Metric(
    "val_confidence", metric_catalogue.FLOAT, "mean cosine to the closest target template, "
    "validation",
    "val/confidence", HIGHER, split="val", measure="confidence",
    curve=("validation confidence", "Validation confidence over epochs"), summaries=(
        Summary("final_val_confidence", FINAL, "validation confidence, final epoch",
                "val confidence", latex=True, definitions=(
                    ("final validation confidence", "the confidence above, measured on the "
                     "validation split after the last epoch."),)),))
SETTINGS = {"dataset": "digits", "hidden": [8], "batch_size": 64, "epochs": 2, "loss": "mse",
            "output": "sigmoid", "lr": 0.5, "device": "cpu"}


def setting_columns() -> list[str]:
    return ["job_id", "grid", *(f.name for f in dataclasses.fields(JobSpec)), "strategy_name"]


def test_every_column_of_the_results_schema_is_declared_as_users_read_it() -> None:
    schema = results.metrics_schema()
    measured = [field for field in schema if field.name not in setting_columns()]
    assert [(field.name, str(field.type)) for field in measured] == list(USER_COLUMNS)
    for field in measured:
        assert arrow_type(metric_catalogue.metric(field.name).type) == field.type


def test_each_declaration_is_whole_and_names_are_unique() -> None:
    names = [metric.name for metric in metric_catalogue.METRICS]
    assert len(set(names)) == len(names)
    tags = [metric.tensorboard for metric in metric_catalogue.METRICS if metric.tensorboard]
    assert len(set(tags)) == len(tags)
    kinds = (metric_catalogue.MEASURED, metric_catalogue.STATE, metric_catalogue.TIMING,
             metric_catalogue.INDEX)
    for metric in metric_catalogue.METRICS:
        assert metric.description and metric.kind in kinds, metric.name
        assert arrow_type(metric.type) is not None  # a known type name, or KeyError
        assert metric.better in (metric_catalogue.HIGHER, metric_catalogue.LOWER, None)
        assert (metric.split is None) == (metric.measure is None), metric.name
        if metric.tensorboard and not metric.is_scalar:
            assert "{index}" in metric.tensorboard, metric.name
    summaries = [summary.name for _, summary in metric_catalogue.summaries()]
    assert len(set(summaries)) == len(summaries)
    for _, summary in metric_catalogue.summaries():
        assert summary.reduce in (FINAL, metric_catalogue.AT_BEST_VAL, metric_catalogue.AUC)
        assert summary.shown in (metric_catalogue.TERMINAL, metric_catalogue.REPORT, None)
    terms = [term for term, _ in metric_catalogue.definitions()]
    assert len(set(terms)) == len(terms) and all(text for _, text in
                                                 metric_catalogue.definitions())


def test_an_undeclared_metric_or_type_is_refused_with_the_declared_ones_named() -> None:
    with pytest.raises(KeyError, match="no metric 'test_brier' is declared; declared: epoch, "):
        metric_catalogue.metric("test_brier")
    with pytest.raises(KeyError, match="no metric type 'float32'; valid: int32, float64, "):
        arrow_type("float32")


def test_the_outputs_read_the_directions_the_metrics_declare() -> None:
    from runner.grid.protocol import SECONDARY, SELECT
    from runner.report.latex import columns
    from runner.ui.metrics import higher_is_better

    assert SELECT == {"val_acc": False, "val_loss": True}
    assert SECONDARY == {"val_acc": ("val_loss", True), "val_loss": ("val_acc", False)}
    assert not higher_is_better("ece") and higher_is_better("test_acc")
    assert higher_is_better("learning_rate")  # declared neither way
    assert columns() == [("final acc.", "final_test_acc", 4, True), ("NLL", "test_nll", 3, False),
                         ("ECE", "ece", 3, False)]


@pytest.fixture
def declared(monkeypatch: pytest.MonkeyPatch) -> Iterator[Metric]:
    from runner.report import load

    # the reader keeps the schema it builds for the process: built again with NEW, and after
    load._polars_schema.cache_clear()
    monkeypatch.setattr(metric_catalogue, "METRICS", (*metric_catalogue.METRICS, NEW))
    yield NEW
    monkeypatch.undo()
    load._polars_schema.cache_clear()


def events(grid_dir: Path, job_id: str) -> EventAccumulator:
    accumulator = EventAccumulator(str(grid_dir / TENSORBOARD_DIR / job_id))
    accumulator.Reload()
    return accumulator


@pytest.mark.slow
def test_a_new_declaration_flows_into_every_output(tmp_path: Path, declared: Metric) -> None:
    from jobs.engine.train import run_job
    from runner.report.document import plot_titles
    from runner.report.formats import display
    from runner.report.html import charts
    from runner.report.identical import hashed_columns
    from runner.report.pipeline import aggregate
    from runner.report.plot_data import read_plot_data
    from runner.report.plots import figure_names, make_figures
    from runner.ui.metrics import chart_metrics, higher_is_better

    finals: dict[str, list[float]] = {}
    for strategy in ("onehot", "fixed(c=0.9, nc=0.1)"):
        for seed in range(2):
            spec = JobSpec.from_dict({**SETTINGS, "strategy": strategy, "seed": seed})
            result = run_job(spec, tmp_path, grid="catalogue", threads=1, tensorboard=True)
            assert result.state == "done", result.error
            rows = rundir_view.rows(tmp_path, spec.job_id)
            values = [row["val_confidence"] for row in rows]  # measured by the engine
            assert len(values) == 3 and all(-1.0 <= value <= 1.0 for value in values)
            written = [event.value for event in events(tmp_path, spec.job_id).Scalars(
                "val/confidence")]
            assert written == pytest.approx(values)
            finals.setdefault(strategy, []).append(values[-1])

    assert results.metrics_schema().field("val_confidence").type == pa.float64()
    assert tensorboard.scalar_tags()["val_confidence"] == "val/confidence"
    assert "val_confidence" in chart_metrics() and higher_is_better("val_confidence")
    assert "val_confidence" in hashed_columns()

    aggregation = aggregate(tmp_path, plots=False)
    rows = {row["strategy"]: row for row in aggregation.summary.rows}
    assert set(rows) == {"onehot", "fixed(c=0.9, nc=0.1, normalize=false)"}
    assert rows["onehot"]["final_val_confidence_mean"] == pytest.approx(
        statistics.mean(finals["onehot"]))
    headers, cells = display(aggregation.summary)
    assert "val confidence" in headers
    summary_dir = tmp_path / "summary"
    with open(summary_dir / "summary.csv", newline="") as handle:
        header = next(csv.reader(handle))
    assert {f"final_val_confidence_{s}" for s in ("mean", "std", "ci_low", "ci_high")} <= set(
        header)
    report = (summary_dir / "report.md").read_text()
    definitions = report[report.index("## Definitions"):report.index("## Statistics")]
    assert "final validation confidence" in definitions
    assert "| val confidence |" in report
    assert "val confidence" in (summary_dir / "summary.tex").read_text()

    # the figures are drawn by a worker process, which this test's declaration does not reach:
    # drawn here, from what the report would hand it
    summary = aggregation.summary
    plot_data = read_plot_data(aggregation.data, summary.groups)
    assert "val_confidence" in figure_names(summary, plot_data)
    figure = make_figures(summary, plot_data, only=["val_confidence"])["val_confidence"]
    assert figure.axes[0].get_ylabel() == "validation confidence"
    chart = charts(summary, plot_data)["val_confidence"]
    assert "Validation confidence over epochs" in str(chart["layout"]["title"])
    assert plot_titles()["val_confidence"] == "Validation confidence over epochs"
