"""Tuning curves against a case computed by hand, and their bands."""

from __future__ import annotations

import math

import pytest

from runner.report.tuning import expected_best, tuning_curve

SCORES = [0.5, 0.9, 0.2]


def test_expected_best_of_k_draws_by_hand():
    # sorted 0.2, 0.5, 0.9; P(best of 2 is the i-th) = (i/3)^2 - ((i-1)/3)^2 = 1/9, 3/9, 5/9
    assert expected_best(SCORES, 1) == pytest.approx((0.2 + 0.5 + 0.9) / 3)
    assert expected_best(SCORES, 2) == pytest.approx((0.2 * 1 + 0.5 * 3 + 0.9 * 5) / 9)
    # the smallest of 2 (a loss): 0.2 with 5/9, 0.5 with 3/9, 0.9 with 1/9
    assert expected_best(SCORES, 2, minimize=True) == pytest.approx((1.0 + 1.5 + 0.9) / 9)
    assert expected_best(SCORES, 1000) == pytest.approx(0.9)


def test_the_curve_rises_with_the_budget_inside_its_band():
    scores = [0.61, 0.72, 0.55, 0.80, 0.77, 0.69, 0.83, 0.58, 0.74, 0.66]
    curve = tuning_curve(scores, [1, 2, 4, 8], bounds=(0.0, 1.0))
    assert curve.expected == sorted(curve.expected)
    for low, mid, high in zip(curve.lower, curve.expected, curve.upper, strict=True):
        assert 0 <= low <= mid <= high <= 1
    assert "Lourie" in curve.method


def test_unbounded_scores_get_the_curve_without_a_band():
    curve = tuning_curve([0.3, 0.2], [1, 2], minimize=True)
    assert curve.expected[1] < curve.expected[0]
    assert all(math.isnan(value) for value in curve.lower + curve.upper)


def test_the_bands_fork_no_process_pool(monkeypatch):
    """A fork of a process with threads (polars, torch, Ray) can deadlock; opda's default pool
    forked one and hung a CI run."""
    import multiprocessing

    import opda.nonparametric

    def no_pool(*args, **kwargs):
        raise AssertionError("tuning_curve forked a multiprocessing pool")

    monkeypatch.setattr(multiprocessing, "Pool", no_pool)
    opda.nonparametric._ld_band_weights.cache_clear()  # else a cached band skips the pool
    curve = tuning_curve([0.61, 0.72, 0.55, 0.80, 0.77, 0.69, 0.83], [1, 2, 4], bounds=(0.0, 1.0))
    assert all(0 <= low <= high <= 1 for low, high in zip(curve.lower, curve.upper, strict=True))
