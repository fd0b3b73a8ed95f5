"""Bootstrap statistics over seeds (Agarwal et al. 2021; Bouthillier et al. 2021), computed with
scipy.stats.bootstrap: CIs of the mean and of the interquartile mean (IQM), the probability of
improvement P(A > B) with its CI, and performance profiles over several tasks.

rliable, the reference implementation of these statistics, is not used: it would add arch,
seaborn and pandas to every aggregation's imports. Its definitions are followed: the IQM is
scipy.stats.trim_mean(x, 0.25); P(A > B) counts a tie as one half; runs of several tasks are
resampled within each task (a stratified bootstrap: scipy resamples each sample of `data`
independently); CIs are percentile intervals of RESAMPLES resamples, seeded, so the same runs
give the same interval. Pure functions on plain numbers; NaN where a value cannot be computed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from runner.report.stats import CONFIDENCE, NAN, finite

# resamples per interval: on 10 seeds the bounds of 1,000 resamples vary by about 2 % of the
# interval's width with the resampling seed (50,000, rliable's default: 0.3 %); 2,000 cost
# 0.1 s more per aggregation of 10 groups of 100 seeds, the benchmark grid
RESAMPLES = 1000
SEED = 0  # the resampling seed: aggregating the same runs twice gives the same intervals
BATCH_VALUES = 2_000_000  # resampled values held at once (16 MB)
TRIM = 0.25  # the IQM drops the lowest and the highest quarter of the runs


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap CI (NaN bounds below two values)."""

    value: float
    low: float = NAN
    high: float = NAN


def iqm(values: Sequence[float | None]) -> float:
    """The interquartile mean: the mean of the middle half (scipy.stats.trim_mean, 25 %)."""
    from scipy.stats import trim_mean

    data = finite(values)
    return float(trim_mean(data, TRIM)) if len(data) else NAN


