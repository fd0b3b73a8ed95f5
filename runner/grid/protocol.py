"""The comparison protocol of a grid's `compare:` section: every method tuned on validation with
the same budget, then its selected configuration trained on fresh seeds.

    compare:
      by: strategy            # the methods being compared (the grid's values of this key)
      tune: {lr: loguniform(0.05, 5), momentum: choice(0, 0.9)}
      budget: 16              # configurations per method, the same for all
      select: val_acc         # or val_loss (lower is better)
      final_seeds: range(10)  # fresh seeds for each method's selected configuration

Stage 1 trains, for every method (and every combination of the grid's other swept keys), the
same `budget` configurations drawn from `tune` (runner.grid.spaces: the same draws for every method,
so none is luckier in its draws). Each method's configuration is then selected on its final
validation score, never on test, and stage 2 trains it with each of `final_seeds`. Both stages
write into the grid's dir like any jobs, so a rerun skips what is done and selects the same
configurations again from the files.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from jobs.rundir import results
from jobs.spec import JobSpec, grid_job_settings, settings
from runner.grid.spaces import Space, draw, parse_space
from runner.grid.sweeps import SweepError, parse_values

COMPARE_KEYS = ("by", "tune", "budget", "select", "final_seeds")
SELECT = {"val_acc": False, "val_loss": True}  # metric -> lower is better
DRAW_SEED = 0  # the tuning draws' seed: the same configurations for every method and rerun


class CompareError(ValueError):
    """A `compare:` section that cannot run; one line naming the key and what is valid."""


@dataclass(frozen=True)
class Compare:
    by: str
    tune: Mapping[str, Space]
    budget: int
    select: str
    final_seeds: tuple[int, ...]

    @property
    def minimize(self) -> bool:
        return SELECT[self.select]

    def to_plain(self) -> dict[str, Any]:
        return {"by": self.by, "tune": {key: str(space) for key, space in self.tune.items()},
                "budget": self.budget, "select": self.select,
                "final_seeds": list(self.final_seeds)}


def read_compare(label: str, section: Any) -> Compare:
    """The `compare:` section of grid `label`, checked."""
    where = f"{label}: compare"
    if not isinstance(section, Mapping):
        raise CompareError(f"{where}: expected a mapping of {', '.join(COMPARE_KEYS)}")
    unknown = sorted(set(section) - set(COMPARE_KEYS))
    if unknown:
        raise CompareError(f"{where}: unknown key {unknown[0]!r}; valid keys: "
                           f"{', '.join(COMPARE_KEYS)}")
    missing = [key for key in COMPARE_KEYS if key not in section]
    if missing:
        raise CompareError(f"{where}: missing {missing[0]!r} (needs {', '.join(COMPARE_KEYS)})")
    known = settings()
    by = section["by"]
    if not isinstance(by, str) or by not in known:
        raise CompareError(f"{where}.by: got {str(by)[:40]!r}; expected a setting, e.g. strategy")
    tune = section["tune"]
    if not isinstance(tune, Mapping) or not tune:
        raise CompareError(f"{where}.tune: expected settings with search spaces, e.g. "
                           "{lr: loguniform(0.01, 1)}")
    spaces: dict[str, Space] = {}
    for key, text in tune.items():
        if not isinstance(key, str) or key not in known or key in (by, "seed"):
            raise CompareError(f"{where}.tune: {str(key)[:40]!r} cannot be tuned; tune settings "
                               "other than the compared one and the seed")
        try:
            space = parse_space(f"{where}.tune.{key}", text)
        except SweepError as exc:
            raise CompareError(str(exc)) from None
        if space is None:
            raise CompareError(f"{where}.tune.{key}: got {str(text)[:40]!r}; expected a search "
                               "space: loguniform(a, b), uniform(a, b), intuniform(a, b) or "
                               "choice(a, b, ...)")
        spaces[key] = space
    budget = section["budget"]
    if not isinstance(budget, int) or isinstance(budget, bool) or not 1 <= budget <= 10_000:
        raise CompareError(f"{where}.budget: got {str(budget)[:40]!r}; expected a whole number "
                           "from 1 to 10000 (configurations per method)")
    select = section["select"]
    if select not in SELECT:
        raise CompareError(f"{where}.select: got {str(select)[:40]!r}; expected val_acc or "
                           "val_loss (selection is on validation, never on test)")
    return Compare(by, spaces, budget, select, _seeds(where, section["final_seeds"]))


def _seeds(where: str, value: Any) -> tuple[int, ...]:
    raw: list[Any] = []
    try:
        raw = value if isinstance(value, list) else parse_values(f"{where}.final_seeds",
                                                                 str(value)[:200], 10_000)
        seeds = tuple(seed for seed in raw if isinstance(seed, int) and not isinstance(seed, bool))
    except (SweepError, TypeError, ValueError):
        seeds = ()
    if not seeds or len(seeds) != len(raw) or len(seeds) > 10_000 or any(
            not 0 <= seed < 2**32 for seed in seeds):
        raise CompareError(f"{where}.final_seeds: expected seeds >= 0, e.g. range(10) or "
                           "[10, 11, 12]")
    return seeds


def contexts(base: Mapping[str, Any],
             sweeps: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's swept settings (the compared key's methods among
    them): the settings each stage crosses with its configurations or seeds."""
    keys = list(sweeps)
    datasets = grid_datasets(base, sweeps)
    return [grid_job_settings({**base, **dict(zip(keys, values, strict=True))}, datasets)
            for values in itertools.product(*sweeps.values())]


