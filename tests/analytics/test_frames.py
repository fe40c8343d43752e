"""analytics.frames: registry rows become the SAP's analysis set (SAP.md sections 1 and 6)."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from analytics.frames import RESPONSE_WINDOW_DAYS, analysis_frames, fingerprint
from registry import demo, services
from registry.models import (
    CrsEpisode,
    FollowUpContact,
    Relapse,
    ResponseAssessment,
    Transplant,
)
from tests import factories
from tests.factories import DAY0

pytestmark = pytest.mark.django_db


def on(days: int):
    return DAY0 + timedelta(days=days)


@pytest.fixture
def record(nurse):
    """Write one clinical record of a treatment through the services, as a nurse would."""

    def write(model, treatment, **fields):
        return services.record_create(model, user=nurse, treatment=treatment, **fields)

    return write


def contact(record, treatment, days: int) -> FollowUpContact:
    return record(FollowUpContact, treatment, date=on(days), disease_status="remission")


def response(record, treatment, days: int, result: str, mrd: str = "") -> ResponseAssessment:
    return record(ResponseAssessment, treatment, date=on(days), response=result, mrd_reported=mrd)


def only_row(**filters):
    frame = analysis_frames(**filters).treatments
    assert len(frame) == 1
    return frame.iloc[0]


def test_the_analysis_set_is_each_patients_first_treatment_by_day0(nurse, patient):
    factories.treatment(user=nurse, patient=patient, arm="blinatumomab", day0=on(40))
    first = factories.treatment(user=nurse, patient=patient, arm="car_t", day0=DAY0)
    row = only_row()
    assert row["treatment_id"] == first.pk and row["arm"] == "car_t"


def test_a_non_response_is_a_pfs_event_dated_at_its_assessment(record, treatment):
    response(record, treatment, 30, "nr")
    contact(record, treatment, 200)
    row = only_row()
    assert (row["pfs_days"], row["pfs_event"]) == (30, 1)
    assert (row["os_days"], row["os_event"]) == (200, 0)


def test_a_relapse_ends_pfs_and_a_death_ends_os(nurse, record, treatment):
    response(record, treatment, 28, "cr")
    record(Relapse, treatment, date=on(100), kind="morphologic")
    contact(record, treatment, 120)
    services.death_record(patient=treatment.patient, user=nurse, date=on(150), cause="disease")
    row = only_row()
    assert (row["pfs_days"], row["pfs_event"]) == (100, 1)
    assert (row["os_days"], row["os_event"], row["died"]) == (150, 1, True)


def test_a_death_without_relapse_ends_pfs_too(nurse, treatment):
    services.death_record(patient=treatment.patient, user=nurse, date=on(20), cause="infection")
    row = only_row()
    assert (row["pfs_days"], row["pfs_event"]) == (20, 1)


def test_without_an_event_pfs_is_censored_at_the_last_contact_or_assessment(record, treatment):
    contact(record, treatment, 20)
    response(record, treatment, 35, "cr")
    row = only_row()
    assert (row["pfs_days"], row["pfs_event"]) == (35, 0)
    assert (row["os_days"], row["os_event"]) == (20, 0)


def test_a_relapse_recorded_under_a_later_treatment_still_ends_pfs(nurse, record, patient):
    first = factories.treatment(user=nurse, patient=patient, day0=DAY0)
    second = factories.treatment(user=nurse, patient=patient, arm="blinatumomab", day0=on(200))
    record(Relapse, second, date=on(260), kind="morphologic")
    assert only_row()["treatment_id"] == first.pk
    assert (only_row()["pfs_days"], only_row()["pfs_event"]) == (260, 1)


def test_the_grade_used_is_the_derived_astct_grade_else_the_recorded_one(
    nurse, record, site, treatment
):
    derived = record(
        CrsEpisode,
        treatment,
        onset=on(2),
        max_temperature_c=39.0,
        hypotension=True,
        vasopressors=1,
        oxygen="none",
    )
    other = factories.patient(user=nurse, site=site, study_id="P002")
    recorded_only = factories.treatment(user=nurse, patient=other)
    record(CrsEpisode, recorded_only, onset=on(3), grading_system="lee2014", recorded_grade=2)
    frame = analysis_frames().treatments.set_index("treatment_id")
    assert derived.derived_grade == 3
    assert (frame.loc[treatment.pk, "crs_grade"], frame.loc[treatment.pk, "crs_grade_source"]) == (
        3,
        "derived",
    )
    assert frame.loc[recorded_only.pk, "crs_grade"] == 2
    assert frame.loc[recorded_only.pk, "crs_grade_source"] == "recorded"


def test_the_worst_episode_gives_the_treatments_grade(record, treatment):
    record(CrsEpisode, treatment, onset=on(1), grading_system="lee2014", recorded_grade=1)
    record(CrsEpisode, treatment, onset=on(9), grading_system="lee2014", recorded_grade=3)
    assert only_row()["crs_grade"] == 3


def test_no_crs_is_grade_zero(nurse, patient):
    factories.treatment(user=nurse, patient=patient, crs_status="no")
    assert only_row()["crs_grade"] == 0


def test_an_unknown_crs_status_has_no_grade(nurse, patient):
    factories.treatment(user=nurse, patient=patient, crs_status="unknown")
    assert pd.isna(only_row()["crs_grade"])


def test_response_counts_only_assessments_from_day0_to_day90(record, treatment):
    response(record, treatment, RESPONSE_WINDOW_DAYS + 1, "cr", mrd="negative")
    row = only_row()
    assert not row["response_evaluable"] and not row["mrd_negative_cr"]


def test_the_best_response_in_the_window_counts_and_mrd_negative_cr_needs_both_at_once(
    record, treatment
):
    response(record, treatment, 28, "pr", mrd="negative")
    response(record, treatment, 60, "cri", mrd="positive")
    row = only_row()
    assert row["response_evaluable"] and row["best_response"] == "cri" and row["cr"]
    assert not row["mrd_negative_cr"]


def test_a_not_evaluable_assessment_leaves_the_treatment_out_of_the_response_set(record, treatment):
    response(record, treatment, 28, "not_evaluable")
    assert not only_row()["response_evaluable"]


def test_transplant_days_count_from_day0_and_ucbt_is_kept_apart(record, treatment):
    record(Transplant, treatment, date=on(60), type="haplo")
    record(Transplant, treatment, date=on(100), type="ucbt")
    row = only_row()
    assert (row["any_hsct_day"], row["any_hsct_type"], row["ucbt_day"]) == (60, "haplo", 100)


@pytest.mark.parametrize(
    "relapse_status, group",
    [
        ("mrd_persistent_cr1", "not_relapsed"),
        ("primary_refractory", "not_relapsed"),
        ("first_relapse", "first_relapse"),
        ("second_or_later_relapse", "second_or_later_relapse"),
    ],
)
def test_relapse_status_maps_to_the_saps_relapse_groups(nurse, patient, relapse_status, group):
    factories.treatment(user=nurse, patient=patient, relapse_status=relapse_status)
    assert only_row()["relapse_group"] == group


def test_a_site_scope_leaves_out_the_other_sites(nurse, users, site, other_site, treatment):
    administrator = users["administrator"]
    elsewhere = factories.patient(user=administrator, site=other_site, study_id="X1")
    factories.treatment(user=administrator, patient=elsewhere)
    assert len(analysis_frames().treatments) == 2
    assert only_row(site_ids=[other_site.pk])["study_id"] == "X1"


@pytest.mark.parametrize("patients", [5, 50])
def test_frames_take_the_same_few_queries_for_5_or_50_patients(patients, django_assert_num_queries):
    demo.seed_scaled(patients)
    with django_assert_num_queries(9):
        frames = analysis_frames()
    assert len(frames.treatments) == patients


def test_the_fingerprint_ignores_database_keys_and_row_order(record, treatment):
    contact(record, treatment, 30)
    frames = analysis_frames()
    shuffled = frames.treatments.sample(frac=1, random_state=1).assign(treatment_id=-1)
    assert fingerprint(frames).startswith("sha256:")
    assert fingerprint(frames) == fingerprint(
        type(frames)(treatments=shuffled, open_queries=frames.open_queries)
    )


def test_the_fingerprint_changes_when_the_data_does(record, treatment):
    contact(record, treatment, 30)
    before = analysis_frames().fingerprint
    contact(record, treatment, 120)
    assert analysis_frames().fingerprint != before