def _interval(samples: tuple[np.ndarray, ...], statistic, *, paired: bool = False,
              level: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """scipy's percentile bootstrap of a vectorised statistic over `samples`."""
    from scipy.stats import bootstrap

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # every resample equal (all seeds alike): scipy warns of a degenerate distribution
        # and the percentile interval is that one value, which is what is reported
        warnings.simplefilter("ignore")
        result = bootstrap(samples, statistic, n_resamples=RESAMPLES, confidence_level=level,
                           method="percentile", paired=paired, vectorized=True, axis=-1,
                           rng=np.random.default_rng(SEED), batch=_batch(samples))
    return (np.asarray(result.confidence_interval.low, dtype=float),
            np.asarray(result.confidence_interval.high, dtype=float))


def _batch(samples: tuple[np.ndarray, ...]) -> int | None:
    """Resamples per batch so that one batch holds at most BATCH_VALUES values: scipy would
    otherwise hold all RESAMPLES at once (5 groups of 20,000 runs: 800 MB, and 3x slower for
    the page faults). None (all at once) where they fit, so small grids draw as before."""
    values = sum(sample.size for sample in samples)
    batch = max(1, BATCH_VALUES // max(values, 1))
    return None if batch >= RESAMPLES else batch


def _mean_and_iqm(sample: np.ndarray, axis: int = -1) -> np.ndarray:
    """The mean and the IQM along `axis`, stacked first."""
    from scipy.stats import trim_mean

    return np.stack([np.mean(sample, axis=axis), trim_mean(sample, TRIM, axis=axis)])


def mean_and_iqm(values: Sequence[float | None]) -> tuple[Interval, Interval]:
    """The mean and the IQM of the finite values, each with its bootstrap CI."""
    return mean_and_iqm_each([values])[0]


def mean_and_iqm_each(samples: Sequence[Sequence[float | None]],
                      ) -> list[tuple[Interval, Interval]]:
    """mean_and_iqm of each sample; samples of one size share one bootstrap call (scipy
    resamples along the last axis of a stack: 10 groups of 100 seeds in 0.03 s, not 0.1)."""
    data = [finite(values) for values in samples]
    out: list[tuple[Interval, Interval]] = []
    for sample in data:
        if len(sample) == 0:
            out.append((Interval(NAN), Interval(NAN)))
        else:
            mean, middle = _mean_and_iqm(sample)
            out.append((Interval(float(mean)), Interval(float(middle))))
    for indices in _by_size([len(sample) for sample in data]).values():
        low, high = _interval((np.stack([data[i] for i in indices]),), _mean_and_iqm)
        for column, i in enumerate(indices):
            mean, middle = out[i]
            out[i] = (Interval(mean.value, float(low[0, column]), float(high[0, column])),
                      Interval(middle.value, float(low[1, column]), float(high[1, column])))
    return out


def _by_size(sizes: Sequence[int]) -> dict[int, list[int]]:
    """Indices by size, for the sizes of two or more (one value has no interval)."""
    found: dict[int, list[int]] = {}
    for index, size in enumerate(sizes):
        if size >= 2:
            found.setdefault(size, []).append(index)
    return found


def _improvement(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """P(A > B) + P(A = B) / 2 over all pairs of one value of each, from ranks (the
    Mann-Whitney U statistic divided by n_a n_b), along `axis`."""
    from scipy.stats import rankdata

    n, m = a.shape[axis], b.shape[axis]
    ranks = rankdata(np.concatenate([a, b], axis=axis), axis=axis)
    rank_sum = np.take(ranks, np.arange(n), axis=axis).sum(axis=axis)
    return (rank_sum - n * (n + 1) / 2) / (n * m)


def _paired_improvement(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """P(A > B) over pairs of runs that share their seed and settings, ties as one half."""
    return np.mean((a > b) + 0.5 * (a == b), axis=axis)


def probability_of_improvement(a: Sequence[float], b: Sequence[float], *,
                               paired: bool) -> Interval:
    """P(A > B) with its CI. Paired (a[i] and b[i] share a seed and all else but the compared
    setting: Bouthillier et al. 2021): the fraction of pairs where A wins, resampled by pair.
    Unpaired: over every combination of one run of each (Agarwal et al. 2021, rliable's
    definition), each side resampled on its own. Ties count one half."""
    return improvements([(a, b, paired)])[0]


def improvements(requests: Sequence[tuple[Sequence[float], Sequence[float], bool]],
                 ) -> list[Interval]:
    """probability_of_improvement of each (a, b, paired); requests of the same kind and sizes
    share one bootstrap call."""
    data = []
    for a, b, paired in requests:
        x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        if paired:
            keep = np.isfinite(x) & np.isfinite(y)
            x, y = x[keep], y[keep]
        else:
            x, y = x[np.isfinite(x)], y[np.isfinite(y)]
        data.append((x, y, paired))
    out = []
    batches: dict[tuple[bool, int, int], list[int]] = {}
    for index, (x, y, paired) in enumerate(data):
        if len(x) == 0 or len(y) == 0:
            out.append(Interval(NAN))
            continue
        statistic = _paired_improvement if paired else _improvement
        out.append(Interval(float(statistic(x, y))))
        if min(len(x), len(y)) >= 2:
            batches.setdefault((paired, len(x), len(y)), []).append(index)
    for (paired, _, _), indices in batches.items():
        statistic = _paired_improvement if paired else _improvement
        low, high = _interval((np.stack([data[i][0] for i in indices]),
                               np.stack([data[i][1] for i in indices])), statistic,
                              paired=paired)
        for column, i in enumerate(indices):
            out[i] = Interval(out[i].value, float(low[column]), float(high[column]))
    return out


# ---------------------------------------------------------------------------------------------
# Several tasks (data sets, architectures): stratified over tasks


def _pooled_iqm(*tasks: np.ndarray, axis: int = -1) -> np.ndarray:
    from scipy.stats import trim_mean

    return trim_mean(np.concatenate(tasks, axis=axis), TRIM, axis=axis)


def pooled_iqm(tasks: Sequence[Sequence[float]]) -> Interval:
    """The IQM of every run of every task, with a CI from resampling runs within each task
    (rliable's aggregate IQM). A task with fewer than two runs has no interval."""
    samples = tuple(finite(task) for task in tasks)
    if not samples or any(len(sample) == 0 for sample in samples):
        return Interval(NAN)
    value = float(_pooled_iqm(*samples))
    if any(len(sample) < 2 for sample in samples):
        return Interval(value)
    low, high = _interval(samples, _pooled_iqm)
    return Interval(value, float(low), float(high))


def improvement_over_tasks(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]],
                           ) -> Interval:
    """P(A > B) averaged over tasks (rliable: the mean of each task's unpaired P(A_m > B_m)),
    each task's runs of either side resampled on their own."""
    pairs = [(finite(x), finite(y)) for x, y in zip(a, b, strict=True)]
    if not pairs or any(len(x) == 0 or len(y) == 0 for x, y in pairs):
        return Interval(NAN)
    count = len(pairs)

    def statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean([_improvement(samples[2 * i], samples[2 * i + 1], axis=axis)
                        for i in range(count)], axis=0)

    samples = tuple(sample for pair in pairs for sample in pair)
    value = float(statistic(*samples))
    if any(len(sample) < 2 for sample in samples):
        return Interval(value)
    low, high = _interval(samples, statistic)
    return Interval(value, float(low), float(high))


@dataclass(frozen=True)
class Profile:
    """A performance profile (rliable's score distribution): at each threshold tau, the fraction
    of runs scoring above it, tasks weighted equally, with its pointwise bootstrap CI."""

    thresholds: np.ndarray
    fraction: np.ndarray
    low: np.ndarray
    high: np.ndarray


def thresholds_for(tasks: Sequence[Sequence[Sequence[float]]], points: int = 101) -> np.ndarray:
    """Evenly spaced thresholds from the lowest to the highest score of any run."""
    values = np.concatenate([finite(task) for method in tasks for task in method] or [[NAN]])
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return np.array([])
    low, high = float(values.min()), float(values.max())
    if math.isclose(low, high):
        low, high = low - 0.01, high + 0.01
    return np.linspace(low, high, points)


def performance_profile(tasks: Sequence[Sequence[float]], thresholds: np.ndarray) -> Profile:
    """The profile of one method from its runs on each task (stratified CI, as rliable)."""
    samples = tuple(finite(task) for task in tasks)
    nan = np.full(len(thresholds), NAN)
    if not samples or any(len(sample) == 0 for sample in samples):
        return Profile(thresholds, nan, nan, nan)

    def statistic(*runs: np.ndarray, axis: int = -1) -> np.ndarray:
        # each task's fraction above every threshold, then the mean over tasks
        shares = [np.mean(np.moveaxis(task, axis, -1)[..., None, :]
                          > thresholds[:, None], axis=-1) for task in runs]
        return np.moveaxis(np.mean(shares, axis=0), -1, 0)

    fraction = statistic(*samples)
    if any(len(sample) < 2 for sample in samples):
        return Profile(thresholds, fraction, nan, nan)
    low, high = _interval(samples, statistic)
    return Profile(thresholds, fraction, low, high)