def grid_datasets(base: Mapping[str, Any], sweeps: Mapping[str, Sequence[Any]]) -> list[str]:
    """The datasets a grid's jobs train."""
    return [str(name) for name in sweeps.get("dataset", [base.get("dataset", JobSpec.dataset)])]


def stage_one(base: Mapping[str, Any], sweeps: Mapping[str, Sequence[Any]],
              compare: Compare) -> list[JobSpec]:
    """The tuning stage: every context with each of the `budget` drawn configurations."""
    configurations = draw(compare.tune, compare.budget, DRAW_SEED)
    return _unique([JobSpec.from_dict({**context, **configuration})
                    for context in contexts(base, sweeps)
                    for configuration in configurations])


@dataclass(frozen=True)
class Selection:
    context: dict[str, Any]  # the method and the other swept settings
    settings: dict[str, Any]  # the selected values of the tuned settings
    score: float  # its final validation score
    tried: list[float]  # every configuration's final validation score (the tuning curve's data)
    missing: int  # configurations without a score (failed or not run)


def select(grid_dir: Path, base: Mapping[str, Any], sweeps: Mapping[str, Sequence[Any]],
           compare: Compare) -> list[Selection]:
    """Each context's best stage-1 configuration by its final validation score (ties: the
    first drawn); contexts with no scored configuration are left out."""
    configurations = draw(compare.tune, compare.budget, DRAW_SEED)
    chosen = []
    for context in contexts(base, sweeps):
        scored: list[tuple[float, int]] = []
        for index, configuration in enumerate(configurations):
            spec = JobSpec.from_dict({**context, **configuration})
            score = final_validation(grid_dir / "runs" / spec.job_id, compare.select)
            if score is not None:
                scored.append((score, index))
        if not scored:
            continue
        sign = 1 if compare.minimize else -1  # best first, then the first drawn
        best_score, best = min(scored, key=lambda item: (sign * item[0], item[1]))
        picked = JobSpec.from_dict({**context, **configurations[best]}).to_dict()
        chosen.append(Selection(context, {key: picked[key] for key in compare.tune},
                                best_score, [score for score, _ in scored],
                                len(configurations) - len(scored)))
    return chosen


def final_validation(run_dir: Path, metric: str) -> float | None:
    """A finished job's validation score at its last evaluated epoch, or None."""
    if not results.is_finished(run_dir):
        return None
    column = pq.read_table(run_dir / results.METRICS_FILE, columns=[metric]).column(metric)
    values = [value for value in column.to_pylist() if value is not None]
    score = values[-1] if values else None
    return score if score is not None and math.isfinite(score) else None


def stage_two(selections: Sequence[Selection], compare: Compare) -> list[JobSpec]:
    """The final stage: each selected configuration with each fresh seed."""
    return _unique([JobSpec.from_dict({**s.context, **s.settings, "seed": seed})
                    for s in selections for seed in compare.final_seeds])


def _unique(specs: list[JobSpec]) -> list[JobSpec]:
    return list({spec.job_id: spec for spec in specs}.values())
