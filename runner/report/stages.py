"""A comparison grid's two stages as the report reads them: each job is a tuning run (stage 1:
one of `budget` configurations of a method, one seed), a final run (stage 2: the selected
configuration on a fresh seed) or outside the protocol (an earlier selection's final seeds, jobs
of another grid run into the same dir). The stages come from the grid's `compare:` section
(runner.grid.protocol), read once from grid.yaml as data, and the selection from the runs'
validation scores in the metrics, the rule `tvo run` selects by; never from guesses about seeds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from jobs.rundir.states import DONE
from runner.grid.protocol import SECONDARY, Compare, Selection, select_from, stage_two
from runner.report.labels import Labels
from runner.report.load import GRID_FILE, AggregateError, GridData
from runner.report.model import Job
from runner.report.tables import groupable_settings

TUNING, FINAL, OUTSIDE = "tuning", "final", "outside the protocol"


@dataclass(frozen=True)
class Protocol:
    """The grid's comparison protocol and the settings its stages cross it with."""

    compare: Compare
    base: Mapping[str, Any]
    sweeps: Mapping[str, Sequence[Any]]

    @property
    def methods(self) -> list[Any]:
        """The compared values, in grid order."""
        by = self.compare.by
        return list(self.sweeps[by]) if by in self.sweeps else [self.base.get(by)]

    def keys(self) -> list[str]:
        """What the final runs are grouped by: the compared setting and the other swept ones
        (not the tuned ones: each method has its own selected values)."""
        swept = {self.compare.by} | {key for key, values in self.sweeps.items()
                                     if len(values) > 1}
        return [name for name in groupable_settings() if name in swept]


def read_protocol(grid_dir: Path) -> Protocol | None:
    """The protocol of grid.yaml, or None when the grid has no `compare:` section."""
    from runner.grid.files import GridError, read_grid_file

    path = Path(grid_dir) / GRID_FILE
    if not path.is_file():
        return None
    try:
        content = read_grid_file(path, str(path))
    except GridError:
        return None  # not a grid file tvo wrote; the jobs are reported as they are
    if "compare" not in content:
        return None
    from runner.grid.expand import load_grid

    try:
        grid = load_grid(str(path))
    except GridError as exc:
        raise AggregateError(f"{exc}; without its compare: section the tuning and final runs "
                             "cannot be told apart, so nothing is reported") from None
    assert grid.compare is not None
    return Protocol(grid.compare, dict(grid.base), dict(grid.sweeps))


@dataclass(frozen=True)
class Method:
    """One method (with the other swept settings: a context) through both stages."""

    context: dict[str, Any]
    label: str  # the method's short name (and its other settings), as the tables show it
    tuning_ids: tuple[str, ...]  # its configurations' jobs, in draw order
    selection: Selection | None  # None: no configuration has a validation score yet
    final_ids: tuple[str, ...] = ()  # the selected configuration's final seeds' jobs

    def final_done(self, jobs: Mapping[str, Job]) -> list[str]:
        return [job_id for job_id in self.final_ids
                if job_id in jobs and jobs[job_id].state == DONE]


@dataclass(frozen=True)
class Stages:
    protocol: Protocol
    methods: list[Method]
    stage_of: dict[str, str]  # job_id -> TUNING | FINAL | OUTSIDE, every job of the grid dir
    labels: Labels = field(default_factory=lambda: Labels((), None, ()))

    def jobs(self, data: GridData, stage: str) -> list[Job]:
        return [job for job_id, job in data.jobs.items() if self.stage_of[job_id] == stage]

    def count(self, stage: str) -> int:
        return sum(value == stage for value in self.stage_of.values())


def validation_scores(data: GridData, metric: str,
                      secondary: str) -> dict[str, tuple[float | None, float | None]]:
    """Each job's last non-null value of both validation metrics (its final evaluated epoch's),
    read from the metrics like every other number of the report."""
    frame = data.collect(
        data.metrics.select("job_id", "epoch", metric, secondary)
        .group_by("job_id")
        .agg(pl.col(metric).sort_by("epoch").drop_nulls().last().alias("score"),
             pl.col(secondary).sort_by("epoch").drop_nulls().last().alias("secondary"))
    )
    return {job_id: (_finite(score), _finite(second)) for job_id, score, second in
            zip(frame["job_id"], frame["score"], frame["secondary"], strict=True)}


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def find_stages(data: GridData, protocol: Protocol) -> Stages:
    """Every job's stage, and each method's selection by the protocol's rule."""
    from runner.grid.protocol import tuning_jobs

    compare = protocol.compare
    done = {job_id for job_id, job in data.jobs.items() if job.state == DONE}
    scores = validation_scores(data, compare.select, SECONDARY[compare.select][0])

    def score_of(spec: Any) -> tuple[float | None, float | None]:
        return scores.get(spec.job_id, (None, None)) if spec.job_id in done else (None, None)

    plan = tuning_jobs(protocol.base, protocol.sweeps, compare)
    selections = {_context_key(s.context): s
                  for s in select_from(protocol.base, protocol.sweeps, compare, score_of)}
    keys = protocol.keys()
    labels = Labels.of(keys, [tuple(context.get(k) for k in keys) for context, _ in plan])
    tuning = {spec.job_id for _, specs in plan for spec in specs}
    methods = []
    for context, specs in plan:
        selection = selections.get(_context_key(context))
        # a final seed equal to the tuning seed would be a run selected on: never final
        finals = tuple(spec.job_id for spec in stage_two([selection], compare)
                       if spec.job_id not in tuning) if selection else ()
        methods.append(Method(context, labels.group(tuple(context.get(k) for k in keys)),
                              tuple(spec.job_id for spec in specs), selection, finals))
    final = {job_id for method in methods for job_id in method.final_ids}
    stage_of = {job_id: TUNING if job_id in tuning else FINAL if job_id in final else OUTSIDE
                for job_id in data.jobs}
    return Stages(protocol, methods, stage_of, labels)


def _context_key(context: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((key, repr(value)) for key, value in context.items()))
