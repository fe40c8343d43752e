"""Propensity, stabilised weights, balance, weighted Kaplan-Meier and weighted robust Cox
against R (glm, survfit(weights), coxph(weights, robust = TRUE)); values made by
r/competing_iptw_rmst.R, kept in r/reference.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analytics.stats.weighting import (
    MISSING,
    adjusted_endpoint,
    balance,
    effective_sample_size,
    propensity,
    propensity_summary,
    weighted_cox,
    weighted_kaplan_meier,
)

HERE = Path(__file__).parent
R = json.loads((HERE / "r" / "reference.json").read_text())
REL = 1e-4


def approx(value):
    return pytest.approx(value, rel=REL, abs=1e-12)


@pytest.fixture(scope="module")
def lung() -> pd.DataFrame:
    return pd.read_csv(HERE / "data" / "lung_iptw.csv", dtype={"ecog": str})


@pytest.fixture(scope="module")
def fitted(lung):
    return propensity(lung, "female", ["age", "ecog"])


def test_propensity_scores_and_stabilised_weights_match_glm(fitted):
    expected = R["lung_iptw"]
    assert fitted.reason is None
    assert fitted.scores.tolist() == approx(expected["ps"])
    assert fitted.weights.tolist() == approx(expected["weights"])
    assert list(fitted.coefficients.values()) == approx(expected["ps_coef"])


def test_propensity_summary_has_the_weights_range_and_effective_sizes_of_r(fitted):
    expected = R["lung_iptw"]
    summary = propensity_summary(fitted, arms=("male", "female"))
    assert summary["n"] == 227
    assert summary["weights_min"] == approx(expected["weights_min"])
    assert summary["weights_max"] == approx(expected["weights_max"])
    assert summary["ess"] == {
        "male": approx(expected["ess"]["0"]),
        "female": approx(expected["ess"]["1"]),
    }
    json.dumps(summary, allow_nan=False)


def test_balance_gives_each_level_its_smd_before_and_after_weighting(fitted):
    expected = R["lung_iptw"]["balance"]
    rows = {
        (row["covariate"], row["level"]): row
        for row in balance(fitted.covariates, fitted.treated, fitted.weights)
    }
    assert set(rows) == {("age", None), ("ecog", "0"), ("ecog", "1"), ("ecog", "2+")}
    for (covariate, level), row in rows.items():
        reference = expected[covariate if level is None else f"{covariate}_{level}"]
        assert row["smd_before"] == approx(reference["before"])
        assert row["smd_after"] == approx(reference["after"])


def test_weighting_brings_the_standardised_differences_towards_zero(fitted):
    for row in balance(fitted.covariates, fitted.treated, fitted.weights):
        assert abs(row["smd_after"]) < max(abs(row["smd_before"]), 0.02)


def test_effective_sample_size_of_equal_weights_is_the_count():
    assert effective_sample_size([2.0] * 7) == pytest.approx(7)
    assert effective_sample_size([]) is None


def test_a_covariate_level_in_one_arm_only_makes_the_model_not_estimable(lung):
    frame = lung.assign(ecog_full=lung["ph_ecog"].astype(int).astype(str))
    result = propensity(frame, "female", ["age", "ecog_full"])
    assert result.weights is None and result.scores is None
    assert "one arm only" in result.reason
    summary = propensity_summary(result)
    assert summary["weights_min"] is None and summary["reason"] == result.reason
    json.dumps(summary, allow_nan=False)


def test_one_arm_only_makes_the_model_not_estimable(lung):
    result = propensity(lung[lung["female"] == 1], "female", ["age", "ecog"])
    assert result.weights is None and result.reason


def test_complete_separation_by_a_number_is_not_estimable():
    frame = pd.DataFrame({"treated": [0] * 6 + [1] * 6, "age": list(range(12))})
    result = propensity(frame, "treated", ["age"])
    assert result.weights is None and "separation" in result.reason


def test_a_missing_category_is_its_own_level(lung):
    frame = lung.copy()
    frame.loc[frame.index[:40:2], "ecog"] = np.nan
    frame.loc[frame.index[1:40:2], "ecog"] = None
    result = propensity(frame, "female", ["age", "ecog"])
    assert result.reason is None
    assert (result.covariates["ecog"] == MISSING).sum() == 40
    assert len(result.weights) == len(frame)


@pytest.mark.parametrize("arm", [0, 1])
def test_weighted_kaplan_meier_matches_survfit_with_weights(lung, fitted, arm):
    expected = R["lung_iptw"]["km"]
    rows = lung["female"] == arm
    curve = weighted_kaplan_meier(lung["time"][rows], lung["event"][rows], fitted.weights[rows])
    assert [curve.at(t) for t in expected["times"]] == approx(expected[str(arm)])
    assert curve.at(0) == 1.0
    assert curve.at(lung["time"].max() + 1) is None


def test_weighted_kaplan_meier_with_ties_at_every_time_matches_survfit():
    mgus2 = pd.read_csv(HERE / "data" / "mgus2.csv")
    years = np.ceil(mgus2["time"] / 12)
    weight = 0.5 + (np.round(mgus2["age"]) % 7) / 4
    for male in (0, 1):
        rows = mgus2["male"] == male
        curve = weighted_kaplan_meier(years[rows], mgus2["cause"][rows] == 2, weight[rows])
        expected = R["mgus2_years_weighted_km"][str(male)]
        assert [curve.at(t) for t in (1, 5, 10, 20)] == approx(expected)


@pytest.mark.parametrize(
    "key, covariates", [("cox_female", ["female"]), ("cox_female_age", ["female", "age"])]
)
def test_weighted_cox_with_robust_variance_matches_coxph(lung, fitted, key, covariates):
    expected = R["lung_iptw"][key]
    result = weighted_cox(lung, "time", "event", covariates, fitted.weights)
    assert result["reason"] is None
    assert result["coef"] == approx(expected["coef"][0])
    assert result["se"] == approx(expected["robust_se"][0])
    assert result["se"] != approx(expected["naive_se"][0])
    assert result["p"] == approx(expected["p"][0])
    assert result["ci95"] == [approx(expected["lower"][0]), approx(expected["upper"][0])]
    for position, name in enumerate(covariates):
        assert result["terms"][name]["se"] == approx(expected["robust_se"][position])
    json.dumps(result, allow_nan=False)


def test_weighted_cox_with_ties_at_every_time_matches_coxph():
    mgus2 = pd.read_csv(HERE / "data" / "mgus2.csv")
    frame = pd.DataFrame(
        {
            "time": np.ceil(mgus2["time"] / 12),
            "event": (mgus2["cause"] == 2).astype(int),
            "male": mgus2["male"],
            "age": mgus2["age"],
        }
    )
    weight = 0.5 + (np.round(frame["age"]) % 7) / 4
    expected = R["mgus2_years_weighted_cox"]
    result = weighted_cox(frame, "time", "event", ["male", "age"], weight)
    assert [result["terms"][name]["coef"] for name in ("male", "age")] == approx(expected["coef"])
    assert [result["terms"][name]["se"] for name in ("male", "age")] == approx(
        expected["robust_se"]
    )


def test_weighted_cox_without_events_is_null_with_a_reason(lung, fitted):
    frame = lung.assign(event=0)
    result = weighted_cox(frame, "time", "event", ["female"], fitted.weights)
    assert result["hr"] is None and result["ci95"] == [None, None] and result["reason"]


def test_weighted_cox_with_one_arm_only_is_null_with_a_reason(lung, fitted):
    rows = lung["female"] == 1
    result = weighted_cox(lung[rows], "time", "event", ["female"], fitted.weights[rows])
    assert result["hr"] is None and result["reason"]


def test_weighted_cox_with_unit_weights_is_the_unweighted_model(lung):
    from analytics.stats.survival import cox

    weighted = weighted_cox(lung, "time", "event", ["female"], np.ones(len(lung)))
    assert weighted["coef"] == pytest.approx(
        cox(lung, "time", "event", ["female"])["coef"], rel=1e-9
    )


def test_weighted_cox_leaves_out_the_rows_without_a_weight(lung, fitted):
    rows = lung.index[lung["age"] > 60]
    subset = weighted_cox(lung.loc[rows], "time", "event", ["female"], fitted.weights.loc[rows])
    unmatched = weighted_cox(lung, "time", "event", ["female"], fitted.weights.loc[rows])
    assert unmatched["n"] == subset["n"] == len(rows)
    assert unmatched["coef"] == pytest.approx(subset["coef"], rel=1e-12)


def test_adjusted_endpoint_has_the_sap_shape_and_the_values_of_r(lung, fitted):
    frame = lung.assign(arm=np.where(lung["female"] == 1, "car_t", "blinatumomab"))
    block = adjusted_endpoint(frame, "time", "event", "arm", fitted.weights, rate_months=(180, 365))
    expected = R["lung_iptw"]
    assert block["cox_iptw"]["hr"] == approx(np.exp(expected["cox_female"]["coef"][0]))
    assert block["cox_iptw"]["ci95"] == [
        approx(expected["cox_female"]["lower"][0]),
        approx(expected["cox_female"]["upper"][0]),
    ]
    assert block["cox_iptw"]["reason"] is None
    assert block["km_180m"] == {
        "blinatumomab": approx(expected["km"]["0"][0]),
        "car_t": approx(expected["km"]["1"][0]),
    }
    assert block["km_365m"]["car_t"] == approx(expected["km"]["1"][1])
    json.dumps(block, allow_nan=False)


def test_adjusted_endpoint_with_an_empty_arm_is_null_with_a_reason(lung, fitted):
    frame = lung.assign(arm="car_t")
    block = adjusted_endpoint(frame, "time", "event", "arm", fitted.weights)
    assert block["cox_iptw"]["hr"] is None and block["cox_iptw"]["reason"]
    assert block["km_12m"]["blinatumomab"] is None and block["km_12m"]["car_t"] is not None
