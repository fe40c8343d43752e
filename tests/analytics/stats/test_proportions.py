"""Rates, exact intervals and categorical tests against R (R_REFERENCE.md, study counts)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from analytics.stats.proportions import (
    categorical_test,
    cmh,
    mann_whitney,
    rate,
    rate_compare,
)

REL = 1e-4
R_REFERENCE = json.loads((Path(__file__).parent / "r" / "reference.json").read_text())


@pytest.mark.parametrize(
    "n, N, low, high",
    [
        (11, 21, 0.297807, 0.742869),
        (19, 21, 0.696226, 0.988251),
        (26, 67, 0.271368, 0.514982),
        (0, 21, 0.0, 0.161098),
    ],
)
def test_clopper_pearson_interval_matches_r(n, N, low, high):
    result = rate(n, N)
    assert result["n"] == n and result["N"] == N
    assert result["proportion"] == pytest.approx(n / N)
    assert result["ci95"] == [pytest.approx(low, rel=REL, abs=1e-12), pytest.approx(high, rel=REL)]


def test_a_rate_with_every_patient_affected_has_upper_bound_one():
    assert rate(21, 21)["ci95"][1] == 1.0


def test_a_rate_over_an_empty_denominator_has_no_proportion_and_no_interval():
    assert rate(0, 0) == {"n": 0, "N": 0, "proportion": None, "ci95": [None, None]}


def test_a_numerator_larger_than_its_denominator_is_refused():
    with pytest.raises(ValueError):
        rate(5, 4)


def test_any_crs_fisher_p_matches_r():
    result = rate_compare(11, 21, 64, 67)
    assert result["p_fisher"] == pytest.approx(1.4739369e-05, rel=REL)
    assert result["blinatumomab"]["n"] == 11
    assert result["car_t"]["N"] == 67


def test_severe_crs_fisher_p_matches_r():
    assert rate_compare(0, 21, 26, 67)["p_fisher"] == pytest.approx(0.00023782, rel=REL)


def test_rate_comparison_with_an_empty_arm_reports_counts_and_null_p():
    result = rate_compare(0, 0, 5, 10)
    assert result["p_fisher"] is None
    assert result["blinatumomab"]["proportion"] is None
    assert result["car_t"]["proportion"] == 0.5


def test_rate_comparison_is_plain_json():
    json.dumps(rate_compare(11, 21, 64, 67), allow_nan=False)


def test_rate_comparison_uses_the_given_arm_names():
    assert set(rate_compare(1, 2, 1, 2, arms=("a", "b"))) == {"a", "b", "p_fisher"}


STRATA = [
    [[2, 8], [10, 5]],
    [[4, 6], [9, 3]],
    [[1, 7], [6, 6]],
]


def mantel_haenszel_by_hand(tables):
    """Textbook formulas (Agresti, Categorical Data Analysis, 6.3-6.4)."""
    chi_num = variance = r_sum = s_sum = pr = ps_qr = qs = 0.0
    for (a, b), (c, d) in tables:
        n = a + b + c + d
        chi_num += a - (a + b) * (a + c) / n
        variance += (a + b) * (c + d) * (a + c) * (b + d) / (n**2 * (n - 1))
        p_, q_, r_, s_ = (a + d) / n, (b + c) / n, a * d / n, b * c / n
        r_sum += r_
        s_sum += s_
        pr += p_ * r_
        ps_qr += p_ * s_ + q_ * r_
        qs += q_ * s_
    chi2 = chi_num**2 / variance
    or_mh = r_sum / s_sum
    # Robins-Breslow-Greenland variance of log(OR_MH), as in R's mantelhaen.test.
    se = np.sqrt(pr / (2 * r_sum**2) + ps_qr / (2 * r_sum * s_sum) + qs / (2 * s_sum**2))
    return chi2, or_mh, or_mh * np.exp(-1.959964 * se), or_mh * np.exp(1.959964 * se)


def test_cmh_matches_the_textbook_formulas_without_continuity_correction():
    chi2, or_mh, low, high = mantel_haenszel_by_hand(STRATA)
    result = cmh(STRATA)
    assert result["chi2"] == pytest.approx(chi2, rel=1e-9)
    assert result["p"] == pytest.approx(stats.chi2.sf(chi2, 1), rel=1e-9)
    assert result["or_mh"] == pytest.approx(or_mh, rel=1e-9)
    assert result["ci95"] == [pytest.approx(low, rel=1e-6), pytest.approx(high, rel=1e-6)]
    assert 0 < result["p_breslow_day"] < 1


def test_cmh_with_one_stratum_is_the_pearson_chi_square_times_n_minus_one_over_n():
    table = [[2, 8], [10, 5]]
    pearson = stats.chi2_contingency(table, correction=False)[0]
    result = cmh([table])
    assert result["chi2"] == pytest.approx(pearson * 24 / 25, rel=1e-9)
    assert result["p_breslow_day"] is None


def test_breslow_day_finds_no_heterogeneity_between_identical_strata():
    assert cmh([STRATA[0], STRATA[0]])["p_breslow_day"] == pytest.approx(1.0)


def test_cmh_drops_a_stratum_with_an_empty_arm_or_outcome():
    with_empty = [*STRATA, [[0, 0], [3, 4]], [[0, 5], [0, 6]]]
    assert cmh(with_empty) == cmh(STRATA)


def test_cmh_without_any_informative_stratum_is_null_with_a_reason():
    result = cmh([[[0, 0], [3, 4]], [[2, 0], [5, 0]]])
    assert result["chi2"] is None and result["or_mh"] is None
    assert result["ci95"] == [None, None] and result["p_breslow_day"] is None
    assert result["reason"]


def test_cmh_with_no_events_in_one_arm_reports_an_odds_ratio_of_zero_as_r_does():
    # R: mantelhaen.test(array(c(0, 5, 10, 5, 0, 4, 8, 4), dim = c(2, 2, 2)), correct = FALSE)
    # gives X-squared 11.333, p 0.0007615, common odds ratio 0, interval NaN NaN
    # (r/competing_iptw_rmst.R, mantel_haenszel_zero_cell).
    reference = R_REFERENCE["mantel_haenszel_zero_cell"]
    tables = [np.reshape(table, (2, 2)) for table in reference["tables"]]
    result = cmh(tables)
    assert result["chi2"] == pytest.approx(reference["statistic"], rel=REL)
    assert result["p"] == pytest.approx(reference["p"], rel=REL)
    assert result["or_mh"] == reference["estimate"] == 0
    assert result["ci95"] == [None, None] == [reference["lower"], reference["upper"]]
    assert result["reason"]
    json.dumps(result, allow_nan=False)


def test_cmh_with_no_events_in_the_other_arm_has_an_infinite_odds_ratio_reported_as_null():
    result = cmh([[[3, 10], [0, 5]], [[2, 8], [0, 4]]])
    assert result["p"] is not None
    assert result["or_mh"] is None and result["ci95"] == [None, None]
    assert result["reason"]
    json.dumps(result, allow_nan=False)


def test_cmh_refuses_a_stratum_that_is_not_two_by_two():
    with pytest.raises(ValueError):
        cmh([[[1, 2, 3], [4, 5, 6]]])


def test_mann_whitney_is_exact_for_small_samples_without_ties():
    # R: wilcox.test(c(1, 2, 3), c(4, 5, 6, 7)) gives W = 0, p = 2 / 35.
    assert mann_whitney([1, 2, 3], [4, 5, 6, 7]) == pytest.approx(2 / 35)


def test_mann_whitney_uses_the_corrected_normal_approximation_with_ties():
    x, y = [1, 2, 2, 3, 5], [3, 4, 5, 5, 6]
    expected = stats.mannwhitneyu(x, y, method="asymptotic", use_continuity=True).pvalue
    assert mann_whitney(x, y) == pytest.approx(expected)


def test_mann_whitney_ignores_missing_values_and_is_null_for_an_empty_group():
    assert mann_whitney([1, 2, 3, np.nan], [4, 5, 6, 7]) == pytest.approx(2 / 35)
    assert mann_whitney([], [1, 2]) is None
    assert mann_whitney([np.nan], [1, 2]) is None


def test_categorical_test_is_fisher_for_a_two_by_two_table():
    assert categorical_test([[11, 10], [64, 3]]) == pytest.approx(1.4739369e-05, rel=REL)


def test_categorical_test_is_pearson_chi_square_for_a_larger_table():
    table = [[10, 5, 3], [4, 9, 8]]
    assert categorical_test(table) == pytest.approx(stats.chi2_contingency(table)[1])


def test_categorical_test_drops_empty_categories_before_choosing_the_test():
    assert categorical_test([[11, 10, 0], [64, 3, 0]]) == categorical_test([[11, 10], [64, 3]])


def test_categorical_test_is_null_when_only_one_category_has_counts():
    assert categorical_test([[5, 0], [7, 0]]) is None
