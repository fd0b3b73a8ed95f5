"""Tuning curves: the best validation score to expect from k configurations drawn at random.

Dodge et al. 2019 ("Show Your Work"): with n validation scores v_(1) <= ... <= v_(n) of random
configurations, the expected best of k draws (with replacement) is
sum_i v_(i) [(i/n)^k - ((i-1)/n)^k]. Confidence bands are Lourie, Cho and He 2024 ("Show Your
Work with Confidence"): exact, distribution-free simultaneous bands on the scores' distribution
(library opda), mapped through the same expectation. A method that wins only at large budgets
and one that wins at small budgets are different findings; the curve shows which.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.80  # the band's coverage: the level opda's authors report


def expected_best(scores: Sequence[float], k: int, *, minimize: bool = False) -> float:
    """Dodge et al.'s expected maximum (minimum with `minimize`) of k draws from `scores`."""
    values = np.sort(np.asarray(scores, dtype=float))
    if minimize:
        values = -values[::-1]
    n = len(values)
    if n == 0 or k < 1:
        raise ValueError("a tuning curve needs at least one score and k >= 1")
    ranks = np.arange(1, n + 1) / n
    weights = ranks ** k - (ranks - 1 / n) ** k
    best = float(np.dot(values, weights))
    return -best if minimize else best


@dataclass(frozen=True)
class TuningCurve:
    budgets: list[int]
    expected: list[float]  # Dodge et al.'s estimate
    lower: list[float]  # the band (CONFIDENCE simultaneous coverage), or NaN without one
    upper: list[float]
    method: str  # how the band was computed, for the report


def tuning_curve(scores: Sequence[float], budgets: Sequence[int], *, minimize: bool = False,
                 bounds: tuple[float, float] | None = None,
                 confidence: float = CONFIDENCE) -> TuningCurve:
    """The expected best score at each budget, with confidence bands where the scores are
    bounded (accuracies: bounds (0, 1)); the bands need at least 2 scores."""
    budgets = [int(k) for k in budgets]
    expected = [expected_best(scores, k, minimize=minimize) for k in budgets]
    nan = [float("nan")] * len(budgets)
    if bounds is None or len(scores) < 2:
        return TuningCurve(budgets, expected, nan, nan, "none (unbounded or too few scores)")
    import warnings

    from opda.nonparametric import EmpiricalDistribution

    with warnings.catch_warnings():  # tied scores (accuracies on a finite split): the bands
        warnings.filterwarnings("ignore", message="Duplicates detected")  # are conservative
        # n_jobs=1: by default opda forks a multiprocessing pool, and a fork of this process
        # (polars', torch's and Ray's threads) can deadlock in the child; it hung a CI run.
        # In one process the bands take as long on two cores (0.75 s against 0.6 s at 10 scores)
        lower_dist, _, upper_dist = EmpiricalDistribution.confidence_bands(
            np.asarray(scores, dtype=float), confidence, a=bounds[0], b=bounds[1], n_jobs=1)
    ks = np.asarray(budgets)
    # the lower band of the scores' CDF gives the upper band of the best score, and back
    high = upper_dist.average_tuning_curve(ks, minimize=minimize)
    low = lower_dist.average_tuning_curve(ks, minimize=minimize)
    lower = np.minimum(low, high).tolist()
    upper = np.maximum(low, high).tolist()
    return TuningCurve(budgets, expected, lower, upper,
                       f"opda {confidence:.0%} simultaneous bands (Lourie et al. 2024)")
