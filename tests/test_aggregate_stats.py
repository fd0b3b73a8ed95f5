"""Statistics of tvo aggregate against values worked out by hand from the textbook formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from runner.report import stats

T_975_DF2 = 4.302652729749464  # Student's t table: 97.5 % quantile with 2 degrees of freedom


def test_estimate_mean_std_and_t_interval():
    result = stats.estimate([0.90, 0.92, 0.94])
    # mean 0.92; deviations -0.02, 0, 0.02 -> variance 0.0008 / 2 -> std 0.02
    assert result.n == 3
    assert result.mean == pytest.approx(0.92, abs=1e-15)
    assert result.std == pytest.approx(0.02, abs=1e-15)
    half = T_975_DF2 * 0.02 / math.sqrt(3)  # 0.04968...
    assert half == pytest.approx(0.049683, abs=1e-6)
    assert result.ci_low == pytest.approx(0.92 - half, abs=1e-12)
    assert result.ci_high == pytest.approx(0.92 + half, abs=1e-12)
    assert result.half_width == pytest.approx(half, abs=1e-12)


def test_estimate_ignores_missing_values_and_needs_two_for_a_spread():
    assert stats.estimate([0.5, None, float("nan"), 0.7]).mean == pytest.approx(0.6)
    one = stats.estimate([0.8])
    assert (one.n, one.mean) == (1, 0.8)
    assert math.isnan(one.std) and math.isnan(one.ci_low) and math.isnan(one.ci_high)
    none = stats.estimate([])
    assert none.n == 0 and math.isnan(none.mean)


def test_welch_difference_interval_and_p_value():
    a, b = [0.95, 0.96, 0.97], [0.90, 0.92, 0.94]
    result = stats.welch(a, b)
    # by hand: s_a^2/n = 0.0001/3, s_b^2/n = 0.0004/3, se^2 = 0.0005/3
    var_a, var_b = 0.0001 / 3, 0.0004 / 3
    se = math.sqrt(var_a + var_b)
    t = 0.04 / se  # 3.0984
    df = (var_a + var_b) ** 2 / (var_a ** 2 / 2 + var_b ** 2 / 2)  # Welch-Satterthwaite: 2.9412
    assert t == pytest.approx(3.0984, abs=1e-4)
    assert df == pytest.approx(2.9412, abs=1e-4)
    assert result.diff == pytest.approx(0.04, abs=1e-12)
    assert result.p_value == pytest.approx(2 * scipy_stats.t.sf(t, df), rel=1e-9)
    assert result.p_value == pytest.approx(0.0553, abs=1e-3)
    half = scipy_stats.t.ppf(0.975, df) * se
    assert result.ci_low == pytest.approx(0.04 - half, rel=1e-9)
    assert result.ci_high == pytest.approx(0.04 + half, rel=1e-9)
    assert result.ci_low < 0 < result.ci_high  # not significant at 5 %, CI covers 0
    assert stats.significant(result.p_value) is False


def test_welch_clear_difference_is_significant_and_antisymmetric():
    a, b = [0.95, 0.96, 0.97, 0.96], [0.80, 0.81, 0.79, 0.80]
    forward, backward = stats.welch(a, b), stats.welch(b, a)
    assert forward.diff == pytest.approx(0.16)
    assert backward.diff == pytest.approx(-0.16)
    assert forward.p_value == pytest.approx(backward.p_value)
    assert stats.significant(forward.p_value) is True
    assert forward.ci_low == pytest.approx(-backward.ci_high)


def test_welch_needs_two_values_per_side():
    result = stats.welch([0.9], [0.8, 0.85])
    assert result.diff == pytest.approx(0.075)
    assert math.isnan(result.p_value) and math.isnan(result.ci_low)
    assert stats.significant(result.p_value) is None
    assert math.isnan(stats.welch([], [0.8, 0.9]).diff)


def test_welch_without_spread_is_exact():
    result = stats.welch([1.0, 1.0], [0.5, 0.5])
    assert (result.diff, result.ci_low, result.ci_high) == (0.5, 0.5, 0.5)
    same = stats.welch([1.0, 1.0], [1.0, 1.0])
    assert same.diff == 0 and math.isnan(same.p_value)  # undefined, reported as such


def test_threshold_summary_with_never():
    result = stats.threshold_summary([3, None, 1, 2])
    assert (result.median_epochs, result.reached, result.never) == (2.0, 3, 1)
    even = stats.threshold_summary([4, 1])
    assert even.median_epochs == 2.5
    never = stats.threshold_summary([None, None])
    assert math.isnan(never.median_epochs) and (never.reached, never.never) == (0, 2)


def test_half_widths_elementwise():
    widths = stats.half_widths([0.02, 0.5], [3, 1])
    assert widths[0] == pytest.approx(T_975_DF2 * 0.02 / math.sqrt(3))
    assert math.isnan(widths[1])


def test_holm_adjusts_like_the_step_down_by_hand():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> kept at
    # 0.06 (adjusted values never decrease along the order)
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_holm_leaves_missing_p_values_out_of_the_family():
    adjusted = stats.holm([0.01, float("nan"), 0.04])  # two comparisons, not three
    assert adjusted[0] == pytest.approx(0.02) and adjusted[2] == pytest.approx(0.04)
    assert math.isnan(adjusted[1])
    assert stats.holm([]) == []


def test_paired_difference_interval_and_p_value():
    result = stats.paired([0.95, 0.96, None, 0.97], [0.90, 0.92, 0.5, 0.94])
    # pairs with both values: differences 0.05, 0.04, 0.03 -> mean 0.04, std 0.01
    assert (result.test, result.n) == ("paired t", 3)
    assert result.diff == pytest.approx(0.04)
    t = 0.04 / (0.01 / math.sqrt(3))
    assert result.p_value == pytest.approx(2 * scipy_stats.t.sf(t, 2), rel=1e-9)
    half = T_975_DF2 * 0.01 / math.sqrt(3)
    assert (result.ci_low, result.ci_high) == pytest.approx((0.04 - half, 0.04 + half))
    one = stats.paired([0.9], [0.8])
    assert one.diff == pytest.approx(0.1) and math.isnan(one.p_value)


def test_iqm_and_its_bootstrap_interval():
    from runner.report.bootstrap import iqm, mean_and_iqm

    values = [0.1, 0.5, 0.6, 0.7, 0.8, 5.0, 0.55, 0.65]
    # 8 runs: the lowest 2 and the highest 2 go; the IQM is the mean of 0.55, 0.6, 0.65, 0.7
    assert iqm(values) == pytest.approx(0.625)
    mean, middle = mean_and_iqm(values)
    assert mean.value == pytest.approx(sum(values) / 8) and middle.value == pytest.approx(0.625)
    assert middle.low <= 0.625 <= middle.high and mean.low < mean.value < mean.high
    assert mean_and_iqm(values) == (mean, middle)  # seeded: the same runs, the same interval
    assert math.isnan(mean_and_iqm([0.5])[0].low)


def test_probability_of_improvement_by_hand():
    from runner.report.bootstrap import probability_of_improvement

    a, b = [0.9, 0.8, 0.7], [0.85, 0.8, 0.6]
    # unpaired, all 9 combinations: 0.9 beats 3; 0.8 beats 0.6, ties 0.8; 0.7 beats 0.6
    unpaired = probability_of_improvement(a, b, paired=False)
    assert unpaired.value == pytest.approx((3 + 1.5 + 1) / 9)
    assert unpaired.value == pytest.approx(
        scipy_stats.mannwhitneyu(a, b, alternative="greater").statistic / 9)
    # paired, seed by seed: wins, ties, wins
    paired = probability_of_improvement(a, b, paired=True)
    assert paired.value == pytest.approx(2.5 / 3) and 0 <= paired.low <= paired.high <= 1


def test_stratified_statistics_over_tasks():
    from runner.report.bootstrap import (
        improvement_over_tasks,
        performance_profile,
        pooled_iqm,
    )

    tasks_a = [[0.9, 0.91, 0.92, 0.93], [0.5, 0.52, 0.54, 0.56]]
    tasks_b = [[0.8, 0.81, 0.82, 0.83], [0.6, 0.62, 0.64, 0.66]]
    pooled = pooled_iqm(tasks_a)
    assert pooled.value == pytest.approx(scipy_stats.trim_mean(sum(tasks_a, []), 0.25))
    # A wins every pair of task 1, loses every pair of task 2: 0.5 on average
    assert improvement_over_tasks(tasks_a, tasks_b).value == pytest.approx(0.5)
    profile = performance_profile(tasks_a, np.array([0.0, 0.55, 0.95]))
    # above 0.55: all of task 1, one of four of task 2 -> (1 + 0.25) / 2
    assert profile.fraction.tolist() == pytest.approx([1.0, 0.625, 0.0])
    assert np.all(profile.low <= profile.fraction) and np.all(profile.fraction <= profile.high)
