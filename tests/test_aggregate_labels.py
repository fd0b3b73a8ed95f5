"""Labels that say what differs: exact labels for the shipped grids and a few others, the
strategy defaults read without torch against the live registry, labels in every output."""

from __future__ import annotations

import csv
import io

import pytest
import yaml

from jobs.strategies.params import format_call
from runner.report.labels import Labels
from runner.report.pipeline import aggregate
from runner.report.strategy_labels import static_strategies, strategy_defaults, strategy_labels
from tests.fake_grid import curve_rows, make_spec, write_run

GRIDS = __import__("pathlib").Path(__file__).parent.parent / "runner" / "grids"


def canonical(strategy: str) -> str:
    return make_spec(strategy=strategy).strategy


def shipped_strategies(grid: str) -> list[str]:
    return [canonical(s) for s in yaml.safe_load((GRIDS / f"{grid}.yaml").read_text())[
        "grid"]["strategy"]]


def test_defaults_read_from_the_declarations_match_the_registry():
    from jobs.strategies import STRATEGIES
    from jobs.strategies.fixed import StaticStrategy
    from jobs.strategies.params import bind

    defaults = strategy_defaults()
    assert set(defaults) == set(STRATEGIES)
    for name, cls in STRATEGIES.items():
        assert format_call(name, defaults[name].values) == format_call(
            name, bind(name, cls.params, {})), name
        options = {p.name: {o.name: bind(o.name, o.params, {}) for o in p.options}
                   for p in cls.params if p.options}
        assert defaults[name].options == options, name
    assert static_strategies() == {name for name, cls in STRATEGIES.items()
                                   if issubclass(cls, StaticStrategy)}


def test_study_strategies_are_named_by_what_differs():
    labels = strategy_labels(shipped_strategies("study"))
    assert list(labels.values()) == [
        "onehot",
        "tvo(init=soft, adapt=none, normalize=false)",
        "tvo(init=soft, adapt=none, normalize=true)",
        "tvo(init=average_nudge, adapt=none, normalize=false)",
        "tvo(init=average_nudge, adapt=none, normalize=true)",
        "tvo(init=average_nudge, adapt=sigma, normalize=false)",
        "tvo(init=average_nudge, adapt=sigma, normalize=true)",
    ]


def test_quickstart_strategies_at_their_defaults_are_named_alone():
    assert list(strategy_labels(shipped_strategies("quickstart")).values()) == [
        "onehot", "fixed", "lecun", "label_smoothing"]


@pytest.mark.parametrize(("strategies", "expected"), [
    (["fixed(c=0.9, nc=0.1)", "fixed(c=0.8, nc=0.2)"],  # values differ between groups
     ["fixed(c=0.9, nc=0.1)", "fixed(c=0.8, nc=0.2)"]),
    (["label_smoothing(eps=0.2)"], ["label_smoothing(eps=0.2)"]),  # differs from its default
    (["tvo(adapt=sigma(m=2))", "tvo"],  # an option's own parameter
     ["tvo(adapt=sigma(m=2.0))", "tvo(adapt=sigma(m=1.0))"]),
    (["tvo(init=soft(c=0.7))", "onehot"], ["tvo(init=soft(c=0.7))", "onehot"]),
])
def test_strategy_labels(strategies, expected):
    assert list(strategy_labels([canonical(s) for s in strategies]).values()) == expected


def test_unreadable_strategy_strings_keep_their_spelling():
    assert strategy_labels(["not a strategy((", "onehot"]) == {
        "not a strategy((": "not a strategy((", "onehot": "onehot"}


def test_group_labels_put_the_strategy_first_and_facet_by_the_rest():
    keys = ["dataset", "strategy", "lr"]
    fixed = canonical("fixed(c=0.8, nc=0.2)")
    labels = Labels.of(keys, [("digits", "onehot", 0.5), ("digits", fixed, 0.5),
                              ("mnist1d", "onehot", 2.0)])
    assert labels.hue == "strategy" and labels.facets == ("dataset", "lr")
    assert labels.group(("digits", fixed, 0.5)) == "fixed(c=0.8, nc=0.2); dataset=digits; lr=0.5"
    assert labels.facet_label(("mnist1d", "onehot", 2.0)) == "dataset=mnist1d; lr=2"
    assert labels.hue_order == ("onehot", "fixed(c=0.8, nc=0.2)")
    assert labels.facet_order == ("dataset=digits; lr=0.5", "dataset=mnist1d; lr=2")
    without_strategy = Labels.of(["lr"], [(0.1,), (0.5,)])
    assert (without_strategy.hue, without_strategy.group((0.1,))) == ("lr", "lr=0.1")
    assert Labels.of([], [()]).group(()) == "all jobs"


@pytest.fixture(scope="module")
def quickstart_like(tmp_path_factory):
    """The quickstart's strategies at two learning rates, 2 seeds, aggregated without plots."""
    root = tmp_path_factory.mktemp("grid")
    for index, strategy in enumerate(["onehot", "fixed(c=0.9, nc=0.1)", "lecun",
                                      "label_smoothing(eps=0.1)"]):
        for lr in (0.5, 2.0):
            for seed in range(2):
                write_run(root, make_spec(strategy=strategy, lr=lr, seed=seed),
                          curve_rows([0.1, 0.5, 0.8 + 0.02 * index + 0.01 * seed]))
    return root, aggregate(root, plots=False)


def test_labels_in_the_files_next_to_the_full_settings(quickstart_like):
    root, result = quickstart_like
    rows = list(csv.DictReader(io.StringIO((root / "summary" / "summary.csv").read_text())))
    by_label = {row["label"]: row for row in rows}
    assert set(by_label) == {f"{s}; lr={lr}" for s in ("onehot", "fixed", "lecun",
                                                       "label_smoothing") for lr in (0.5, 2)}
    fixed = by_label["fixed; lr=2"]
    assert fixed["strategy"] == "fixed(c=0.9, nc=0.1, normalize=false)"
    assert fixed["group"] == "strategy=fixed(c=0.9, nc=0.1, normalize=false); lr=2"
    import pyarrow.parquet as pq

    table = pq.read_table(root / "summary" / "summary.parquet")
    assert "label_smoothing(eps=0.1, variant=uniform)" in table.column("strategy").to_pylist()
    assert "label_smoothing; lr=0.5" in table.column("label").to_pylist()


def test_labels_in_the_markdown_and_the_report(quickstart_like):
    root, _ = quickstart_like
    report = (root / "summary" / "report.md").read_text()
    assert "| label_smoothing | 0.5 | 2 |" in report  # strategy and lr columns of the table
    assert ("| label_smoothing; lr=0.5 | strategy=label_smoothing(eps=0.1, variant=uniform); "
            "lr=0.5 |") in report  # Groups: label -> settings in full
    assert "| lecun; lr=2 | onehot; lr=2 | paired t (2 pairs) |" in report
