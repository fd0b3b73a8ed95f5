"""Statistics across seeds: mean, std, t confidence intervals, Welch comparisons, thresholds.

Pure functions on plain sequences of numbers; NaN stands for "cannot be computed" (too few
seeds), never for an error. CIs are two-sided at 95 % unless a level is given.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
NAN = float("nan")


@dataclass(frozen=True)
class Estimate:
    """Mean of n values with sample std (ddof=1) and the t-distribution CI of the mean."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2


@dataclass(frozen=True)
class Comparison:
    """Difference of two means (a - b), its Welch CI, and the Welch t-test p-value."""

    diff: float
    ci_low: float
    ci_high: float
    p_value: float


@dataclass(frozen=True)
class ThresholdSummary:
    """Epochs until a threshold was first reached, over seeds; `never` seeds did not reach it."""

    median_epochs: float  # over the seeds that reached it; NaN when none did
    reached: int
    never: int


def finite(values: Sequence[float | None]) -> np.ndarray:
    """The values that are numbers (None and NaN dropped), as a float array."""
    array = np.array([np.nan if v is None else v for v in values], dtype=float)
    return array[np.isfinite(array)]


def t_quantile(df: float, level: float = CONFIDENCE) -> float:
    """Two-sided critical value of Student's t with df degrees of freedom."""
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, df))


def half_widths(std: np.ndarray, n: np.ndarray, level: float = CONFIDENCE) -> np.ndarray:
    """CI half-widths of means, elementwise; NaN where n < 2."""
    from scipy import stats

    std, n = np.asarray(std, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(all="ignore"):
        quantile = stats.t.ppf(0.5 + level / 2, np.where(n >= 2, n - 1, np.nan))
        return np.where(n >= 2, quantile * std / np.sqrt(n), np.nan)


def estimate(values: Sequence[float | None], level: float = CONFIDENCE) -> Estimate:
    """Mean, std and CI of the finite values; std and CI are NaN below two values."""
    data = finite(values)
    n = len(data)
    if n == 0:
        return Estimate(0, NAN, NAN, NAN, NAN)
    mean = float(data.mean())
    if n < 2:
        return Estimate(1, mean, NAN, NAN, NAN)
    std = float(data.std(ddof=1))
    half = t_quantile(n - 1, level) * std / math.sqrt(n)
    return Estimate(n, mean, std, mean - half, mean + half)


def welch(a: Sequence[float | None], b: Sequence[float | None],
          level: float = CONFIDENCE) -> Comparison:
    """mean(a) - mean(b) with the Welch-Satterthwaite CI and scipy's Welch t-test p-value.

    Needs two values on each side; otherwise everything but the difference is NaN.
    """
    from scipy import stats

    x, y = finite(a), finite(b)
    if len(x) == 0 or len(y) == 0:
        return Comparison(NAN, NAN, NAN, NAN)
    diff = float(x.mean() - y.mean())
    if len(x) < 2 or len(y) < 2:
        return Comparison(diff, NAN, NAN, NAN)
    var_x, var_y = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = math.sqrt(var_x + var_y)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # identical values on both sides give NaN (undefined), which is what we report
        warnings.simplefilter("ignore", RuntimeWarning)
        p_value = float(stats.ttest_ind(x, y, equal_var=False).pvalue)
    if se == 0:  # no spread at all: the difference is exact
        return Comparison(diff, diff, diff, p_value)
    df = (var_x + var_y) ** 2 / (var_x ** 2 / (len(x) - 1) + var_y ** 2 / (len(y) - 1))
    half = t_quantile(df, level) * se
    return Comparison(diff, diff - half, diff + half, p_value)


def threshold_summary(epochs: Sequence[float | None]) -> ThresholdSummary:
    """Summarise first-reached epochs over seeds; None means the seed never reached it."""
    reached = finite(epochs)
    never = len(epochs) - len(reached)
    median = float(np.median(reached)) if len(reached) else NAN
    return ThresholdSummary(median, len(reached), never)


def significant(p_value: float, alpha: float = 0.05) -> bool | None:
    """p < alpha, or None when no p-value could be computed."""
    return None if math.isnan(p_value) else p_value < alpha
