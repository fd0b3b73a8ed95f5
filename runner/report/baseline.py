"""Each group against the baseline group with otherwise equal settings: the difference in final
test accuracy, its CI, a paired or Welch t-test, and Holm's correction over all comparisons.

Seeds pair up when the two groups differ only in a setting that leaves the data and its order
alone: a job's seed sets its initialisation, data order, dropout and strategy randomness, so
the same seed in both groups shares all of them (RESEARCH.md sec. 10: a paired test where runs
pair up). Groups that differ in the data (data set, noise, validation split) or the batch size
(which orders the data differently) are compared unpaired, by Welch's test.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jobs.spec import SpecError, coerce, settings
from runner.report import stats
from runner.report.labels import format_value
from runner.report.load import AggregateError
from runner.report.tables import COMPARED, Group

DEFAULT_BASELINE = ("strategy", "onehot")
# change the training data or its order: the same seed does not pair runs across them
UNPAIRED_KEYS = ("dataset", "data_root", "noise", "val_fraction", "val_seed", "batch_size")
MIN_PAIRS = 2  # fewer seeds shared by both groups: compared unpaired


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
                    ) -> tuple[tuple[str, Any] | None, str]:
    if baseline is not None:
        key, value = parse_baseline(baseline, keys)
        index = keys.index(key)
        if not any(group.key[index] == value for group in groups):
            present = sorted({format_value(group.key[index]) for group in groups})
            raise AggregateError(f"--baseline {key}={format_value(value)} matches no group; "
                                 f"{key} takes: {', '.join(present)}")
        return (key, value), ""
    key, value = DEFAULT_BASELINE
    if key not in keys:
        return None, (f"no baseline comparison: {key} is not among the grouping settings; "
                      "choose one with --baseline KEY=VALUE")
    if not any(group.key[keys.index(key)] == value for group in groups):
        return None, (f"no baseline comparison: no group has {key}={value}; choose one with "
                      "--baseline KEY=VALUE")
    return (key, value), ""


def _by_seed(group: Group, measures: dict[str, dict[str, Any]]) -> dict[Any, float | None]:
    return {job.settings.get("seed"): measures[job.job_id][COMPARED]
            for job in group.jobs if job.job_id in measures and job.job_id in group.done_ids}


def compare_pair(group: Group, partner: Group, key: str,
                 measures: dict[str, dict[str, Any]]) -> stats.Comparison:
    """Paired over shared seeds when they pair up (see the module), else Welch over all."""
    ours, theirs = _by_seed(group, measures), _by_seed(partner, measures)
    shared = [seed for seed in ours if seed in theirs]
    if key not in UNPAIRED_KEYS and len(shared) >= MIN_PAIRS:
        return stats.paired([ours[s] for s in shared], [theirs[s] for s in shared])
    return stats.welch(list(ours.values()), list(theirs.values()))


def compare(groups: Sequence[Group], rows: list[dict[str, Any]], keys: Sequence[str],
            chosen: tuple[str, Any], measures: dict[str, dict[str, Any]]) -> str:
    """Fill the comparison columns, Holm-correct the p-values over every comparison made, and
    say which groups have no baseline with equal settings."""
    key, value = chosen
    index = keys.index(key)
    by_key = {group.key: group for group in groups}
    lacking, compared = [], []
    for group, row in zip(groups, rows, strict=True):
        if group.key[index] == value:
            continue
        partner = by_key.get((*group.key[:index], value, *group.key[index + 1:]))
        if partner is None:
            lacking.append(group.label)
            continue
        result = compare_pair(group, partner, key, measures)
        row.update(baseline=partner.name, test=result.test,
                   pairs=result.n if result.test == stats.PAIRED else None,
                   diff_final_test_acc=result.diff, diff_ci_low=result.ci_low,
                   diff_ci_high=result.ci_high, p_value=result.p_value)
        compared.append(row)
    for row, adjusted in zip(compared, stats.holm([r["p_value"] for r in compared]),
                             strict=True):
        row.update(p_holm=adjusted, significant=stats.significant(adjusted))
    if not lacking:
        return ""
    return (f"{len(lacking)} group(s) have no {key}={format_value(value)} group with otherwise "
            f"equal settings: {' | '.join(lacking[:5])}{' ...' if len(lacking) > 5 else ''}")
