"""Each group against the baseline group with otherwise equal settings: the difference in final
test accuracy, its CI, a paired or Welch t-test, the probability of improvement, and Holm's
correction over all comparisons.

Runs pair up when they agree on every setting but the compared one (and, in a comparison grid,
the tuned settings each method selected for itself): the same seed gives the same
initialisation, data order, dropout and strategy randomness (RESEARCH.md sec. 10: a paired test
where runs pair up), and a group that pools another setting (`--by strategy` over two learning
rates) pairs each run with the partner of the same seed *and* learning rate, never one of
another. Settings that change the data or its order (data set, noise, validation split, batch
size) do not pair: groups that differ in one are compared unpaired, by Welch's test, and only
when both hold runs of the same other settings. Anything else is not compared, and the row says
why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jobs.spec import SpecError, coerce, settings
from runner.report import stats
from runner.report.bootstrap import improvements
from runner.report.labels import format_value
from runner.report.load import AggregateError
from runner.report.model import Group
from runner.report.tables import COMPARED, groupable_settings, settings_of

DEFAULT_BASELINE = ("strategy", "onehot")
# change the training data or its order: the same seed does not pair runs across them
UNPAIRED_KEYS = ("dataset", "data_root", "noise", "val_fraction", "val_seed", "batch_size")
MIN_PAIRS = 2  # fewer runs that pair up: compared unpaired, if at all
TWINS = {"strategy": "strategy_name", "strategy_name": "strategy"}  # one setting, two columns


def parse_baseline(text: str, keys: Sequence[str]) -> tuple[str, Any]:
    """`key=value` with the value coerced like a setting, so 0.10 matches 0.1."""
    name, sep, raw = text.partition("=")
    name, raw = name.strip(), raw.strip()
    if not sep or not name or not raw:
        raise AggregateError(f"--baseline got {text!r}; expected KEY=VALUE, e.g. strategy=onehot")
    if name not in keys:
        shown = ", ".join(keys) if keys else "nothing (no setting differs between jobs)"
        raise AggregateError(f"--baseline key {name!r} is not a grouping setting; the groups "
                             f"differ in: {shown} (choose the grouping with --by)")
    if name == "strategy_name":
        return name, raw
    try:
        value = coerce(settings()[name], raw)
    except SpecError as exc:
        raise AggregateError(f"--baseline: {exc}") from None
    return name, tuple(value) if isinstance(value, list) else value


def choose_baseline(groups: Sequence[Group], keys: Sequence[str], baseline: str | None,
                    default: tuple[str, Any] = DEFAULT_BASELINE,
                    ) -> tuple[tuple[str, Any] | None, str]:
    if baseline is not None:
        key, value = parse_baseline(baseline, keys)
        index = keys.index(key)
        if not any(group.key[index] == value for group in groups):
            present = sorted({format_value(group.key[index]) for group in groups})
            raise AggregateError(f"--baseline {key}={format_value(value)} matches no group; "
                                 f"{key} takes: {', '.join(present)}")
        return (key, value), ""
    key, value = default
    if key not in keys:
        return None, (f"no baseline comparison: {key} is not among the grouping settings; "
                      "choose one with --baseline KEY=VALUE")
    if not any(group.key[keys.index(key)] == value for group in groups):
        return None, (f"no baseline comparison: no group has {key}={format_value(value)}; "
                      "choose one with --baseline KEY=VALUE")
    return (key, value), ""


Improvement = tuple[list[float], list[float], bool]  # (group, partner, paired): P(A > B)'s data


@dataclass(frozen=True)
class Outcome:
    """One group against its partner: the t-test (NaN when not compared), the data of
    P(group > partner) (None when not compared), and a note (why not compared, or how many
    runs found no partner)."""

    comparison: stats.Comparison
    improvement: Improvement | None
    note: str = ""


NOT_COMPARED = stats.Comparison(stats.NAN, stats.NAN, stats.NAN, stats.NAN, "", 0)


def _run_settings(key: str, method: Sequence[str] = ()) -> list[str]:
    """The settings that name a run within a comparison: all but the compared one and those
    that come with it (`method`: a comparison's tuned settings)."""
    ignored = {key, TWINS.get(key, key), *method}
    return [name for name in groupable_settings() if name not in ignored]


def _runs(group: Group, key: str, measures: dict[str, dict[str, Any]],
          method: Sequence[str] = ()) -> dict[tuple[Any, ...], float | None]:
    """The group's done runs by every setting but the compared ones (seed included)."""
    run = settings_of(_run_settings(key, method))
    return {run(job.settings): measures[job.job_id][COMPARED]
            for job in group.done_jobs if job.job_id in measures}


def _design(runs: dict[tuple[Any, ...], float | None], key: str,
            method: Sequence[str] = ()) -> set[tuple[Any, ...]]:
    """The settings a group's runs cover, their seeds aside."""
    seed = _run_settings(key, method).index("seed")
    return {run[:seed] + run[seed + 1:] for run in runs}


def compare_pair(group: Group, partner: Group, key: str, measures: dict[str, dict[str, Any]],
                 method: Sequence[str] = ()) -> Outcome:
    """Paired over the runs that pair up (see the module), else Welch where both groups cover
    the same settings, else not compared. `method`: settings that come with the compared value
    (a comparison's tuned ones), not paired on."""
    ours, theirs = _runs(group, key, measures, method), _runs(partner, key, measures, method)
    shared = [run for run in ours if run in theirs]
    if key not in UNPAIRED_KEYS and len(shared) >= MIN_PAIRS:
        a, b = [ours[run] for run in shared], [theirs[run] for run in shared]
        comparison = stats.paired(a, b)
        alone = len(ours) + len(theirs) - 2 * len(shared)
        note = (f"{alone} run(s) without a partner of equal settings left out" if alone
                else "")
        return Outcome(comparison, ([_number(v) for v in a], [_number(v) for v in b], True),
                       note)
    if _design(ours, key, method) != _design(theirs, key, method):
        only = _design(ours, key, method) ^ _design(theirs, key, method)
        return Outcome(NOT_COMPARED, None,
                       f"not compared: the two groups hold runs of different settings "
                       f"({len(only)} combination(s) in one only), and fewer than {MIN_PAIRS} "
                       "runs pair up")
    a = [v for v in ours.values() if v is not None]
    b = [v for v in theirs.values() if v is not None]
    why = (f"{key} changes the data or its order" if key in UNPAIRED_KEYS
           else f"fewer than {MIN_PAIRS} runs share their seed")
    return Outcome(stats.welch(a, b), (a, b, False), f"unpaired: {why}")


def _number(value: float | None) -> float:
    return float("nan") if value is None else value


def compare(groups: Sequence[Group], rows: list[dict[str, Any]], keys: Sequence[str],
            chosen: tuple[str, Any], measures: dict[str, dict[str, Any]],
            method: Sequence[str] = ()) -> str:
    """Fill the comparison columns, Holm-correct the p-values over every comparison made (a
    group identical to another is one comparison, not two), and say which groups have no
    baseline with equal settings."""
    key, value = chosen
    index = keys.index(key)
    by_key = {group.key: group for group in groups}
    by_name = {row["group"]: row for row in rows}

    def cluster(name: str) -> str:  # the group that represents an identical cluster
        return by_name[name]["identical_to"] or name

    lacking = []
    family: dict[str, dict[str, Any]] = {}  # cluster -> the row that counts for it
    asked: list[tuple[dict[str, Any], Improvement]] = []  # P(A > B): in one pass, below
    for group, row in zip(groups, rows, strict=True):
        if group.key[index] == value:
            continue
        partner = by_key.get((*group.key[:index], value, *group.key[index + 1:]))
        if partner is None:
            lacking.append(group.label)
            continue
        row["baseline"] = partner.name
        if cluster(group.name) == cluster(partner.name):
            row.update(test_note="bit-identical to the baseline: nothing to test",
                       diff_final_test_acc=0.0)
            continue
        outcome = compare_pair(group, partner, key, measures, method)
        result = outcome.comparison
        row.update(test=result.test or None,
                   pairs=result.n if result.test == stats.PAIRED else None,
                   test_note=outcome.note or None,
                   diff_final_test_acc=result.diff, diff_ci_low=result.ci_low,
                   diff_ci_high=result.ci_high, p_value=result.p_value)
        if outcome.improvement is not None:
            asked.append((row, outcome.improvement))
        family.setdefault(cluster(group.name), row)
    for (row, _), better in zip(asked, improvements([data for _, data in asked]), strict=True):
        row.update(p_improvement=better.value, p_improvement_low=better.low,
                   p_improvement_high=better.high)
    counted = list(family.values())
    for row, adjusted in zip(counted, stats.holm([r["p_value"] for r in counted]), strict=True):
        row.update(p_holm=adjusted, significant=stats.significant(adjusted))
    for row in rows:  # a copy of a result shares its test, counted once above
        first = family.get(cluster(row["group"]))
        if first is not None and first is not row and row["test"] is not None:
            row.update(p_holm=first["p_holm"], significant=first["significant"],
                       test_note=f"bit-identical to {first['label']}: counted once in Holm's "
                                 "family")
    if not lacking:
        return ""
    return (f"{len(lacking)} group(s) have no {key}={format_value(value)} group with otherwise "
            f"equal settings: {' | '.join(lacking[:5])}{' ...' if len(lacking) > 5 else ''}")
