"""The uplift statistics against scipy.stats and a textbook example."""

import math

import pytest
from scipy import stats

from goals.statistics import (
    MIN_GROUP_SIZE,
    Rate,
    Sample,
    compare_means,
    compare_rates,
    incomplete_beta,
    student_t_quantile,
    student_t_sf,
)


@pytest.mark.parametrize("freedom", [1, 2.5, 7, 29.3, 120, 4_000])
@pytest.mark.parametrize("t", [0.0, 0.3, 1.0, 1.96, 2.7, 6.0])
def test_student_t_tail_matches_scipy(t, freedom):
    assert student_t_sf(t, freedom) == pytest.approx(stats.t.sf(t, freedom), rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("freedom", [1, 3, 10.5, 58, 1_000])
@pytest.mark.parametrize("probability", [0.9, 0.975, 0.995])
def test_student_t_quantile_matches_scipy(probability, freedom):
    assert student_t_quantile(probability, freedom) == pytest.approx(stats.t.ppf(probability, freedom), rel=1e-8)


@pytest.mark.parametrize(("a", "b", "x"), [(0.5, 0.5, 0.2), (2, 3, 0.7), (30, 0.5, 0.95), (0.5, 40, 0.01)])
def test_incomplete_beta_matches_scipy(a, b, x):
    from scipy.special import betainc

    assert incomplete_beta(a, b, x) == pytest.approx(betainc(a, b, x), rel=1e-10)


def test_two_proportion_test_matches_the_formula_with_scipys_normal():
    treatment, control = Rate(conversions=460, size=4_000), Rate(conversions=38, size=400)

    result = compare_rates(treatment=treatment, control=control)

    p1, p2 = 460 / 4_000, 38 / 400
    pooled = (460 + 38) / 4_400
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / 4_000 + 1 / 400))
    margin = stats.norm.ppf(0.975) * math.sqrt(p1 * (1 - p1) / 4_000 + p2 * (1 - p2) / 400)
    assert result.absolute == pytest.approx(0.02)
    assert result.relative == pytest.approx(0.02 / 0.095)
    assert result.p_value == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)
    assert (result.low, result.high) == (pytest.approx(0.02 - margin), pytest.approx(0.02 + margin))
    assert not result.too_small and not result.significant  # p = 0.22: not shown to work


def test_a_textbook_two_proportion_example():
    # 200 of 1,000 against 150 of 1,000. Pooled rate 0.175, its standard error
    # sqrt(0.175 * 0.825 * 2 / 1,000) = 0.01699, z = 0.05 / 0.01699 = 2.942, p = 0.0033 (two-sided).
    # Unpooled error sqrt(0.2 * 0.8 / 1,000 + 0.15 * 0.85 / 1,000) = 0.01696: 0.05 ± 1.96 * 0.01696.
    result = compare_rates(treatment=Rate(200, 1_000), control=Rate(150, 1_000))

    assert result.p_value == pytest.approx(0.00326, abs=1e-5)
    assert result.low == pytest.approx(0.0168, abs=1e-4) and result.high == pytest.approx(0.0832, abs=1e-4)
    assert result.significant


def test_welch_matches_scipy_from_the_same_numbers():
    treatment = Sample.of([12.5, 0, 0, 48.0, 19.99, 0, 120.0, 35.5, 0, 64.0] * 5)
    control = Sample.of([0, 0, 24.0, 0, 15.0, 0, 80.0, 0] * 5)

    result = compare_means(treatment=treatment, control=control)

    expected = stats.ttest_ind_from_stats(
        treatment.mean, math.sqrt(treatment.variance), treatment.size,
        control.mean, math.sqrt(control.variance), control.size,
        equal_var=False,
    )  # fmt: skip
    interval = stats.ttest_ind(
        [12.5, 0, 0, 48.0, 19.99, 0, 120.0, 35.5, 0, 64.0] * 5, [0, 0, 24.0, 0, 15.0, 0, 80.0, 0] * 5, equal_var=False
    ).confidence_interval(0.95)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-8)
    assert result.low == pytest.approx(interval.low, rel=1e-8)
    assert result.high == pytest.approx(interval.high, rel=1e-8)
    assert result.absolute == pytest.approx(treatment.mean - control.mean)


@pytest.mark.parametrize(
    ("treatment", "control", "reason"),
    [
        (Rate(300, 3_000), Rate(1, 10), "Too few contacts to measure: 3,000 in the treatment, 10 in the holdout"),
        (Rate(3, 3_000), Rate(0, 300), "Too few conversions"),
        (Rate(3_000, 3_000), Rate(298, 300), "Too few conversions"),
    ],
)
def test_a_tiny_holdout_says_the_sample_is_too_small_instead_of_a_number(english, treatment, control, reason):
    result = compare_rates(treatment=treatment, control=control)

    assert result.too_small and not result.significant
    assert reason in result.reason


def test_welch_on_groups_below_the_minimum_is_too_small(english):
    small = Sample.of([1.0, 2.0, 3.0])

    result = compare_means(treatment=Sample.of([5.0] * 100 + [6.0]), control=small)

    assert result.too_small
    assert f"each needs at least {MIN_GROUP_SIZE}" in result.reason


def test_no_data_gives_no_division_by_zero():
    nobody_converted = compare_rates(treatment=Rate(0, 500), control=Rate(0, 50))
    no_spread = compare_means(treatment=Sample(100, 0.0, 0.0), control=Sample(100, 0.0, 0.0))

    assert (nobody_converted.absolute, nobody_converted.relative, nobody_converted.p_value) == (0.0, None, 1.0)
    assert (no_spread.absolute, no_spread.relative, no_spread.p_value, no_spread.low) == (0.0, None, 1.0, 0.0)


@pytest.mark.parametrize(
    ("treatment", "control"), [(Rate(1, 0), Rate(1, 10)), (Rate(11, 10), Rate(1, 10)), (Rate(-1, 10), Rate(1, 10))]
)
def test_impossible_rates_are_refused(treatment, control):
    with pytest.raises(ValueError):
        compare_rates(treatment=treatment, control=control)
