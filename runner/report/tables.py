"""Per-job measures, groups of seeds, and the statistics of each group (the comparison between
groups is baseline.py's, the whole summary summary.py's).

A group is every job whose grouping settings are equal (by default: every swept setting except
the seed). Statistics use the done jobs of a group; diverged, failed and unfinished jobs are
counted per group but never averaged in, so a strategy that diverges on some seeds shows that
in its counts rather than in a mean over the survivors alone.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from operator import itemgetter, methodcaller
from typing import Any

import polars as pl

from jobs import metric_catalogue
from jobs.rundir.states import CANCELLED, DIVERGED, DONE, FAILED, PENDING, RUNNING
from jobs.spec import JobSpec
from runner.report import stats
from runner.report.labels import Labels, format_value
from runner.report.load import AggregateError, GridData
from runner.report.model import Group, Job

COMPARED = "final_test_acc"  # the measure compared with the baseline
STATE_COLUMNS = (FAILED, DIVERGED, RUNNING, CANCELLED,
                 PENDING)


def summary_measures() -> dict[str, str]:
    """summary name -> what it is, as the metrics declare them (jobs.metric_catalogue); each gets
    _mean, _std, _ci_low, _ci_high columns."""
    return {summary.name: summary.description for _, summary in metric_catalogue.summaries()}


# ---------------------------------------------------------------------------------------------
# Grouping keys


@functools.cache
def groupable_settings() -> tuple[str, ...]:
    """Settings that can define a group: what a job computes (not where its data lies)."""
    return tuple(f.name for f in dataclasses.fields(JobSpec) if f.metadata["identity"])


def settings_of(names: Sequence[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A function giving a job's values of `names` (None where a setting is missing), in one
    C call per job where it has them all: groups of 20,000 jobs are keyed many times."""
    names = tuple(names)
    pick = itemgetter(*names) if names else (lambda settings: ())

    def values(settings: dict[str, Any]) -> tuple[Any, ...]:
        try:
            found = pick(settings)
        except KeyError:  # a setting an older run dir lacks
            return tuple(settings.get(name) for name in names)
        return found if len(names) != 1 else (found,)

    return values


def swept_settings(jobs: Sequence[Job]) -> list[str]:
    """Settings whose values differ between jobs, in JobSpec order, without the seed."""
    swept = []
    every = [job.settings for job in jobs]
    for name in groupable_settings():
        if name != "seed" and len(set(map(methodcaller("get", name), every))) > 1:
            swept.append(name)
    return swept


def resolve_keys(jobs: Sequence[Job], by: Sequence[str] | None) -> list[str]:
    if by is None:
        return swept_settings(jobs)
    valid = [*groupable_settings(), "strategy_name"]
    for key in by:
        if key not in valid:
            raise AggregateError(f"--by got unknown setting {key!r}; valid: {', '.join(valid)}")
    return list(dict.fromkeys(by))


def group_name(keys: Sequence[str], key: Sequence[Any]) -> str:
    """The full name of a group: every grouping setting with its canonical value."""
    if not keys:
        return "all jobs"
    return "; ".join(f"{name}={format_value(value)}" for name, value in zip(keys, key, strict=True))


def make_groups(jobs: Sequence[Job], keys: Sequence[str]) -> tuple[list[Group], Labels]:
    members: dict[tuple[Any, ...], list[Job]] = {}
    for job in jobs:
        members.setdefault(tuple(job.settings.get(k) for k in keys), []).append(job)
    labels = Labels.of(keys, list(members))
    groups = [Group(key, group_name(keys, key), labels.group(key), tuple(group),
                    tuple(job.job_id for job in group if job.state == DONE))
              for key, group in members.items()]
    return groups, labels


# ---------------------------------------------------------------------------------------------
# Per-job measures (the one pass over all metrics rows)


def per_job_measures(data: GridData, job_ids: Sequence[str],
                     threshold: float) -> dict[str, dict[str, Any]]:
    """Final-epoch values, the test accuracy at the best validation epoch, the first epoch at
    which validation accuracy reaches the threshold, and the AUC, per job. Epochs are chosen on
    validation, never on test (null where a job has no validation part)."""
    epoch = pl.col("epoch")
    val = pl.col("val_acc").sort_by("epoch")
    has_val = pl.col("val_acc").is_not_null().any()
    span = epoch.max() - epoch.min()

    def reduced(summary: metric_catalogue.Summary, column: str) -> pl.Expr:
        values = pl.col(column).sort_by("epoch")
        if summary.reduce == metric_catalogue.FINAL:
            return values.last()
        if summary.reduce == metric_catalogue.AT_BEST_VAL:
            return pl.when(has_val).then(
                values.get(val.fill_null(-1.0).arg_max())).otherwise(None)
        if summary.reduce == metric_catalogue.AUC:  # trapezoids between the evaluated epochs
            area = (epoch.sort().diff() * (values + values.shift(1)) / 2).sum()
            return pl.when(span > 0).then(area / span).otherwise(values.last())
        raise ValueError(f"summary {summary.name!r}: unknown reduce {summary.reduce!r}")

    declared = metric_catalogue.summaries()
    # every job is reduced and the wanted ones picked after: cheaper than filtering 1M rows
    frame = data.collect(
        data.metrics.select("job_id", "epoch", *dict.fromkeys(["val_acc", *(
            metric.name for metric, _ in declared)]))
        .group_by("job_id")
        .agg(
            *(reduced(summary, metric.name).alias(summary.name) for metric, summary in declared),
            epochs_to_threshold=epoch.filter(pl.col("val_acc") >= threshold).min(),
        )
    )
    wanted = set(job_ids)
    return {row.pop("job_id"): row for row in frame.to_dicts() if row["job_id"] in wanted}


