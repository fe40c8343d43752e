"""Transplant analyses on small cohorts whose answers can be worked out by hand."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from lifelines.datasets import load_lung

from analytics.stats.survival import cox, logrank
from analytics.stats.transplant import (
    counting_process,
    landmark,
    mantel_byar,
    naive_logrank,
    simon_makuch,
    time_dependent_cox,
)

NO_TX = np.nan


def cohort(*patients: tuple[float, int, float], arm: list[str] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame(patients, columns=["time", "event", "tx_day"])
    if arm is not None:
        frame["arm"] = arm
    return frame


def rows_of(frame: pd.DataFrame) -> list[tuple[float, float, int, int]]:
    return [
        (row.start, row.stop, row.event, row.transplanted) for row in frame.itertuples(index=False)
    ]


@pytest.fixture(scope="module")
def lung_as_transplant() -> pd.DataFrame:
    """lung, with ~40% 'transplanted' at varied days (some after the event, some on day 0)."""
    frame = load_lung()[["time", "status", "sex"]].rename(columns={"status": "event"})
    rng = np.random.default_rng(7)
    tx_day = rng.integers(0, 400, len(frame)).astype(float)
    frame["tx_day"] = np.where(rng.random(len(frame)) < 0.4, tx_day, np.nan)
    frame["arm"] = np.where(frame["sex"] == 1, "blinatumomab", "car_t")
    return frame


def test_a_patient_never_transplanted_has_one_untransplanted_row():
    assert rows_of(counting_process(cohort((100, 1, NO_TX)))) == [(0.0, 100.0, 1, 0)]


def test_a_transplant_splits_follow_up_at_the_transplant_day():
    rows = counting_process(cohort((100, 1, 30)))
    assert rows_of(rows) == [(0.0, 30.0, 0, 0), (30.0, 100.0, 1, 1)]
    assert rows["id"].tolist() == [0, 0]


def test_a_transplant_on_the_day_of_the_event_moves_half_a_day_earlier():
    assert rows_of(counting_process(cohort((50, 1, 50)))) == [(0.0, 49.5, 0, 0), (49.5, 50.0, 1, 1)]


def test_a_transplant_after_the_event_or_censoring_is_ignored():
    assert rows_of(counting_process(cohort((100, 1, 120)))) == [(0.0, 100.0, 1, 0)]
    assert rows_of(counting_process(cohort((100, 0, 101)))) == [(0.0, 100.0, 0, 0)]


def test_a_transplant_on_day_zero_counts_from_the_start():
    assert rows_of(counting_process(cohort((100, 0, 0)))) == [(0.0, 100.0, 0, 1)]


def test_an_event_on_day_zero_gets_half_a_day_of_follow_up():
    assert rows_of(counting_process(cohort((0, 1, NO_TX)))) == [(0.0, 0.5, 1, 0)]


def test_counting_process_carries_covariates_on_every_row():
    rows = counting_process(cohort((100, 1, 30), arm=["car_t"]), covariates=("arm",))
    assert rows["arm"].tolist() == ["car_t", "car_t"]


# Four patients: A dies at 10, B (transplanted on day 12) dies at 20, C censored at 30,
# D dies at 15. By hand, transplanted group observed O, expected E, variance V:
#   naive (B transplanted from day 0): t=10 n=4 n1=1, t=15 n=3 n1=1, t=20 n=2 n1=1, d1 only at 20
#     O = 1, E = 1/4 + 1/3 + 1/2 = 13/12, V = 3/16 + 2/9 + 1/4 = 95/144, chi2 = 1/95
#   Mantel-Byar (B untransplanted at t=10): E = 1/3 + 1/2 = 5/6, V = 2/9 + 1/4 = 17/36,
#     chi2 = 1/17
FOUR = cohort((10, 1, NO_TX), (20, 1, 12), (30, 0, NO_TX), (15, 1, NO_TX))


def test_naive_log_rank_counts_a_transplant_from_day_0():
    result = naive_logrank(FOUR)
    assert result["expected"] == pytest.approx(13 / 12)
    assert result["chi2"] == pytest.approx(1 / 95)
    assert (result["n_transplanted"], result["n_not"]) == (1, 3)


def test_mantel_byar_counts_a_patient_as_untransplanted_before_the_transplant():
    result = mantel_byar(counting_process(FOUR))
    assert result["observed"] == 1
    assert result["expected"] == pytest.approx(5 / 6)
    assert result["chi2"] == pytest.approx(1 / 17)


def test_naive_log_rank_equals_lifelines_log_rank_of_ever_transplanted(lung_as_transplant):
    frame = lung_as_transplant
    reference = logrank(frame["time"], frame["event"], frame["tx_day"].notna())
    result = naive_logrank(frame)
    assert result["chi2"] == pytest.approx(reference["chi2"], rel=1e-9)
    assert result["p"] == pytest.approx(reference["p"], rel=1e-9)


def test_mantel_byar_equals_ordinary_log_rank_when_every_transplant_is_on_day_0(
    lung_as_transplant,
):
    frame = lung_as_transplant.assign(tx_day=np.where(lung_as_transplant["sex"] == 2, 0, np.nan))
    reference = logrank(frame["time"], frame["event"], frame["sex"])
    result = mantel_byar(counting_process(frame))
    assert result["chi2"] == pytest.approx(reference["chi2"], rel=1e-9)
    assert result["p"] == pytest.approx(reference["p"], rel=1e-9)


def test_stratified_test_ignores_a_stratum_without_events():
    quiet = cohort((40, 0, 5), (50, 0, NO_TX), arm=["car_t", "car_t"])
    busy = FOUR.assign(arm="blinatumomab")
    rows = counting_process(pd.concat([busy, quiet], ignore_index=True), ("arm",))
    stratified = mantel_byar(rows, strata="arm")
    assert stratified["chi2"] == pytest.approx(1 / 17)


def test_stratified_test_sums_observed_expected_and_variance_over_strata():
    both = pd.concat([FOUR.assign(arm="a"), FOUR.assign(arm="b")], ignore_index=True)
    result = mantel_byar(counting_process(both, ("arm",)), strata="arm")
    # O - E and V double, so chi2 = (2/6)^2 / (34/36) = 2/17.
    assert result["chi2"] == pytest.approx(2 / 17)


def test_mantel_byar_without_transplanted_patients_is_null_with_a_reason():
    result = mantel_byar(counting_process(cohort((10, 1, NO_TX), (20, 0, NO_TX), (30, 1, 45))))
    assert result["chi2"] is None and result["p"] is None
    assert result["reason"] == "only one group"
    assert result["n_transplanted"] == 0


def test_mantel_byar_without_events_is_null_with_a_reason():
    result = mantel_byar(counting_process(cohort((10, 0, 5), (20, 0, NO_TX))))
    assert result["p"] is None and result["reason"] == "no events"


def test_naive_log_rank_of_an_empty_arm_is_null_with_a_reason():
    result = naive_logrank(cohort())
    assert result["p"] is None and result["reason"]
    assert (result["n_transplanted"], result["n_not"]) == (0, 0)


def test_time_dependent_cox_equals_ordinary_cox_when_every_transplant_is_on_day_0(
    lung_as_transplant,
):
    frame = lung_as_transplant.assign(
        tx_day=np.where(lung_as_transplant["sex"] == 2, 0.0, np.nan),
        transplanted=(lung_as_transplant["sex"] == 2).astype(int),
    )
    reference = cox(frame, "time", "event", ["transplanted"])
    result = time_dependent_cox(counting_process(frame))
    assert result["hr"] == pytest.approx(reference["hr"], rel=1e-6)
    assert result["ci95"] == pytest.approx(reference["ci95"], rel=1e-6)
    assert result["p"] == pytest.approx(reference["p"], rel=1e-6)


@pytest.fixture(scope="module")
def lung_transplanted_halfway() -> pd.DataFrame:
    """lung, the patients under 60 transplanted on day floor(time / 2) (none on day 0)."""
    frame = load_lung()[["time", "status", "sex", "age"]].rename(columns={"status": "event"})
    frame["tx_day"] = np.where(frame["age"] < 60, np.floor(frame["time"] / 2), np.nan)
    return frame


def test_time_dependent_cox_matches_r_coxph_on_the_counting_process_rows(
    lung_transplanted_halfway,
):
    # R 4.2.2, survival 3.5-3: coxph(Surv(start, stop, event) ~ transplanted) (Efron) on the same
    # 311 rows, built as in bench/r/survival.R.
    rows = counting_process(lung_transplanted_halfway)
    assert len(rows) == 311
    result = time_dependent_cox(rows)
    assert result["coef"] == pytest.approx(0.5479667262, rel=1e-6)
    assert result["se"] == pytest.approx(0.1750138818, rel=1e-6)
    assert result["p"] == pytest.approx(0.001742180501, rel=1e-6)
    assert result["ci95"] == [pytest.approx(1.227458561), pytest.approx(2.43753585)]
    assert result["n_transplanted"] == 83


def test_time_dependent_cox_adjusted_for_sex_matches_r(lung_transplanted_halfway):
    rows = counting_process(lung_transplanted_halfway, ("sex",))
    result = time_dependent_cox(rows, covariates=("sex",))
    assert result["coef"] == pytest.approx(0.5793452084, rel=1e-6)
    assert result["terms"]["sex"]["coef"] == pytest.approx(-0.5576032033, rel=1e-6)
    assert result["terms"]["sex"]["se"] == pytest.approx(0.1675662469, rel=1e-6)


def test_time_dependent_cox_without_events_after_a_transplant_is_null_with_a_reason():
    # Monotone likelihood: the HR of being transplanted tends to 0 (R warns "beta may be
    # infinite"); the SAP reports it as not estimable.
    frame = cohort(
        (10, 1, NO_TX), (20, 0, 5), (30, 1, NO_TX), (25, 0, 3), (15, 1, NO_TX), (40, 0, 8)
    )
    result = time_dependent_cox(counting_process(frame))
    assert result["hr"] is None and result["ci95"] == [None, None]
    assert "did not converge" in result["reason"]
    assert result["n_transplanted"] == 3


def test_time_dependent_cox_adjusts_for_arm(lung_as_transplant):
    rows = counting_process(lung_as_transplant, ("arm",))
    result = time_dependent_cox(rows, covariates=("arm",))
    assert result["hr"] > 0 and result["p"] is not None
    assert set(result["terms"]) == {"transplanted", "arm_car_t"}
    assert result["n_transplanted"] > 0
    json.dumps(result, allow_nan=False)


def test_time_dependent_cox_without_transplants_is_null_with_a_reason():
    result = time_dependent_cox(counting_process(cohort((10, 1, NO_TX), (20, 0, NO_TX))))
    assert result["hr"] is None and result["ci95"] == [None, None]
    assert result["reason"] == "no patient transplanted"


def test_time_dependent_cox_without_events_is_null_with_a_reason():
    result = time_dependent_cox(counting_process(cohort((10, 0, 3), (20, 0, NO_TX))))
    assert result["hr"] is None and result["reason"] == "no events"


LANDMARK_COHORT = cohort(
    (30, 1, NO_TX),  # event before the landmark: excluded
    (90, 0, 20),  # censored at the landmark: not followed beyond it, excluded
    (200, 1, 60),  # transplanted before the landmark
    (150, 0, 90),  # transplanted on the landmark day: counts as transplanted
    (300, 1, 120),  # transplanted after the landmark: counts as not transplanted
    (250, 0, NO_TX),
    (120, 1, NO_TX),
)


def test_landmark_keeps_only_patients_still_at_risk_and_groups_by_transplant_by_then():
    result = landmark(LANDMARK_COHORT, days=90)
    assert result["days"] == 90
    assert (result["n_transplanted"], result["n_not"]) == (2, 3)


def test_landmark_counts_time_from_the_landmark():
    result = landmark(LANDMARK_COHORT, days=90)
    still_at_risk = LANDMARK_COHORT[LANDMARK_COHORT["time"] > 90]
    reference = logrank(
        still_at_risk["time"] - 90, still_at_risk["event"], still_at_risk["tx_day"] <= 90
    )
    assert result["p"] == pytest.approx(reference["p"], rel=1e-9)


def test_landmark_without_transplants_by_then_is_null_with_a_reason():
    result = landmark(cohort((200, 1, 120), (250, 0, NO_TX)), days=90)
    assert result["p"] is None and result["reason"]
    assert (result["n_transplanted"], result["n_not"]) == (0, 2)


def test_simon_makuch_enters_the_transplanted_at_their_transplant():
    curves = simon_makuch(counting_process(FOUR))
    days = 30.4375
    # Untransplanted: A dies at 10 (n=4), D at 15 (n=2 after B leaves at 12).
    untransplanted = {point["t"] * days: point["s"] for point in curves["not_transplanted"]}
    assert untransplanted[10] == pytest.approx(3 / 4)
    assert untransplanted[15] == pytest.approx(3 / 8)
    # Transplanted: B alone from day 12, dies at 20.
    transplanted = {point["t"] * days: point["s"] for point in curves["transplanted"]}
    assert transplanted[20] == pytest.approx(0.0)
    json.dumps(curves, allow_nan=False)


def test_simon_makuch_without_transplants_has_no_transplanted_curve():
    curves = simon_makuch(counting_process(cohort((10, 1, NO_TX), (20, 0, NO_TX))))
    assert curves["transplanted"] is None and curves["reason"]
    assert curves["not_transplanted"]
