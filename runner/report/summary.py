"""A summary from a grid's jobs: groups, their statistics, identical groups, the comparison with
the baseline. The steps are apart so that `tvo aggregate` can send the figure worker what it
draws as soon as it is known (pipeline.py); `summarise` runs them all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from runner.report.baseline import DEFAULT_BASELINE, choose_baseline, compare
from runner.report.identical import cluster_text, identical_groups, representatives
from runner.report.labels import Labels
from runner.report.load import GridData
from runner.report.model import Group, Job, Summary
from runner.report.tables import (
    add_robust,
    done_ids,
    group_row,
    make_groups,
    per_job_measures,
    rank_order,
    resolve_keys,
)


@dataclass(frozen=True)
class Grouping:
    """The jobs a summary covers, grouped, with their measures and identical clusters."""

    keys: list[str]
    groups: list[Group]  # in the summary's order: best first
    labels: Labels
    measures: dict[str, dict[str, Any]]
    clusters: list[list[Group]]  # groups with bit-identical runs, representative first


def group_jobs(jobs: Sequence[Job], by: Sequence[str] | None,
               default_keys: Sequence[str] | None = None) -> tuple[list[str], list[Group],
                                                                    Labels]:
    """The grouping keys (`by`, else `default_keys`, else the swept settings) and the groups."""
    keys = resolve_keys(jobs, by if by is not None else default_keys)
    groups, labels = make_groups(jobs, keys)
    return keys, groups, labels


def measure(data: GridData, keys: list[str], groups: list[Group], labels: Labels, *,
            threshold: float, measures: dict[str, dict[str, Any]] | None = None) -> Grouping:
    """The per-job measures (`measures`, if read already), the groups ranked by them, and the
    identical clusters (their labels joined in the legends)."""
    if measures is None:
        measures = per_job_measures(data, done_ids(groups), threshold)
    ranked = [groups[i] for i in rank_order(groups, measures)]
    in_grid_order = sorted(ranked, key=lambda g: labels.hue_order.index(labels.hue_label(g.key)))
    clusters = identical_groups(data, in_grid_order, keys,
                                lambda group: labels.facet_label(group.key), measures)
    labels = labels.with_identical([[g.key for g in c] for c in clusters],
                                   [g.key for g in groups])
    return Grouping(keys, ranked, labels, measures, clusters)


def describe(grouping: Grouping, *, threshold: float, baseline: str | None,
             default_baseline: tuple[str, Any] = DEFAULT_BASELINE,
             method_settings: Sequence[str] = ()) -> Summary:
    """Everything but the comparison (what the figures need; the comparison's statistics
    libraries take a second to import)."""
    keys, groups = grouping.keys, grouping.groups
    rows = [group_row(group, keys, grouping.measures) for group in groups]
    copies = representatives(grouping.clusters)
    for row in rows:
        row["identical_to"] = copies.get(row["group"])
    chosen, note = choose_baseline(groups, keys, baseline, default_baseline)
    return Summary(keys=keys, labels=grouping.labels, groups=groups, rows=rows,
                   baseline=chosen, baseline_note=note, threshold=threshold,
                   identical=tuple(cluster_text(grouping.clusters)),
                   method_settings=tuple(method_settings))


def compare_groups(summary: Summary, measures: dict[str, dict[str, Any]]) -> Summary:
    """The summary with its bootstrap columns and its comparison filled (rows are new dicts)."""
    rows = [dict(row) for row in summary.rows]
    add_robust(rows, summary.groups, measures)
    note = summary.baseline_note
    if summary.baseline is not None:
        note = compare(summary.groups, rows, summary.keys, summary.baseline, measures,
                       summary.method_settings)
    return dataclasses.replace(summary, rows=rows, baseline_note=note)


def summarise(data: GridData, *, threshold: float = 0.9, by: Sequence[str] | None = None,
              baseline: str | None = None, jobs: Sequence[Job] | None = None,
              default_keys: Sequence[str] | None = None,
              default_baseline: tuple[str, Any] = DEFAULT_BASELINE) -> Summary:
    """Groups of `jobs` (every job of the grid by default), their statistics and the comparison
    with the baseline."""
    keys, groups, labels = group_jobs(list(data.jobs.values()) if jobs is None else jobs, by,
                                      default_keys)
    grouping = measure(data, keys, groups, labels, threshold=threshold)
    summary = describe(grouping, threshold=threshold, baseline=baseline,
                       default_baseline=default_baseline)
    return compare_groups(summary, grouping.measures)