# ---------------------------------------------------------------------------------------------
# Statistics per group


def done_ids(groups: Sequence[Group]) -> list[str]:
    return [job_id for group in groups for job_id in group.done_ids]


def rank_order(groups: Sequence[Group], measures: dict[str, dict[str, Any]]) -> list[int]:
    """The groups' indices in the summary's order: best mean final test accuracy first (groups
    without one last), then by name. Needs only the measures, so the figure worker can be sent
    the curves, in this order, before the statistics are done."""
    def rank(i: int) -> tuple[bool, float, str]:
        group = groups[i]
        mean = stats.mean([measures[j][COMPARED] for j in group.done_ids if j in measures])
        return (math.isnan(mean), -mean if not math.isnan(mean) else 0.0, group.name)

    return sorted(range(len(groups)), key=rank)


# what a row holds before it is compared (baseline.compare fills these), and after: the column
# types are formats.summary_columns'
ROBUST_COLUMNS = ("final_test_acc_boot_low", "final_test_acc_boot_high", "final_test_acc_iqm",
                  "final_test_acc_iqm_low", "final_test_acc_iqm_high")
COMPARISON_COLUMNS: dict[str, Any] = {
    "baseline": None, "test": None, "pairs": None, "test_note": None,
    "diff_final_test_acc": stats.NAN, "diff_ci_low": stats.NAN, "diff_ci_high": stats.NAN,
    "p_value": stats.NAN, "p_holm": stats.NAN, "significant": None,
    "p_improvement": stats.NAN, "p_improvement_low": stats.NAN, "p_improvement_high": stats.NAN,
}


def group_row(group: Group, keys: Sequence[str], measures: dict[str, dict[str, Any]],
              ) -> dict[str, Any]:
    """A group's statistics over its done jobs: `runs` counts them, `seeds` their distinct
    seeds (fewer when the group pools other settings, e.g. --by strategy over two lr)."""
    row: dict[str, Any] = dict(zip(keys, group.key, strict=True))
    row["group"] = group.name
    row["label"] = group.label
    row["jobs"] = len(group.jobs)
    done_jobs = [job for job in group.done_jobs if job.job_id in measures]
    done = [measures[job.job_id] for job in done_jobs]
    row["runs"] = len(done)
    row["seeds"] = len({job.settings.get("seed") for job in done_jobs})
    for state in STATE_COLUMNS:
        row[state] = sum(job.state == state for job in group.jobs)
    for name in summary_measures():
        value = stats.estimate([m[name] for m in done])
        row.update({f"{name}_mean": value.mean, f"{name}_std": value.std,
                    f"{name}_ci_low": value.ci_low, f"{name}_ci_high": value.ci_high})
    reached = stats.threshold_summary([m["epochs_to_threshold"] for m in done])
    row.update(epochs_to_threshold=reached.median_epochs, threshold_reached=reached.reached,
               threshold_never=reached.never)
    row.update(dict.fromkeys(ROBUST_COLUMNS, stats.NAN))
    row.update(COMPARISON_COLUMNS, identical_to=None)
    return row


def add_robust(rows: Sequence[dict[str, Any]], groups: Sequence[Group],
               measures: dict[str, dict[str, Any]]) -> None:
    """Fill each row's bootstrap CI of the mean final test accuracy and its IQM with CI."""
    from runner.report.bootstrap import mean_and_iqm_each

    samples = [[measures[j][COMPARED] for j in group.done_ids if j in measures]
               for group in groups]
    for row, (mean, middle) in zip(rows, mean_and_iqm_each(samples), strict=True):
        row.update(final_test_acc_boot_low=mean.low, final_test_acc_boot_high=mean.high,
                   final_test_acc_iqm=middle.value, final_test_acc_iqm_low=middle.low,
                   final_test_acc_iqm_high=middle.high)
