"""On the demo cohort (`seed_demo`), the analytics show the study's numbers (STUDY.md).

The cohort is seeded and its snapshot computed once for the module, inside a transaction that
is rolled back as soon as the output is read, so no other test sees them.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import call_command
from django.db import transaction

from analytics import services
from analytics.models import Status, Trigger

pytestmark = pytest.mark.django_db

BLIN, CAR_T = "blinatumomab", "car_t"

# STUDY.md, "Published results" (Xu et al. 2025) and the tolerances of issue #4.
CRS_ANY = {BLIN: (11, 21), CAR_T: (64, 67)}
CRS_SEVERE = {BLIN: (0, 21), CAR_T: (26, 67)}
MRD_NEGATIVE_CR = {BLIN: (19, 21), CAR_T: (65, 75)}
RATE_12M = {"pfs": {BLIN: 0.707, CAR_T: 0.520}, "os": {BLIN: 0.881, CAR_T: 0.624}}
RATE_TOLERANCE = 0.03
CAR_T_MEDIAN_MONTHS = {"pfs": (12.3, 1.0), "os": (19.0, 1.5)}
SIGNIFICANT = 0.05
HIGHLY_SIGNIFICANT = 0.001


@pytest.fixture(scope="module")
def output(django_db_setup, django_db_blocker) -> dict[str, Any]:
    with django_db_blocker.unblock(), transaction.atomic():
        call_command("seed_demo", stdout=io.StringIO())
        snapshot = services.snapshot_compute(site=None, trigger=Trigger.COMMAND)
        assert snapshot.status == Status.COMPLETE
        result = snapshot.output
        transaction.set_rollback(True)
    return result


def counts(comparison: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {arm: (comparison[arm]["n"], comparison[arm]["N"]) for arm in (BLIN, CAR_T)}


def test_crs_of_any_grade_is_11_of_21_against_64_of_67_with_fisher_p_below_0_001(output):
    assert counts(output["crs"]["any"]) == CRS_ANY
    assert output["crs"]["any"]["p_fisher"] < HIGHLY_SIGNIFICANT


def test_severe_crs_is_0_of_21_against_26_of_67(output):
    assert counts(output["crs"]["severe"]) == CRS_SEVERE


def test_mrd_negative_cr_is_19_of_21_against_65_of_75(output):
    assert counts(output["response"]["mrd_negative_cr"]) == MRD_NEGATIVE_CR


@pytest.mark.parametrize("endpoint", ["pfs", "os"])
@pytest.mark.parametrize("arm", [BLIN, CAR_T])
def test_survival_at_12_months_is_within_3_points_of_the_study(output, endpoint, arm):
    rate = output["survival"][endpoint][arm]["rate_12m"]
    assert rate == pytest.approx(RATE_12M[endpoint][arm], abs=RATE_TOLERANCE)


@pytest.mark.parametrize("endpoint", ["pfs", "os"])
def test_car_t_median_survival_is_the_studys(output, endpoint):
    target, tolerance = CAR_T_MEDIAN_MONTHS[endpoint]
    assert output["survival"][endpoint][CAR_T]["median_months"] == pytest.approx(
        target, abs=tolerance
    )


@pytest.mark.parametrize("endpoint", ["pfs", "os"])
def test_blinatumomab_median_survival_is_not_reached(output, endpoint):
    assert output["survival"][endpoint][BLIN]["median_months"] is None


@pytest.mark.parametrize("arm", [BLIN, CAR_T])
def test_the_naive_ucbt_log_rank_is_significant_in_each_arm_as_the_study_reported(output, arm):
    assert output["transplant"]["ucbt"][arm]["naive_logrank"]["p"] < SIGNIFICANT


@pytest.mark.parametrize(
    "factor, level",
    [
        ("disease_burden", "mrd_only"),
        ("disease_burden", "morphologic"),
        ("relapse_group", "not_relapsed"),
        ("relapse_group", "first_relapse"),
        ("relapse_group", "second_or_later_relapse"),
    ],
)
def test_blinatumomab_has_less_crs_within_every_subgroup(output, factor, level):
    comparison = output["subgroups"][factor][level]["crs_any"]
    assert comparison[BLIN]["proportion"] < comparison[CAR_T]["proportion"]
    assert comparison["p_fisher"] < SIGNIFICANT


def test_the_correct_transplant_analyses_are_reported_beside_the_naive_one(output):
    pooled = output["transplant"]["ucbt"]["pooled"]
    assert pooled["time_dependent_cox"]["hr"] < 1
    assert pooled["mantel_byar"]["p"] is not None
    assert pooled["landmark"]["n_transplanted"] > 0 and pooled["landmark"]["n_not"] > 0
