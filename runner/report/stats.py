"""Statistics across seeds: mean, std, t confidence intervals, Welch and paired comparisons,
Holm's correction, thresholds.

Pure functions on plain sequences of numbers; NaN stands for "cannot be computed" (too few
seeds), never for an error. CIs are two-sided at 95 % unless a level is given. t quantiles come
from scipy.special (0.2 s to import) rather than scipy.stats (0.5 s more), which only the tests
themselves need.
"""

from __future__ import annotations

import gc
import math
import threading
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


WELCH = "Welch t"
PAIRED = "paired t"


@dataclass(frozen=True)
class Comparison:
    """Difference of two means (a - b), its CI and the p-value of `test` (WELCH or PAIRED) over
    `n` values per side (pairs for PAIRED)."""

    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str = WELCH
    n: int = 0


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
    from scipy.special import stdtrit

    return float(stdtrit(df, 0.5 + level / 2))


def half_widths(std: np.ndarray, n: np.ndarray, level: float = CONFIDENCE) -> np.ndarray:
    """CI half-widths of means, elementwise; NaN where n < 2."""
    from scipy.special import stdtrit

    std, n = np.asarray(std, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(all="ignore"):
        quantile = stdtrit(np.where(n >= 2, n - 1, np.nan), 0.5 + level / 2)
        return np.where(n >= 2, quantile * std / np.sqrt(n), np.nan)


def mean(values: Sequence[float | None]) -> float:
    """The mean of the finite values (NaN if none), as `estimate` gives it."""
    data = finite(values)
    return float(data.mean()) if len(data) else NAN


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
        return Comparison(diff, NAN, NAN, NAN, n=min(len(x), len(y)))
    var_x, var_y = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = math.sqrt(var_x + var_y)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # identical values on both sides give NaN (undefined), which is what we report
        warnings.simplefilter("ignore", RuntimeWarning)
        p_value = float(stats.ttest_ind(x, y, equal_var=False).pvalue)
    n = min(len(x), len(y))
    if se == 0:  # no spread at all: the difference is exact
        return Comparison(diff, diff, diff, p_value, n=n)
    df = (var_x + var_y) ** 2 / (var_x ** 2 / (len(x) - 1) + var_y ** 2 / (len(y) - 1))
    half = t_quantile(df, level) * se
    return Comparison(diff, diff - half, diff + half, p_value, n=n)


def paired(a: Sequence[float | None], b: Sequence[float | None],
           level: float = CONFIDENCE) -> Comparison:
    """mean(a - b) over the pairs where both values are numbers, its t CI, and scipy's paired
    t-test p-value (ttest_rel). Needs two pairs; otherwise everything but the difference is NaN.
    """
    from scipy import stats

    pairs = np.array([(x, y) for x, y in zip(a, b, strict=True)
                      if x is not None and y is not None], dtype=float).reshape(-1, 2)
    pairs = pairs[np.isfinite(pairs).all(axis=1)]
    n = len(pairs)
    if n == 0:
        return Comparison(NAN, NAN, NAN, NAN, PAIRED, 0)
    differences = pairs[:, 0] - pairs[:, 1]
    diff = float(differences.mean())
    if n < 2:
        return Comparison(diff, NAN, NAN, NAN, PAIRED, n)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # equal differences: p undefined (NaN)
        p_value = float(stats.ttest_rel(pairs[:, 0], pairs[:, 1]).pvalue)
    half = t_quantile(n - 1, level) * float(differences.std(ddof=1)) / math.sqrt(n)
    return Comparison(diff, diff - half, diff + half, p_value, PAIRED, n)


def import_in_background() -> threading.Thread:
    """Import scipy.stats and statsmodels' multipletests (0.6-0.9 s of CPU, mostly Python) in a
    thread, so they load while the caller reads metrics (polars releases the GIL) rather than
    after; the first use waits for them (Python's import lock)."""
    def load() -> None:
        import scipy.special  # noqa: F401
        import scipy.stats  # noqa: F401
        import statsmodels.stats.multitest  # noqa: F401

    thread = threading.Thread(target=load, name="import statistics", daemon=True)
    thread.start()
    return thread


def holm(p_values: Sequence[float], alpha: float = 0.05) -> list[float]:
    """Holm's step-down adjusted p-values (statsmodels' multipletests) over the finite ones;
    NaN stays NaN and is not counted as a comparison."""
    values = np.asarray(p_values, dtype=float)
    adjusted = np.full(len(values), NAN)
    present = np.isfinite(values)
    if present.any():
        from statsmodels.stats.multitest import multipletests

        # its Holm branch calls gc.collect(), a full collection of every object of an
        # aggregation (0.1-0.2 s); frozen objects are not scanned
        gc.freeze()
        try:
            adjusted[present] = multipletests(values[present], alpha=alpha, method="holm")[1]
        finally:
            gc.unfreeze()
    return adjusted.tolist()


def threshold_summary(epochs: Sequence[float | None]) -> ThresholdSummary:
    """Summarise first-reached epochs over seeds; None means the seed never reached it."""
    reached = finite(epochs)
    never = len(epochs) - len(reached)
    median = float(np.median(reached)) if len(reached) else NAN
    return ThresholdSummary(median, len(reached), never)


def significant(p_value: float, alpha: float = 0.05) -> bool | None:
    """p < alpha, or None when no p-value could be computed."""
    return None if math.isnan(p_value) else p_value < alpha
