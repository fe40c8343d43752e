"""Kaplan-Meier, log-rank and Cox against R's survival package (R_REFERENCE.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter
from lifelines.datasets import load_lung

from analytics.stats.survival import (
    DAYS_PER_MONTH,
    cox,
    kaplan_meier,
    km_summary,
    km_summary_days,
    logrank,
    median_followup,
)

REL = 1e-4


def approx(value):
    return pytest.approx(value, rel=REL)


@pytest.fixture(scope="module")
def aml() -> pd.DataFrame:
    frame = pd.read_csv(Path(__file__).parent / "data" / "aml.csv")
    frame["nonmaintained"] = (frame["x"] == "Nonmaintained").astype(int)
    return frame


@pytest.fixture(scope="module")
def lung() -> pd.DataFrame:
    frame = load_lung()
    # lifelines ships status already recoded to 1 = dead, 0 = censored (R has 2 / 1).
    assert set(frame["status"].unique()) == {0, 1}
    return frame


AML_KM = {
    "Maintained": {
        "n": 11,
        "events": 7,
        "median": 31,
        "median_ci95": [13, None],
        "rate_12m": 0.9090909,
        "rate_12m_ci95": [0.5080802, 0.9866738],
        "rate_24m": 0.6136364,
        "rate_24m_ci95": [0.2657520, 0.8352992],
    },
    "Nonmaintained": {
        "n": 12,
        "events": 11,
        "median": 23,
        "median_ci95": [5, 33],
        "rate_12m": 0.5833333,
        "rate_12m_ci95": [0.2701389, 0.8009402],
        "rate_24m": 0.4861111,
        "rate_24m_ci95": [0.1918766, 0.7296716],
    },
}


@pytest.mark.parametrize("group", sorted(AML_KM))
def test_aml_kaplan_meier_matches_r_with_log_log_intervals(aml, group):
    expected = AML_KM[group]
    rows = aml[aml["x"] == group]
    result = km_summary(rows["time"], rows["status"])
    assert result["n"] == expected["n"]
    assert result["events"] == expected["events"]
    assert result["median_months"] == expected["median"]
    assert result["median_ci95"] == expected["median_ci95"]
    for key in ("rate_12m", "rate_24m"):
        assert result[key] == approx(expected[key])
        assert result[f"{key}_ci95"] == [approx(bound) for bound in expected[f"{key}_ci95"]]


def test_aml_log_rank_matches_r(aml):
    result = logrank(aml["time"], aml["status"], aml["x"])
    assert result["chi2"] == approx(3.396389)
    assert result["p"] == approx(0.0653393)


def test_aml_cox_nonmaintained_versus_maintained_matches_r_efron(aml):
    result = cox(aml, "time", "status", ["nonmaintained"])
    assert result["coef"] == approx(0.9155326)
    assert result["hr"] == approx(2.498105)
    assert result["se"] == approx(0.5119343)
    assert result["p"] == approx(0.07371486)
    assert result["ci95"] == [approx(0.9159073), approx(6.813496)]
    assert result["lr_chi2"] == approx(3.384447)


LUNG_KM = {
    1: {"n": 138, "events": 112, "median": 270, "median_ci95": [210, 306]},
    2: {"n": 90, "events": 53, "median": 426, "median_ci95": [345, 524]},
}
LUNG_S365 = {1: (0.3360878, 0.2527291, 0.4213022), 2: (0.5264630, 0.4035798, 0.6353162)}


@pytest.mark.parametrize("sex", [1, 2])
def test_lung_kaplan_meier_by_sex_matches_r(lung, sex):
    rows = lung[lung["sex"] == sex]
    result = km_summary(rows["time"], rows["status"], rate_months=(365,))
    expected = LUNG_KM[sex]
    assert (result["n"], result["events"]) == (expected["n"], expected["events"])
    assert result["median_months"] == expected["median"]
    assert result["median_ci95"] == expected["median_ci95"]
    s, low, high = LUNG_S365[sex]
    assert result["rate_365m"] == approx(s)
    assert result["rate_365m_ci95"] == [approx(low), approx(high)]


def test_lung_log_rank_by_sex_matches_r(lung):
    result = logrank(lung["time"], lung["status"], lung["sex"])
    assert result["chi2"] == approx(10.326742)
    assert result["p"] == approx(0.00131116)


def test_lung_log_rank_across_three_ecog_groups_matches_r(lung):
    rows = lung[lung["ph.ecog"] < 3]
    result = logrank(rows["time"], rows["status"], rows["ph.ecog"])
    assert result["chi2"] == approx(18.012097)
    assert result["p"] == approx(0.000122666)
    assert result["df"] == 2


def test_lung_cox_by_sex_matches_r(lung):
    result = cox(lung, "time", "status", ["sex"])
    assert result["coef"] == approx(-0.5310235)
    assert result["hr"] == approx(0.5880028)
    assert result["se"] == approx(0.1671786)
    assert result["p"] == approx(0.001491229)
    assert result["ci95"] == [approx(0.4237178), approx(0.8159848)]


def test_lung_cox_on_age_sex_and_ecog_matches_r(lung):
    result = cox(lung, "time", "status", ["age", "sex", "ph.ecog"])
    assert (result["n"], result["events"]) == (227, 164)
    terms = result["terms"]
    assert terms["age"]["coef"] == pytest.approx(0.01106676, rel=1e-6)
    assert terms["sex"]["coef"] == pytest.approx(-0.55261240, rel=1e-6)
    assert terms["ph.ecog"]["coef"] == pytest.approx(0.46372848, rel=1e-6)
    assert result["coef"] == terms["age"]["coef"]
    assert result["lr_chi2"] == approx(30.500669)
    assert result["concordance"] == approx(0.637135)


def test_cox_dummy_codes_a_text_covariate_against_its_first_level(aml):
    frame = aml.assign(site=np.where(np.arange(len(aml)) % 2, "north", "south"))
    result = cox(frame, "time", "status", ["nonmaintained", "site"])
    assert set(result["terms"]) == {"nonmaintained", "site_south"}


def test_cox_leaves_out_categories_absent_from_the_data(aml):
    burden = pd.Categorical(
        np.where(np.arange(len(aml)) % 3, "morphologic", "mrd_only"),
        categories=["unknown", "mrd_only", "morphologic"],
    )
    result = cox(aml.assign(burden=burden), "time", "status", ["nonmaintained", "burden"])
    assert set(result["terms"]) == {"nonmaintained", "burden_morphologic"}


def test_cox_without_events_is_null_with_a_reason(aml):
    result = cox(aml.assign(status=0), "time", "status", ["nonmaintained"])
    assert result["hr"] is None and result["ci95"] == [None, None]
    assert result["reason"] == "no events"


def test_cox_with_an_exposure_that_does_not_vary_is_null_with_a_reason(aml):
    result = cox(aml.assign(nonmaintained=1), "time", "status", ["nonmaintained"])
    assert result["hr"] is None and result["reason"]


def test_cox_with_complete_separation_is_null_with_a_reason():
    # Every event is in the exposed group and happens before any unexposed time.
    frame = pd.DataFrame(
        {"time": [1, 2, 3, 4, 5, 6, 7, 8], "event": [1] * 4 + [0] * 4, "car_t": [1] * 4 + [0] * 4}
    )
    result = cox(frame, "time", "event", ["car_t"])
    assert result["hr"] is None
    assert "did not converge" in result["reason"]


def test_cox_fits_when_every_censored_patient_is_in_one_arm():
    # lifelines warns of "low variance" here, but the model is estimable.
    frame = pd.DataFrame(
        {"time": [2, 4, 6, 1, 3, 5, 7, 8], "event": [1] * 6 + [0] * 2, "car_t": [0] * 3 + [1] * 5}
    )
    result = cox(frame, "time", "event", ["car_t"])
    assert result["hr"] is not None and "reason" not in result


def test_cox_with_collinear_covariates_is_null_with_a_reason(aml):
    frame = aml.assign(copy=aml["nonmaintained"])
    result = cox(frame, "time", "status", ["nonmaintained", "copy"])
    assert result["hr"] is None and result["reason"]


def test_log_rank_needs_two_groups_and_an_event():
    assert logrank([1, 2, 3], [1, 0, 1], ["a", "a", "a"])["chi2"] is None
    result = logrank([1, 2, 3], [0, 0, 0], ["a", "b", "a"])
    assert result["p"] is None and result["reason"] == "no events"


def test_median_is_the_first_time_survival_reaches_one_half():
    # Six deaths at 1..6: S(3) = 0.5 exactly; lifelines' own median says 4 (float rounding),
    # R says 3.5 (midpoint of the flat part); the SAP says 3, as SAS.
    result = km_summary([1, 2, 3, 4, 5, 6], [1] * 6)
    assert result["median_months"] == 3


def test_median_not_reached_is_null():
    result = km_summary([1, 2, 3, 4], [1, 0, 0, 0])
    assert result["median_months"] is None
    assert result["median_ci95"][1] is None


def test_survival_at_a_time_counts_events_at_exactly_that_time():
    result = km_summary([12, 20, 30, 40], [1, 0, 0, 0], rate_months=(12,))
    assert result["rate_12m"] == pytest.approx(0.75)


def test_survival_is_null_once_nobody_is_at_risk():
    result = km_summary([3, 5, 8], [1, 0, 0])
    assert result["rate_12m"] is None and result["rate_12m_ci95"] == [None, None]
    assert result["rate_24m"] is None


def test_survival_is_reported_at_the_last_follow_up_time():
    result = km_summary([3, 5, 12], [1, 0, 0])
    assert result["rate_12m"] == pytest.approx(2 / 3)
    assert result["rate_24m"] is None


def test_numbers_at_risk_count_patients_followed_at_least_that_long():
    result = km_summary([0.5, 3, 4, 12, 30], [1, 1, 0, 0, 1])
    assert result["at_risk"] == {"0": 5, "3": 4, "6": 2, "9": 2, "12": 2, "18": 1, "24": 1}


def test_curve_starts_at_one_and_steps_down_at_each_event():
    curve = km_summary([2, 4, 6], [1, 0, 1])["curve"]
    assert curve[0] == {"t": 0.0, "s": 1.0, "lo": 1.0, "hi": 1.0}
    assert [point["t"] for point in curve] == [0.0, 2.0, 4.0, 6.0]
    assert [point["s"] for point in curve] == pytest.approx([1, 2 / 3, 2 / 3, 0])


def test_summary_in_days_is_reported_in_months():
    days = pd.Series([1, 2, 3, 4, 5, 6]) * DAYS_PER_MONTH
    result = km_summary_days(days, [1] * 6)
    assert result["median_months"] == pytest.approx(3)
    assert result["at_risk"]["3"] == 4


def test_summary_of_an_empty_arm_is_null_with_a_reason():
    result = km_summary([], [])
    assert result["n"] == 0 and result["median_months"] is None
    assert result["rate_12m"] is None and result["curve"] == []
    assert result["at_risk"]["0"] == 0
    assert result["reason"] == "no patients"


def test_summary_is_plain_json(aml):
    result = km_summary(aml["time"], aml["status"])
    json.dumps(result, allow_nan=False)
    assert all(type(point["t"]) is float for point in result["curve"])


def test_median_follow_up_uses_reverse_kaplan_meier():
    # Reversed: censorings at 2 and 4 are the events; S = 1, 2/3 at 2, 0 at 4.
    assert median_followup([1, 2, 3, 4], [1, 0, 1, 0]) == 4


def test_median_follow_up_of_no_patients_is_null():
    assert median_followup([], []) is None


@pytest.mark.parametrize("late_entries", [False, True])
def test_kaplan_meier_gives_lifelines_curve_and_bounds(late_entries):
    rng = np.random.default_rng(3)
    durations = rng.integers(1, 40, 300).astype(float)  # many ties
    observed = rng.random(300) < 0.6
    entry = np.floor(durations * rng.random(300)) if late_entries else None
    reference = KaplanMeierFitter().fit(durations, observed, entry=entry)
    curve = kaplan_meier(durations, observed, entry=entry)
    assert curve.times.tolist() == reference.survival_function_.index.tolist()
    assert curve.survival == pytest.approx(reference.survival_function_.iloc[:, 0], rel=1e-12)
    bands = reference.confidence_interval_survival_function_
    assert curve.lower == pytest.approx(bands.iloc[:, 0], rel=1e-12)
    assert curve.upper == pytest.approx(bands.iloc[:, 1], rel=1e-12)
