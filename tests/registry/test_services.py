"""Every DOMAIN.md rule refuses bad data with a message naming the field, and saves nothing."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.core.exceptions import ValidationError

from registry import services
from registry.clock import today
from registry.models import (
    CrsEpisode,
    Death,
    FollowUpContact,
    IcansEpisode,
    Patient,
    Relapse,
    ResponseAssessment,
    Transplant,
    Treatment,
)
from tests import factories
from tests.factories import DAY0

pytestmark = pytest.mark.django_db


def refused(field: str, call, *args, **kwargs) -> str:
    """Run a write that must fail on `field`; return the message."""
    with pytest.raises(ValidationError) as caught:
        call(*args, **kwargs)
    assert field in caught.value.message_dict, caught.value.message_dict
    return " ".join(caught.value.message_dict[field])


def crs(nurse, treatment, **fields) -> CrsEpisode:
    values = {
        "onset": DAY0 + timedelta(days=2),
        "max_temperature_c": 39.0,
        "hypotension": False,
        "oxygen": "none",
    }
    return services.record_create(CrsEpisode, user=nurse, treatment=treatment, **(values | fields))


def test_a_date_in_the_future_is_refused(nurse, patient):
    message = refused(
        "day0", factories.treatment, user=nurse, patient=patient, day0=today() + timedelta(days=1)
    )
    assert "future" in message
    assert not Treatment.objects.exists()


def test_a_clinical_date_before_the_year_of_birth_is_refused(nurse, site):
    message = refused(
        "diagnosis_date",
        factories.patient,
        user=nurse,
        site=site,
        year_of_birth=2000,
        diagnosis_date=date(1999, 12, 31),
    )
    assert "year of birth" in message


def test_day0_before_diagnosis_is_refused(nurse, patient):
    message = refused(
        "day0",
        factories.treatment,
        user=nurse,
        patient=patient,
        day0=patient.diagnosis_date - timedelta(days=1),
    )
    assert "diagnosis" in message


@pytest.mark.parametrize(
    "model, field, extra",
    [
        (ResponseAssessment, "date", {"response": "cr"}),
        (Transplant, "date", {"type": "ucbt"}),
        (FollowUpContact, "date", {"disease_status": "remission"}),
        (Relapse, "date", {"kind": "morphologic"}),
    ],
)
def test_records_dated_before_day0_are_refused(nurse, treatment, model, field, extra):
    message = refused(
        field,
        services.record_create,
        model,
        user=nurse,
        treatment=treatment,
        **{field: DAY0 - timedelta(days=1)},
        **extra,
    )
    assert "day 0" in message
    assert not model.objects.exists()


def test_crs_onset_before_day0_is_refused(nurse, treatment):
    assert "day 0" in refused("onset", crs, nurse, treatment, onset=DAY0 - timedelta(days=1))


def test_resolution_before_onset_is_refused(nurse, treatment):
    message = refused(
        "resolution",
        crs,
        nurse,
        treatment,
        onset=DAY0 + timedelta(days=5),
        resolution=DAY0 + timedelta(days=4),
    )
    assert "onset" in message


def test_a_follow_up_contact_after_death_is_refused(nurse, treatment):
    services.death_record(
        patient=treatment.patient, user=nurse, date=DAY0 + timedelta(days=90), cause="disease"
    )
    message = refused(
        "date",
        services.record_create,
        FollowUpContact,
        user=nurse,
        treatment=treatment,
        date=DAY0 + timedelta(days=91),
        disease_status="relapsed",
    )
    assert "death" in message
    assert not FollowUpContact.objects.exists()


def test_nothing_is_dated_after_death(nurse, treatment):
    services.death_record(
        patient=treatment.patient, user=nurse, date=DAY0 + timedelta(days=90), cause="disease"
    )
    message = refused(
        "date",
        services.record_create,
        Relapse,
        user=nurse,
        treatment=treatment,
        date=DAY0 + timedelta(days=100),
        kind="morphologic",
    )
    assert "death" in message


def test_a_death_dated_before_an_existing_record_is_refused(nurse, treatment):
    services.record_create(
        FollowUpContact,
        user=nurse,
        treatment=treatment,
        date=DAY0 + timedelta(days=28),
        disease_status="remission",
    )
    message = refused(
        "date",
        services.death_record,
        patient=treatment.patient,
        user=nurse,
        date=DAY0 + timedelta(days=20),
        cause="disease",
    )
    assert "2022-03-29" in message
    assert not Death.objects.exists()


def test_a_second_death_of_the_same_patient_is_refused(nurse, treatment):
    services.death_record(
        patient=treatment.patient, user=nurse, date=DAY0 + timedelta(days=40), cause="disease"
    )
    patient = Patient.objects.get(pk=treatment.patient.pk)  # as a new request reads it

    message = refused(
        "patient",
        services.death_record,
        patient=patient,
        user=nurse,
        date=DAY0 + timedelta(days=50),
        cause="infection",
    )
    assert "already recorded" in message
    assert Death.objects.get().cause == "disease"


def test_a_relapse_before_the_first_complete_remission_is_refused(nurse, treatment):
    services.record_create(
        ResponseAssessment,
        user=nurse,
        treatment=treatment,
        date=DAY0 + timedelta(days=28),
        response="cr",
    )
    message = refused(
        "date",
        services.record_create,
        Relapse,
        user=nurse,
        treatment=treatment,
        date=DAY0 + timedelta(days=20),
        kind="morphologic",
    )
    assert "complete remission" in message


@pytest.mark.parametrize(
    "model, field, value",
    [
        (Treatment, "bm_blast_pct", 101),
        (ResponseAssessment, "mrd_result_pct", 100.5),
        (CrsEpisode, "max_temperature_c", 43.5),
        (CrsEpisode, "max_temperature_c", 33.9),
        (CrsEpisode, "o2_flow_l_min", 81),
        (CrsEpisode, "vasopressors", 6),
        (IcansEpisode, "ice_score", 11),
        (CrsEpisode, "recorded_grade", 6),
    ],
)
def test_values_out_of_range_are_refused(nurse, patient, treatment, model, field, value):
    base = {
        Treatment: {"patient": patient, "arm": "car_t", "day0": DAY0},
        ResponseAssessment: {
            "treatment": treatment,
            "date": DAY0 + timedelta(days=28),
            "response": "cr",
            "mrd_sensitivity_pct": 0.01,
        },
        CrsEpisode: {
            "treatment": treatment,
            "onset": DAY0,
            "grading_system": "lee2014",
            "recorded_grade": 2,
            "hypotension": True,
        },
        IcansEpisode: {"treatment": treatment, "onset": DAY0, "recorded_grade": 1},
    }[model]
    before = model.objects.count()
    refused(field, services.record_create, model, user=nurse, **(base | {field: value}))
    assert model.objects.count() == before


def test_a_year_of_birth_more_than_110_years_ago_is_refused(nurse, site):
    message = refused(
        "year_of_birth",
        factories.patient,
        user=nurse,
        site=site,
        year_of_birth=today().year - 111,
        diagnosis_date=None,
    )
    assert str(today().year - 110) in message


def test_a_duplicate_study_id_names_the_existing_record(nurse, patient, site):
    message = refused("study_id", factories.patient, user=nurse, site=site, study_id="P001")
    assert str(patient.pk) in message
    assert Patient.objects.count() == 1


def test_the_same_study_id_at_another_site_is_allowed(administrator, patient, other_site):
    factories.patient(user=administrator, site=other_site, study_id="P001")
    assert Patient.objects.count() == 2


def test_the_crs_grade_is_derived_from_the_findings(nurse, treatment):
    episode = crs(
        nurse, treatment, hypotension=True, vasopressors=1, oxygen="low_flow", o2_flow_l_min=4
    )
    assert episode.derived_grade == 3
    treatment.refresh_from_db()
    assert treatment.crs_status == "yes"


def test_the_derived_astct_grade_cannot_be_typed_over(nurse, treatment):
    message = refused(
        "recorded_grade", crs, nurse, treatment, recorded_grade=2, hypotension=True, vasopressors=1
    )
    assert "grade 3" in message
    treatment.refresh_from_db()
    assert treatment.crs_status == "unknown"  # nothing partly saved


def test_a_grade_recorded_under_another_system_is_kept_beside_the_derived_one(nurse, treatment):
    episode = crs(
        nurse,
        treatment,
        grading_system="lee2014",
        recorded_grade=2,
        hypotension=True,
        vasopressors=1,
    )
    assert (episode.recorded_grade, episode.derived_grade, episode.grade) == (2, 3, 3)


def test_an_episode_on_a_treatment_without_crs_is_refused(nurse, treatment):
    services.record_update(treatment, user=nurse, reason="checked notes", crs_status="no")
    assert "no CRS" in refused("treatment", crs, nurse, treatment)


def test_grade_5_crs_requires_a_death_from_crs(nurse, treatment):
    message = refused("died_of_crs", crs, nurse, treatment, died_of_crs=True)
    assert "death" in message
    assert not CrsEpisode.objects.exists()


def test_death_from_crs_requires_a_grade_5_episode(nurse, treatment):
    message = refused(
        "cause",
        services.death_record,
        patient=treatment.patient,
        user=nurse,
        date=DAY0 + timedelta(days=10),
        cause="crs",
    )
    assert "grade 5" in message
    assert not Death.objects.exists()


def test_death_from_crs_marks_the_fatal_episode_grade_5(nurse, treatment):
    episode = crs(nurse, treatment, hypotension=True, vasopressors=2, oxygen="positive_pressure")
    services.death_record(
        patient=treatment.patient,
        user=nurse,
        date=DAY0 + timedelta(days=10),
        cause="crs",
        fatal_episode=episode,
    )
    episode.refresh_from_db()
    assert episode.derived_grade == 5


def test_mrd_negativity_is_derived_from_result_and_sensitivity(nurse, treatment):
    response = services.record_create(
        ResponseAssessment,
        user=nurse,
        treatment=treatment,
        date=DAY0 + timedelta(days=28),
        response="cr",
        mrd_method="flow",
        mrd_sensitivity_pct=0.1,
        mrd_undetectable=True,
    )
    assert response.mrd_status == "not_evaluable"
    assert not response.mrd_negative_cr


def test_editing_a_saved_record_requires_a_reason(nurse, treatment):
    message = refused(
        "reason", services.record_update, treatment, user=nurse, reason=" ", bm_blast_pct=35
    )
    assert "reason" in message
    treatment.refresh_from_db()
    assert treatment.bm_blast_pct == 40


def test_an_edit_records_who_when_why_and_from_what_to_what(nurse, treatment):
    services.record_update(
        treatment, user=nurse, reason="typo in the marrow report", day0=DAY0 + timedelta(days=1)
    )
    latest, previous = treatment.history.all()[:2]
    assert latest.history_user == nurse
    assert latest.history_change_reason == "typo in the marrow report"
    changes = {c.field: (c.old, c.new) for c in latest.diff_against(previous).changes}
    assert changes["day0"] == (DAY0, DAY0 + timedelta(days=1))


def test_an_update_with_a_stale_version_is_refused_and_changes_nothing(nurse, treatment):
    services.record_update(treatment, user=nurse, reason="first", bm_blast_pct=30)
    stale = Treatment.objects.get(pk=treatment.pk)
    with pytest.raises(services.StaleVersion):
        services.record_update(stale, user=nurse, reason="second", version=1, bm_blast_pct=20)
    treatment.refresh_from_db()
    assert (treatment.bm_blast_pct, treatment.version) == (30, 2)


def test_changing_day0_past_an_existing_record_is_refused(nurse, treatment):
    services.record_create(
        FollowUpContact,
        user=nurse,
        treatment=treatment,
        date=DAY0 + timedelta(days=28),
        disease_status="remission",
    )
    message = refused(
        "day0",
        services.record_update,
        treatment,
        user=nurse,
        reason="wrong",
        day0=DAY0 + timedelta(days=30),
    )
    assert "2022-03-29" in message


def test_mrd_only_burden_with_morphological_blasts_is_refused(nurse, patient):
    message = refused(
        "bm_blast_pct",
        factories.treatment,
        user=nurse,
        patient=patient,
        disease_burden="mrd_only",
        bm_blast_pct=12,
    )
    assert "5%" in message


def test_only_administrators_delete_and_always_with_a_reason(nurse, administrator, treatment):
    contact = services.record_create(
        FollowUpContact,
        user=nurse,
        treatment=treatment,
        date=DAY0 + timedelta(days=28),
        disease_status="remission",
    )
    with pytest.raises(services.PermissionDenied):
        services.record_delete(contact, user=nurse, reason="duplicate")
    refused("reason", services.record_delete, contact, user=administrator, reason="")
    services.record_delete(contact, user=administrator, reason="entered twice")
    deletion = FollowUpContact.history.filter(history_type="-").get()
    assert (deletion.history_user, deletion.history_change_reason) == (
        administrator,
        "entered twice",
    )
