"""The values an aggregation passes around: jobs, groups, the summary, and what plots draw.

Kept apart from the modules that compute them (polars, pyarrow, scipy) so the figure workers,
which receive them pickled, import only this, numpy and matplotlib.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from runner.report.labels import Labels


@dataclass(frozen=True)
class Job:
    """One job of the grid as found on disk."""

    job_id: str
    state: str  # done | diverged | failed | running | cancelled | pending
    settings: dict[str, Any]  # every JobSpec setting and strategy_name; lists as tuples
    error: str | None = None
    log: str | None = None
    has_metrics: bool = False


@dataclass(frozen=True)
class Group:
    key: tuple[Any, ...]  # values of the grouping settings, in their order
    name: str  # every grouping setting with its full value: `strategy=fixed(c=0.9, ...); lr=0.1`
    label: str  # what tells it apart from the other groups: `fixed; lr=0.1` (see labels)
    jobs: tuple[Job, ...]
    done_ids: tuple[str, ...]  # its jobs that are done: the ones its statistics use

    @cached_property
    def done_jobs(self) -> tuple[Job, ...]:
        """Its done jobs, in `jobs` order (a set lookup: groups of 20,000 jobs are common)."""
        done = set(self.done_ids)
        return tuple(job for job in self.jobs if job.job_id in done)


def without_jobs(group: Group) -> Group:
    """The group as the figure workers receive it: figures draw names, keys and done ids, and
    its jobs' settings would be most of what is pickled (100,000 jobs: seconds)."""
    return dataclasses.replace(group, jobs=())


@dataclass(frozen=True)
class Summary:
    """Everything the formats, plots and report need."""

    keys: list[str]
    labels: Labels
    groups: list[Group]  # sorted like rows
    rows: list[dict[str, Any]]  # one per group, best first
    baseline: tuple[str, Any] | None  # (key, value) compared against, None when no comparison
    baseline_note: str  # why there is no comparison, or which groups lack a baseline
    threshold: float
    identical: tuple[str, ...] = ()  # a sentence per cluster of bit-identical groups
    # settings that come with the compared value (a comparison's tuned ones: each method has
    # its selected lr): not paired on
    method_settings: tuple[str, ...] = ()

    def drawn(self) -> list[int]:
        """Indices of the rows the figures draw: one group per identical cluster."""
        return [i for i, row in enumerate(self.rows) if row.get("identical_to") is None]


@dataclass(frozen=True)
class Curve:
    """Mean over seeds per epoch, with the CI band (NaN where fewer than two seeds)."""

    group: Group
    epochs: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


@dataclass(frozen=True)
class Trajectory:
    """Mean over seeds of each class's targets per epoch: the class value and the non-class
    value trained on (from the target tables, normalised where the strategy normalises), or the
    raw c_i and nc_i where no table was recorded."""

    group: Group
    epochs: np.ndarray
    target_class: np.ndarray  # epochs x classes
    target_nonclass: np.ndarray
    trained_on: bool = True  # from the target tables; False: raw c_i, nc_i


@dataclass(frozen=True)
class Reliability:
    """A group's reliability bins at the final epoch, pooled over its seeds: per bin the
    predictions' count (summed) and their mean confidence and accuracy (count-weighted; NaN in
    an empty bin)."""

    group: Group
    count: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray


@dataclass(frozen=True)
class TuningPanel:
    """One method's tuning curve: the expected best validation score of k configurations, with
    its simultaneous band (NaN without one)."""

    label: str  # the method and its other settings, as the tables name it
    hue: str  # the method's short name (its colour)
    facet: str  # its other swept settings ("" when there are none)
    budgets: np.ndarray
    expected: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


@dataclass(frozen=True)
class ProfileCurve:
    """A method's performance profile over several tasks (bootstrap.Profile) and its hue."""

    hue: str
    thresholds: np.ndarray
    fraction: np.ndarray
    low: np.ndarray
    high: np.ndarray


@dataclass(frozen=True)
class PlotData:
    """Everything the figures and the HTML charts draw, read once for both."""

    groups: list[Group]  # groups with done jobs, best first, one per identical cluster
    curves: dict[str, list[Curve]]  # metrics column -> one curve per group
    trajectories: list[Trajectory]
    reliability: list[Reliability] = field(default_factory=list)  # groups with bins, best first
    tuning: list[TuningPanel] = field(default_factory=list)  # comparison grids only
    tuning_metric: str = ""  # the validation metric the tuning curves show
    profiles: list[ProfileCurve] = field(default_factory=list)  # several tasks only
    profile_tasks: str = ""  # what the tasks are, e.g. "2 datasets"
