"""Methods compared on several tasks (data sets or architectures): the statistics of Agarwal et
al. 2021 across them. Per method, the IQM of every run of every task with a stratified
bootstrap CI, P(method > baseline) averaged over tasks with its CI, and a performance profile
(the fraction of runs above each score, tasks weighted equally). Only where the grid's facets
are tasks: across learning rates, say, a pooled score would mean nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from runner.report import bootstrap
from runner.report.model import ProfileCurve, Summary
from runner.report.tables import COMPARED

# settings whose values are different tasks rather than different ways to train on one
TASK_KEYS = ("dataset", "noise", "model", "hidden", "activation", "output", "shortcuts")


@dataclass(frozen=True)
class TaskSummary:
    keys: tuple[str, ...]  # the settings that make the tasks
    tasks: tuple[str, ...]  # one label per task
    rows: list[dict[str, Any]]  # per method: iqm (+ CI), p_improvement (+ CI) vs the baseline
    profiles: list[ProfileCurve] = field(default_factory=list)
    baseline: str = ""  # the baseline method's short name ("" without one)
    note: str = ""  # methods left out, and why

    @property
    def described(self) -> str:
        return f"{len(self.tasks)} tasks ({', '.join(self.keys)})"


def across_tasks(summary: Summary, measures: dict[str, dict[str, Any]]) -> TaskSummary | None:
    """The statistics across tasks, or None when the grid does not compare on several."""
    labels = summary.labels
    if (labels.hue is None or not labels.facets or len(labels.facet_order) < 2
            or len(labels.hue_order) < 2 or any(key not in TASK_KEYS for key in labels.facets)):
        return None
    scores: dict[str, dict[str, list[float]]] = {}
    copied = {labels.hue_label(group.key) for group, row in zip(summary.groups, summary.rows,
                                                                 strict=True)
              if row["identical_to"] is not None}
    copied -= {labels.hue_label(group.key) for group, row in zip(summary.groups, summary.rows,
                                                                  strict=True)
               if row["identical_to"] is None}  # a method that is a copy on every task
    for group in summary.groups:
        if labels.hue_label(group.key) in copied:
            continue  # drawn once, under the name of the method it copies
        values = [measures[j][COMPARED] for j in group.done_ids if j in measures]
        scores.setdefault(labels.hue_label(group.key), {})[labels.facet_label(group.key)] = [
            v for v in values if v is not None and math.isfinite(v)]
    tasks = labels.facet_order
    complete = [hue for hue in labels.hue_order
                if hue in scores and all(scores[hue].get(task) for task in tasks)]
    left_out = [hue for hue in labels.hue_order if hue in scores and hue not in complete]
    if len(complete) < 2:
        return None
    baseline = ""
    if summary.baseline is not None and summary.baseline[0] == labels.hue:
        baseline = labels.value(labels.hue, summary.baseline[1])
    per_method = {hue: [scores[hue][task] for task in tasks] for hue in complete}
    thresholds = bootstrap.thresholds_for(list(per_method.values()))
    rows, profiles = [], []
    for hue, runs in per_method.items():
        middle = bootstrap.pooled_iqm(runs)
        row: dict[str, Any] = {"method": hue, "runs": sum(len(r) for r in runs),
                               "iqm": middle.value, "iqm_low": middle.low,
                               "iqm_high": middle.high, "p_improvement": math.nan,
                               "p_improvement_low": math.nan, "p_improvement_high": math.nan}
        if baseline and hue != baseline and baseline in per_method:
            better = bootstrap.improvement_over_tasks(runs, per_method[baseline])
            row.update(p_improvement=better.value, p_improvement_low=better.low,
                       p_improvement_high=better.high)
        rows.append(row)
        profile = bootstrap.performance_profile(runs, thresholds)
        profiles.append(ProfileCurve(hue, profile.thresholds, profile.fraction, profile.low,
                                     profile.high))
    note = (f"left out for lack of runs on every task: {', '.join(left_out)}" if left_out
            else "")
    return TaskSummary(labels.facets, tuple(tasks), rows, profiles, baseline, note)


def task_cells(tasks: TaskSummary) -> tuple[list[str], list[list[str]]]:
    from runner.report.formats import interval_text

    headers = ["method", "runs", "IQM over all runs [95% stratified bootstrap CI]",
               f"P(method > {tasks.baseline or 'baseline'}), mean over tasks [95% CI]"]
    cells = [[row["method"], str(row["runs"]),
              interval_text(row["iqm"], row["iqm_low"], row["iqm_high"]),
              interval_text(row["p_improvement"], row["p_improvement_low"],
                            row["p_improvement_high"], 2)] for row in tasks.rows]
    return headers, cells

