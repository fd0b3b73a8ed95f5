"""Groups whose runs are bit-identical: two strategies that train exactly alike (an adaptation
that never moves a target, say) are one result, not two.

Each done job's metrics rows are hashed (every measured column of every epoch, timings left
out); two groups are identical when they hold the same runs apart from their grouping settings
(the same seeds and other settings) with equal hashes. The summary then counts such a cluster
once in the Holm family, draws it once, and says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import polars as pl

from jobs import metric_catalogue
from runner.report.load import GridData
from runner.report.model import Group
from runner.report.tables import groupable_settings, settings_of


def hashed_columns() -> tuple[str, ...]:
    """What a run measured (the metrics jobs.metric_catalogue declares MEASURED): timings
    differ between identical runs."""
    return metric_catalogue.names(metric_catalogue.MEASURED)


def run_hashes(data: GridData, job_ids: Sequence[str]) -> dict[str, int]:
    """job_id -> a hash of its metrics rows in epoch order."""
    if not job_ids:
        return {}
    wanted = pl.DataFrame({"job_id": list(job_ids)}, schema={"job_id": pl.String})
    hashed = hashed_columns()
    frame = data.collect(
        data.metrics.select("job_id", "epoch", *hashed)
        .join(wanted.lazy(), on="job_id")
        .select("job_id", "epoch", pl.struct("epoch", *hashed).hash().alias("row"))
        .group_by("job_id")
        .agg(pl.col("row").sort_by("epoch"))
        .select("job_id", pl.col("row").hash().alias("run"))
    )
    return dict(zip(frame["job_id"].to_list(), frame["run"].to_list(), strict=True))


def _signature(group: Group, keys: Sequence[str], hashes: dict[str, int],
               ) -> frozenset[tuple[Any, ...]]:
    """The group's runs by everything but its grouping settings, each with its hash."""
    rest = settings_of([name for name in groupable_settings() if name not in keys])
    return frozenset((rest(job.settings), hashes[job.job_id]) for job in group.done_jobs
                     if job.job_id in hashes)


def _candidates(groups: Sequence[Group], keys: Sequence[str],
                facet: Callable[[Group], str],
                measures: dict[str, dict[str, Any]]) -> list[list[Group]]:
    """Groups of one facet whose runs have equal per-job measures (final values, AUC, the
    epoch of the threshold): the only ones that can be identical, found without reading the
    metrics again (most grids have none)."""
    def summary(job_id: str) -> str:  # repr: NaN equals NaN
        return repr(sorted(measures.get(job_id, {}).items()))

    hashes = {job_id: hash(summary(job_id)) for group in groups for job_id in group.done_ids}
    alike: dict[tuple[str, frozenset[tuple[Any, ...]]], list[Group]] = {}
    for group in groups:
        signature = _signature(group, keys, hashes)
        if signature:
            alike.setdefault((facet(group), signature), []).append(group)
    return [members for members in alike.values() if len(members) > 1]


def identical_groups(data: GridData, groups: Sequence[Group], keys: Sequence[str],
                     facet: Callable[[Group], str],
                     measures: dict[str, dict[str, Any]]) -> list[list[Group]]:
    """Clusters of two or more groups of one facet (`facet`: a group's panel, its settings but
    the compared one) with bit-identical runs, each in `groups` order (its first group
    represents it). `measures`: per-job measures (tables.per_job_measures), which rule out
    most groups before any run is hashed."""
    candidates = _candidates(groups, keys, facet, measures)
    if not candidates:
        return []
    hashes = run_hashes(data, [job_id for members in candidates for group in members
                               for job_id in group.done_ids])
    clusters: dict[tuple[str, frozenset[tuple[Any, ...]]], list[Group]] = {}
    for members in candidates:
        for group in members:
            signature = _signature(group, keys, hashes)
            if signature:
                clusters.setdefault((facet(group), signature), []).append(group)
    order = {group.name: i for i, group in enumerate(groups)}
    found = [members for members in clusters.values() if len(members) > 1]
    return sorted(found, key=lambda members: order[members[0].name])


def representatives(clusters: Sequence[Sequence[Group]]) -> dict[str, str]:
    """Group name -> the name of the group that represents it (its cluster's first), for the
    groups that are not first."""
    return {member.name: cluster[0].name for cluster in clusters for member in cluster[1:]}


def cluster_text(clusters: Sequence[Sequence[Group]]) -> list[str]:
    """One sentence per cluster, for the reports and the console."""
    return [f"{' = '.join(group.label for group in cluster)}: bit-identical metrics on every "
            f"run ({len(cluster[0].done_ids)} each); counted once in the Holm family and drawn "
            f"once, as {cluster[0].label}" for cluster in clusters]
