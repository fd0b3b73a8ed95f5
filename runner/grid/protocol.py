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
so none is luckier in its draws), all with one seed (base.seed). Each method's configuration is
then selected on its final validation score, never on test (ties: TIE_RULE), and stage 2 trains
it with each of `final_seeds`, which must be fresh (check_stages): the two stages never share a
run, and the report never pools them. Both stages write into the grid's dir like any jobs, so a
rerun skips what is done and selects the same configurations again from the files.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs import metric_catalogue
from jobs.rundir.rows import final_values
from jobs.spec import JobSpec, grid_job_settings, settings
from runner.grid.spaces import Space, draw, parse_space
from runner.grid.sweeps import SweepError, parse_values

COMPARE_KEYS = ("by", "tune", "budget", "select", "final_seeds")
# the validation metrics a comparison may select on -> lower is better (their declarations)
SELECT = {name: metric_catalogue.lower_is_better(name) for name in ("val_acc", "val_loss")}
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


def check_stages(label: str, base: Mapping[str, Any], sweeps: Mapping[str, Sequence[Any]],
                 compare: Compare) -> None:
    """The stages must stay apart: stage 1 trains one seed (base.seed) and stage 2 fresh ones,
    so no run is both selected on and reported (its validation score chose it: counted as a
    final run it would flatter its method)."""
    where = f"{label}: compare"
    if "seed" in sweeps:
        raise CompareError(f"{where}: seed is swept in grid; the tuning stage trains one seed "
                           "(base.seed) and the final seeds are compare.final_seeds: remove "
                           "seed from grid")
    tuning_seed = base.get("seed", settings()["seed"].default)
    if tuning_seed in compare.final_seeds:
        raise CompareError(f"{where}.final_seeds: {tuning_seed} is the tuning stage's seed "
                           "(base.seed); final seeds must be fresh, e.g. range(100, 110)")


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
    return _unique([spec for _, specs in tuning_jobs(base, sweeps, compare) for spec in specs])


@dataclass(frozen=True)
class Scored:
    """A tuning configuration's final validation scores: the selection metric and the one that
    breaks its ties (SECONDARY; None where the job has none)."""

    index: int  # its place in the draw order
    settings: dict[str, Any]  # the tuned settings' values
    score: float
    secondary: float | None = None


@dataclass(frozen=True)
class Selection:
    context: dict[str, Any]  # the method and the other swept settings
    settings: dict[str, Any]  # the selected values of the tuned settings
    score: float  # its final validation score
    tried: list[float]  # every configuration's final validation score (the tuning curve's data)
    missing: int  # configurations without a score (failed or not run)
    scored: tuple[Scored, ...] = ()  # every scored configuration, in draw order
    tied: tuple[Scored, ...] = ()  # every configuration with the best score when several have it
    tie_break: str = ""  # how the tie was broken, in words ("" without a tie)


# the metric that breaks a tie on the selection metric, and whether lower is better
SECONDARY = {"val_acc": ("val_loss", SELECT["val_loss"]),
             "val_loss": ("val_acc", SELECT["val_acc"])}
TIE_RULE = ("a tie on the selection metric (accuracies on a finite validation split often tie) "
            "is broken by the other validation metric: the lowest final val_loss among "
            "configurations tied on val_acc (the highest val_acc among those tied on val_loss), "
            "then the first drawn")


def choose(scored: Sequence[Scored], compare: Compare) -> tuple[Scored, tuple[Scored, ...], str]:
    """The best configuration by the selection metric, ties broken by SECONDARY (see TIE_RULE):
    (chosen, the tied set or (), how the tie was broken)."""
    sign = 1 if compare.minimize else -1
    best = min(sign * item.score for item in scored)
    tied = [item for item in scored if sign * item.score == best]
    if len(tied) == 1:
        return tied[0], (), ""
    metric, lower = SECONDARY[compare.select]
    second = 1 if lower else -1
    known = [item for item in tied if item.secondary is not None
             and math.isfinite(item.secondary)]
    if not known:
        return tied[0], tuple(tied), f"first drawn (no {metric} to break the tie)"
    chosen = min(known, key=lambda item: (second * (item.secondary or 0.0), item.index))
    rivals = [item for item in known if item.secondary == chosen.secondary]
    extreme = "lowest" if lower else "highest"
    how = f"{extreme} {metric} ({chosen.secondary:.4g})"
    if len(rivals) > 1:
        how += f", then the first drawn ({len(rivals)} tie on {metric} too)"
    return chosen, tuple(tied), how


Scores = Callable[[JobSpec], tuple[float | None, float | None]]  # a job's (score, secondary)


def tuning_jobs(base: Mapping[str, Any], sweeps: Mapping[str, Sequence[Any]],
                compare: Compare) -> list[tuple[dict[str, Any], list[JobSpec]]]:
    """Each context with its tuning jobs, one per drawn configuration, in draw order."""
    configurations = draw(compare.tune, compare.budget, DRAW_SEED)
    return [(context, [JobSpec.from_dict({**context, **configuration})
                       for configuration in configurations])
            for context in contexts(base, sweeps)]


def select_from(base: Mapping[str, Any], sweeps: Mapping[str, Sequence[Any]],
                compare: Compare, scores: Scores) -> list[Selection]:
    """Each context's best stage-1 configuration by its final validation score (TIE_RULE);
    contexts with no scored configuration are left out. `scores`: a job's final validation
    scores, (None, None) when it has none."""
    chosen = []
    for context, specs in tuning_jobs(base, sweeps, compare):
        scored = []
        for index, spec in enumerate(specs):
            score, secondary = scores(spec)
            if score is not None and math.isfinite(score):
                picked = spec.to_dict()
                scored.append(Scored(index, {key: picked[key] for key in compare.tune}, score,
                                     secondary))
        if not scored:
            continue
        best, tied, how = choose(scored, compare)
        chosen.append(Selection(context, best.settings, best.score,
                                [item.score for item in scored], len(specs) - len(scored),
                                tuple(scored), tied, how))
    return chosen


def select(grid_dir: Path, base: Mapping[str, Any], sweeps: Mapping[str, Sequence[Any]],
           compare: Compare) -> list[Selection]:
    """select_from with the final validation scores of the jobs committed in `grid_dir`."""
    metric = SECONDARY[compare.select][0]
    configurations = draw(compare.tune, compare.budget, DRAW_SEED)
    tried = [JobSpec.from_dict({**context, **configuration}).job_id
             for context in contexts(base, sweeps) for configuration in configurations]
    primary = final_values(grid_dir, tried, compare.select)
    secondary = final_values(grid_dir, tried, metric)

    def scores(spec: JobSpec) -> tuple[float | None, float | None]:
        return primary.get(spec.job_id), secondary.get(spec.job_id)

    return select_from(base, sweeps, compare, scores)


def last_value(column: Sequence[float | None]) -> float | None:
    """The last non-null value of a column in epoch order (the final evaluated epoch's), if
    it is a finite number."""
    values = [value for value in column if value is not None]
    score = values[-1] if values else None
    return score if score is not None and math.isfinite(score) else None


def stage_two(selections: Sequence[Selection], compare: Compare) -> list[JobSpec]:
    """The final stage: each selected configuration with each fresh seed."""
    return _unique([JobSpec.from_dict({**s.context, **s.settings, "seed": seed})
                    for s in selections for seed in compare.final_seeds])


def _unique(specs: list[JobSpec]) -> list[JobSpec]:
    return list({spec.job_id: spec for spec in specs}.values())
