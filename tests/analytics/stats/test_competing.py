"""Cumulative incidence, Gray's test, Fine-Gray and cause-specific Cox against R's cmprsk and
survival (values made by r/competing_iptw_rmst.R, kept in r/reference.json)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analytics.stats.competing import (
    cause_block,
    cause_specific_cox,
    cif_summary,
    cumulative_incidence,
    fine_gray,
    fine_gray_fit,
    gray_test,
    log_log_interval,
)
from analytics.stats.survival import kaplan_meier

HERE = Path(__file__).parent
R = json.loads((HERE / "r" / "reference.json").read_text())
REL = 1e-4
FINE_GRAY_REL = 1e-3


def approx(value, rel=REL):
    return pytest.approx(value, rel=rel, abs=1e-12)


@pytest.fixture(scope="module")
def mgus2() -> pd.DataFrame:
    return pd.read_csv(HERE / "data" / "mgus2.csv")


@pytest.fixture(scope="module")
def mgus2_years(mgus2) -> pd.DataFrame:
    return mgus2.assign(time=np.ceil(mgus2["time"] / 12))


@pytest.fixture(scope="module")
def pbc() -> pd.DataFrame:
    return pd.read_csv(HERE / "data" / "pbc.csv")


def frame_of(data: dict) -> pd.DataFrame:
    return pd.DataFrame(data)


def check_curve(time, cause, of_cause, expected):
    fit = cumulative_incidence(time, cause, of_cause)
    assert fit.times.tolist() == expected["step_time"]
    assert fit.incidence.tolist() == approx(expected["step_est"])
    assert fit.variance.tolist() == approx(expected["step_var"])
    for t, est, var in zip(expected["times"], expected["est"], expected["var"], strict=True):
        incidence, variance = fit.at(t)
        assert incidence == (None if est is None else approx(est))
        assert variance == (None if var is None else approx(var))


@pytest.mark.parametrize("of_cause, key", [(1, "cif_progression"), (2, "cif_death")])
@pytest.mark.parametrize("male", [0, 1])
def test_mgus2_cumulative_incidence_and_variance_match_cuminc(mgus2, of_cause, key, male):
    rows = mgus2[mgus2["male"] == male]
    check_curve(rows["time"], rows["cause"], of_cause, R["mgus2"][key][str(male)])


@pytest.mark.parametrize("of_cause, key", [(1, "cif_transplant"), (2, "cif_death")])
@pytest.mark.parametrize("arm", [0, 1])
def test_pbc_cumulative_incidence_and_variance_match_cuminc(pbc, of_cause, key, arm):
    rows = pbc[pbc["trt2"] == arm]
    check_curve(rows["time"], rows["status"], of_cause, R["pbc"][key][str(arm)])


@pytest.mark.parametrize("male", [0, 1])
def test_cumulative_incidence_with_ties_at_every_time_matches_cuminc(mgus2_years, male):
    rows = mgus2_years[mgus2_years["male"] == male]
    check_curve(rows["time"], rows["cause"], 1, R["mgus2_years"]["cif_progression"][str(male)])


def test_without_competing_events_the_incidence_is_one_minus_kaplan_meier():
    data = frame_of(R["aml_no_competing"]["data"])
    for arm in (0, 1):
        rows = data[data["arm"] == arm]
        check_curve(rows["time"], rows["cause"], 1, R["aml_no_competing"]["cif"][str(arm)])
        fit = cumulative_incidence(rows["time"], rows["cause"], 1)
        km = kaplan_meier(rows["time"].to_numpy(), rows["cause"].to_numpy())
        survival = km.survival[np.searchsorted(km.times, fit.times)]
        assert fit.incidence == pytest.approx(1 - survival)


def test_an_arm_without_events_of_the_cause_has_a_flat_zero_incidence():
    data = frame_of(R["arm_without_events"]["data"])
    rows = data[data["arm"] == 1]
    check_curve(rows["time"], rows["cause"], 1, R["arm_without_events"]["cif"]["1"])
    summary = cif_summary(rows["time"], rows["cause"], 1, rate_months=(5, 10))
    assert summary["events"] == 0 and summary["competing"] == 4
    assert summary["at_5m"] == 0 and summary["at_5m_ci95"] == [0.0, 0.0]
    assert summary["curve"] == [{"t": 0.0, "f": 0.0}]


def test_one_arm_only_has_a_curve_and_no_gray_test():
    data = frame_of(R["arm_without_events"]["data"])
    rows = data[data["arm"] == 0]
    check_curve(rows["time"], rows["cause"], 1, R["one_arm"]["cif"]["0"])
    result = gray_test(rows["time"], rows["cause"], rows["arm"])
    assert result["chi2"] is None and result["p"] is None and result["reason"]


@pytest.mark.parametrize("male", [0, 1])
def test_cif_summary_gives_the_log_log_interval_of_the_sap(mgus2, male):
    expected = R["mgus2"]["cif_progression"][str(male)]
    rows = mgus2[mgus2["male"] == male]
    summary = cif_summary(rows["time"], rows["cause"], 1, rate_months=(60, 120))
    for month, position in ((60, 1), (120, 2)):
        assert summary[f"at_{month}m"] == approx(expected["est"][position])
        assert summary[f"at_{month}m_ci95"] == [
            approx(expected["lower"][position]),
            approx(expected["upper"][position]),
        ]
    assert summary["n"] == len(rows)
    assert summary["events"] == int((rows["cause"] == 1).sum())
    assert summary["competing"] == int((rows["cause"] == 2).sum())
    assert summary["curve"][0] == {"t": 0.0, "f": 0.0}
    assert summary["curve"][1]["f"] == approx(expected["step_est"][0])
    json.dumps(summary, allow_nan=False)


def test_cif_summary_past_the_last_follow_up_is_null(mgus2):
    rows = mgus2[mgus2["male"] == 1]
    late = float(rows["time"].max()) + 1
    summary = cif_summary(rows["time"], rows["cause"], 1, rate_months=(late,))
    assert summary[f"at_{late:g}m"] is None and summary[f"at_{late:g}m_ci95"] == [None, None]


def test_cif_summary_of_no_patients_says_so():
    summary = cif_summary([], [], 1)
    assert summary["n"] == 0 and summary["reason"] and summary["at_12m"] is None


def test_log_log_interval_orders_its_bounds_and_brackets_the_estimate():
    low, high = log_log_interval(0.3, 0.002)
    assert low < 0.3 < high
    assert log_log_interval(None, None) == [None, None]


@pytest.mark.parametrize(
    "dataset, of_cause, column",
    [
        ("mgus2", 1, "cif_progression"),
        ("mgus2", 2, "cif_death"),
        ("pbc", 2, "cif_death"),
        ("pbc", 1, "cif_transplant"),
        ("mgus2_years", 1, "cif_progression"),
    ],
)
def test_gray_test_matches_cuminc(mgus2, mgus2_years, pbc, dataset, of_cause, column):
    data = {"mgus2": mgus2, "mgus2_years": mgus2_years, "pbc": pbc}[dataset]
    cause = data["cause"] if "cause" in data else data["status"]
    group = data["male"] if "male" in data else data["trt2"]
    expected = R[dataset][column]["gray"]
    result = gray_test(data["time"], cause, group, of_cause)
    assert result["chi2"] == approx(expected["stat"])
    assert result["p"] == approx(expected["p"])
    assert result["df"] == expected["df"]


@pytest.mark.parametrize("case", ["aml_no_competing", "arm_without_events"])
def test_gray_test_edge_cases_match_cuminc(case):
    data = frame_of(R[case]["data"])
    result = gray_test(data["time"], data["cause"], data["arm"])
    assert result["chi2"] == approx(R[case]["cif"]["gray"]["stat"])
    assert result["p"] == approx(R[case]["cif"]["gray"]["p"])


FINE_GRAY_CASES = [
    ("mgus2", "crr_progression_male", ["male"], 1),
    ("mgus2", "crr_progression_male_age", ["male", "age"], 1),
    ("mgus2", "crr_death_male", ["male"], 2),
    ("pbc", "crr_death_trt", ["trt2"], 2),
    ("pbc", "crr_death_trt_age", ["trt2", "age"], 2),
    ("mgus2_years", "crr_progression_male", ["male"], 1),
]


@pytest.mark.parametrize("dataset, key, covariates, of_cause", FINE_GRAY_CASES)
def test_fine_gray_estimate_and_variance_match_crr(
    mgus2, mgus2_years, pbc, dataset, key, covariates, of_cause
):
    data = {"mgus2": mgus2, "mgus2_years": mgus2_years, "pbc": pbc}[dataset]
    cause_col = "cause" if "cause" in data else "status"
    expected = R[dataset][key]
    fit = fine_gray_fit(
        data[covariates].to_numpy(dtype=float),
        data["time"].to_numpy(dtype=float),
        data[cause_col].to_numpy(),
        of_cause,
    )
    assert fit.converged
    assert fit.coef.tolist() == approx(expected["coef"], rel=FINE_GRAY_REL)
    assert np.sqrt(np.diag(fit.covariance)).tolist() == approx(expected["se"], rel=FINE_GRAY_REL)
    assert fit.log_likelihood == approx(expected["loglik"])
    result = fine_gray(data, "time", cause_col, covariates, of_cause)
    assert result["hr"] == approx(np.exp(expected["coef"][0]), rel=FINE_GRAY_REL)
    assert result["ci95"] == [
        approx(expected["lower"][0], rel=FINE_GRAY_REL),
        approx(expected["upper"][0], rel=FINE_GRAY_REL),
    ]
    assert result["p"] == approx(expected["p"][0], rel=FINE_GRAY_REL)
    json.dumps(result, allow_nan=False)


def test_fine_gray_without_competing_events_matches_crr():
    data = frame_of(R["aml_no_competing"]["data"])
    expected = R["aml_no_competing"]["crr"]
    result = fine_gray(data, "time", "cause", ["arm"])
    assert result["coef"] == approx(expected["coef"][0], rel=FINE_GRAY_REL)
    assert result["se"] == approx(expected["se"][0], rel=FINE_GRAY_REL)


def test_fine_gray_with_an_arm_without_events_is_null_with_a_reason():
    data = frame_of(R["arm_without_events"]["data"])
    result = fine_gray(data, "time", "cause", ["arm"])
    assert result["hr"] is None and result["ci95"] == [None, None] and result["p"] is None
    assert result["reason"]


def test_fine_gray_with_one_arm_only_is_null_with_a_reason():
    data = frame_of(R["arm_without_events"]["data"])
    result = fine_gray(data[data["arm"] == 0], "time", "cause", ["arm"])
    assert result["hr"] is None and result["reason"]


def test_fine_gray_without_events_of_the_cause_is_null_with_a_reason():
    data = frame_of(R["arm_without_events"]["data"]).assign(cause=lambda d: d["cause"] * 0)
    assert fine_gray(data, "time", "cause", ["arm"])["reason"] == "no events"


@pytest.mark.parametrize(
    "dataset, key, covariates, of_cause",
    [
        ("mgus2", "cs_cox_progression_male", ["male"], 1),
        ("mgus2", "cs_cox_death_male_age", ["male", "age"], 2),
        ("mgus2_years", "cs_cox_progression_male", ["male"], 1),
    ],
)
def test_cause_specific_cox_matches_coxph(mgus2, mgus2_years, dataset, key, covariates, of_cause):
    data = {"mgus2": mgus2, "mgus2_years": mgus2_years}[dataset]
    expected = R[dataset][key]
    result = cause_specific_cox(data, "time", "cause", covariates, of_cause)
    assert result["coef"] == approx(expected["coef"][0])
    assert result["se"] == approx(expected["se"][0])
    assert result["p"] == approx(expected["p"][0])
    assert result["ci95"] == [approx(expected["lower"][0]), approx(expected["upper"][0])]
    for position, name in enumerate(covariates):
        assert result["terms"][name]["coef"] == approx(expected["coef"][position])


def test_fine_gray_fits_100000_patients():
    # crr loops over pairs of patients (78 s at 10,000 here, hours at 100,000); the cumulative
    # sums fit this in a fraction of a second (timed by `make bench`, never asserted here).
    rng = np.random.default_rng(7)
    n = 100_000
    arm = rng.integers(0, 2, n).astype(float)
    relapse = rng.exponential(1 / np.exp(0.3 * arm))
    death = rng.exponential(2.0, n)
    censor = rng.uniform(0, 3, n)
    time_days = np.round(np.minimum(np.minimum(relapse, death), censor) * 365)
    cause = np.where(censor < np.minimum(relapse, death), 0, np.where(relapse < death, 1, 2))
    fit = fine_gray_fit(arm[:, None], time_days, cause, 1)
    assert fit.converged and 0.1 < fit.coef[0] < 0.5


def test_fine_gray_without_censoring_matches_crr(mgus2):
    expected = R["mgus2_uncensored"]["crr_progression_male"]
    result = fine_gray(mgus2[mgus2["cause"] > 0], "time", "cause", ["male"])
    assert result["coef"] == approx(expected["coef"][0], rel=FINE_GRAY_REL)
    assert result["se"] == approx(expected["se"][0], rel=FINE_GRAY_REL)
    assert result["reason"] is None


def test_gray_test_across_three_groups_has_two_degrees_of_freedom(mgus2):
    stat, p, df = R["mgus2_three_groups"]["gray"]
    group = np.where(mgus2["age"] > 70, "old", np.where(mgus2["male"] == 1, "m", "f"))
    result = gray_test(mgus2["time"], mgus2["cause"], group, 1)
    assert result["chi2"] == approx(stat) and result["p"] == approx(p) and result["df"] == df


def test_gray_test_without_events_of_the_cause_is_null_with_a_reason(mgus2):
    cause = mgus2["cause"].where(mgus2["cause"] != 1, 0)
    result = gray_test(mgus2["time"], cause, mgus2["male"], 1)
    assert result["chi2"] is None and result["p"] is None and result["reason"]


def test_cause_specific_cox_and_fine_gray_always_say_whether_they_have_a_reason(mgus2):
    assert cause_specific_cox(mgus2, "time", "cause", ["male"])["reason"] is None
    assert fine_gray(mgus2, "time", "cause", ["male"])["reason"] is None


def test_cause_block_has_the_sap_shape_and_the_values_of_r(mgus2):
    arms = np.where(mgus2["male"] == 1, "car_t", "blinatumomab")
    block = cause_block(mgus2["time"], mgus2["cause"], arms, 1, rate_months=(60, 120))
    assert set(block) == {"blinatumomab", "car_t", "gray", "fine_gray", "cause_specific_cox"}
    expected = R["mgus2"]["cif_progression"]
    assert block["car_t"]["at_60m"] == approx(expected["1"]["est"][1])
    assert block["blinatumomab"]["at_120m"] == approx(expected["0"]["est"][2])
    assert block["gray"] == {
        "chi2": approx(expected["gray"]["stat"]),
        "p": approx(expected["gray"]["p"]),
    }
    fine_gray_hr = np.exp(R["mgus2"]["crr_progression_male"]["coef"][0])
    assert block["fine_gray"]["hr"] == approx(fine_gray_hr, rel=FINE_GRAY_REL)
    cox_hr = np.exp(R["mgus2"]["cs_cox_progression_male"]["coef"][0])
    assert block["cause_specific_cox"]["hr"] == approx(cox_hr)
    for hrci in (block["fine_gray"], block["cause_specific_cox"]):
        assert {"hr", "ci95", "p", "reason"} <= set(hrci) and hrci["reason"] is None
    json.dumps(block, allow_nan=False)


def test_cause_block_with_one_arm_only_keeps_its_curve_and_gives_reasons(mgus2):
    block = cause_block(mgus2["time"], mgus2["cause"], ["car_t"] * len(mgus2), 1)
    assert block["car_t"]["n"] == len(mgus2) and block["blinatumomab"]["n"] == 0
    assert block["gray"]["chi2"] is None and block["gray"]["reason"]
    assert block["fine_gray"]["hr"] is None and block["fine_gray"]["reason"]
    assert block["cause_specific_cox"]["hr"] is None and block["cause_specific_cox"]["reason"]
    json.dumps(block, allow_nan=False)
