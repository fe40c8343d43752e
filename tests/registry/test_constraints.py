"""No database constraint's message ever reaches a user.

Every CheckConstraint and UniqueConstraint of every model is either stood in front of by a rule
with a field message (registry.validation.CONSTRAINT_RULES), or is kept by the registry itself
and written by no form or API call. A violation typed into a form or sent to the API gets a
message beside its field, in the user's language; never the database's "Constraint ... is
violated" above the form.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse
from rest_framework.test import APIClient

from registry import forms as record_forms
from registry import services
from registry.api import serializers as api
from registry.models import (
    CrsEpisode,
    IcansEpisode,
    IecHsEpisode,
    Infection,
    IvigCourse,
    Patient,
    ResponseAssessment,
    Treatment,
)
from registry.validation import CONSTRAINT_RULES
from registry.views import KINDS
from tests.factories import DAY0
from tests.registry.test_cross_record_rules import form_data

pytestmark = pytest.mark.django_db

# Constraints on what the registry writes by itself, never from a form or the API.
KEPT_BY_THE_REGISTRY = {
    "one_query_per_condition": "data-quality queries are opened by registry.quality",
    "closed_query_has_closed_at": "registry.quality.query_close sets the closing time",
    "one_pending_outbox_message_per_key": "registry.outbox writes the messages",
    "one_analytics_computation_at_a_time": "analytics.services starts the computations",
    "one_figure_per_snapshot_language": "analytics renders a snapshot's figures",
    "worklist_change_one_per_patient": "registry.services records the patients a write changed",
}
# Fields derived by the registry: no form has them, the API only reads them.
DERIVED = {"crs_derived_grade_range", "icans_derived_grade_range"}

CRS = {
    "onset": DAY0 + timedelta(days=2),
    "max_temperature_c": "39.0",
    "hypotension": False,
    "oxygen": "none",
    "grading_system": "astct2019",
    "tocilizumab_doses": 0,
}
ICANS = {
    "onset": DAY0 + timedelta(days=2),
    "ice_score": 8,
    "consciousness": "awake",
    "seizure": "none",
    "motor_weakness": False,
    "cerebral_oedema": "none",
    "grading_system": "astct2019",
}
RESPONSE = {"date": DAY0 + timedelta(days=28), "response": "cr"}
TREATMENT = {
    "arm": "car_t",
    "day0": DAY0 + timedelta(days=1),
    "disease_burden": "morphologic",
    "bm_blast_pct": "40",
    "relapse_status": "first_relapse",
    "cd19_positive": "unknown",
    "crs_status": "unknown",
    "icans_status": "unknown",
}
INFECTION = {
    "onset": DAY0 + timedelta(days=10),
    "site": "bloodstream",
    "organism_class": "bacterial",
    "ctcae_grade": 3,
    "treatment_required": "yes",
}
IEC_HS = {"onset": DAY0 + timedelta(days=10), "ferritin_rise": True, "recorded_grade": 2}
IVIG = {"start": DAY0 + timedelta(days=40)}
PATIENT = {"study_id": "P100", "sex": "M", "year_of_birth": 1985, "ph_status": "unknown"}

# A violation of each constraint: the record, a valid submission, what breaks the constraint.
VIOLATIONS: dict[str, tuple[type[models.Model], dict[str, Any], dict[str, Any]]] = {
    "patient_study_id_unique_in_site": (Patient, PATIENT, {"study_id": "P001"}),
    "patient_study_id_key_unique_in_site": (Patient, PATIENT, {"study_id": "p\uff10\u200b01"}),
    "patient_year_of_birth_plausible": (Patient, PATIENT, {"year_of_birth": 1899}),
    "treatment_bm_blast_pct_range": (Treatment, TREATMENT, {"bm_blast_pct": "100.5"}),
    "crs_recorded_grade_range": (
        CrsEpisode,
        CRS | {"grading_system": "lee2014"},
        {"recorded_grade": 6},
    ),
    "crs_resolution_after_onset": (
        CrsEpisode,
        CRS,
        {"resolution": DAY0 + timedelta(days=1)},
    ),
    "crs_temperature_range": (CrsEpisode, CRS, {"max_temperature_c": "43.5"}),
    "crs_vasopressors_range": (CrsEpisode, CRS | {"hypotension": True}, {"vasopressors": 6}),
    "crs_o2_flow_range": (CrsEpisode, CRS | {"oxygen": "high_flow"}, {"o2_flow_l_min": "80.5"}),
    "icans_recorded_grade_range": (
        IcansEpisode,
        ICANS | {"grading_system": "penn"},
        {"recorded_grade": 6},
    ),
    "icans_resolution_after_onset": (
        IcansEpisode,
        ICANS,
        {"resolution": DAY0 + timedelta(days=1)},
    ),
    "icans_ice_score_range": (IcansEpisode, ICANS, {"ice_score": 11}),
    "response_bm_blast_pct_range": (ResponseAssessment, RESPONSE, {"bm_blast_pct": "100.5"}),
    "response_mrd_result_range": (
        ResponseAssessment,
        RESPONSE | {"mrd_sensitivity_pct": "0.01"},
        {"mrd_result_pct": "100.5"},
    ),
    "response_mrd_sensitivity_range": (
        ResponseAssessment,
        RESPONSE | {"mrd_result_pct": "0.5"},
        {"mrd_sensitivity_pct": "0"},
    ),
    "infection_ctcae_grade_range": (Infection, INFECTION, {"ctcae_grade": 6}),
    "iechs_recorded_grade_range": (IecHsEpisode, IEC_HS, {"recorded_grade": 0}),
    "ivig_stop_after_start": (IvigCourse, IVIG, {"stop": DAY0 + timedelta(days=39)}),
}


def all_constraints() -> dict[str, tuple[type[models.Model], models.BaseConstraint]]:
    return {
        constraint.name: (model, constraint)
        for model in apps.get_models()
        for constraint in model._meta.constraints
        if isinstance(constraint, models.CheckConstraint | models.UniqueConstraint)
    }


def test_every_constraint_has_a_rule_in_front_of_it_or_is_kept_by_the_registry():
    constraints = all_constraints()
    assert set(constraints) == set(CONSTRAINT_RULES) | set(KEPT_BY_THE_REGISTRY), (
        "a new constraint needs its rule (registry.validation.CONSTRAINT_RULES) and a "
        "violation here, or a reason why no user writes it"
    )
    assert set(VIOLATIONS) | DERIVED == set(CONSTRAINT_RULES)
    for name, (model, _valid, _bad) in VIOLATIONS.items():
        assert constraints[name][0] is model, name


def test_derived_values_are_written_by_no_form_and_read_only_in_the_api():
    for name in DERIVED:
        model = all_constraints()[name][0]
        field = CONSTRAINT_RULES[name]
        form = KINDS[next(k for k, kind in KINDS.items() if kind.model is model)].form
        assert field not in form._meta.fields
        assert not model._meta.get_field(field).editable
        serializer = {
            CrsEpisode: api.CrsEpisodeSerializer,
            IcansEpisode: api.IcansEpisodeSerializer,
        }
        assert serializer[model]().fields[field].read_only


def _url(model: type[models.Model], patient: Patient, treatment: Treatment) -> str:
    kind = next(name for name, kind in KINDS.items() if kind.model is model)
    if model is Patient:
        return reverse("patient-new")
    parent = patient if model is Treatment else treatment
    return reverse("record-new", args=[parent.pk, kind])


def _no_constraint_named(text: str) -> None:
    assert "Constraint" not in text
    assert not any(name in text for name in all_constraints())


@pytest.mark.parametrize("name", sorted(VIOLATIONS))
def test_a_constraint_violated_in_a_form_gets_a_message_beside_its_field(
    client, nurse, treatment, name
):
    model, valid, bad = VIOLATIONS[name]
    client.force_login(nurse)
    url = _url(model, treatment.patient, treatment)
    form = client.get(url).context["form"]
    before = model.objects.count()

    response = client.post(url, form_data(form, valid | bad | _site(model, treatment)))

    assert response.status_code == 200, "the form was not refused"
    errors = response.context["form"].errors
    assert CONSTRAINT_RULES[name] in errors, errors
    assert "__all__" not in errors, errors
    _no_constraint_named(response.content.decode())
    assert model.objects.count() == before


def _site(model, treatment) -> dict[str, Any]:
    return {"site": treatment.patient.site} if model is Patient else {}


def test_resolution_before_onset_is_told_beside_the_field_in_chinese(client, nurse, treatment):
    nurse.language = "zh-hans"
    nurse.save()
    client.force_login(nurse)
    url = _url(CrsEpisode, treatment.patient, treatment)
    form = client.get(url).context["form"]

    response = client.post(url, form_data(form, CRS | {"resolution": DAY0 + timedelta(days=1)}))

    assert response.context["form"].errors["resolution"] == [
        f"消退日期必须在发生日期（{CRS['onset'].isoformat()}）当天或之后。"
    ]
    _no_constraint_named(response.content.decode())


ENDPOINT = {
    Patient: "patients",
    Treatment: "treatments",
    CrsEpisode: "crs-episodes",
    IcansEpisode: "icans-episodes",
    ResponseAssessment: "responses",
    Infection: "infections",
    IecHsEpisode: "iec-hs-episodes",
    IvigCourse: "ivig-courses",
}


@pytest.mark.parametrize("name", sorted(VIOLATIONS))
def test_a_constraint_violated_through_the_api_gets_a_message_on_its_field(nurse, treatment, name):
    model, valid, bad = VIOLATIONS[name]
    client = APIClient()
    client.force_authenticate(nurse)
    body = {
        key: value.isoformat() if hasattr(value, "isoformat") else value
        for key, value in (valid | bad).items()
    }
    if model is Patient:
        body["site"] = treatment.patient.site.code
    else:
        body["patient" if model is Treatment else "treatment"] = (
            treatment.patient.pk if model is Treatment else treatment.pk
        )
    before = model.objects.count()

    response = client.post(f"/api/v1/{ENDPOINT[model]}/", body, format="json")

    assert response.status_code == 400, response.content
    assert CONSTRAINT_RULES[name] in response.json(), response.json()
    assert "non_field_errors" not in response.json(), response.json()
    _no_constraint_named(response.content.decode())
    assert model.objects.count() == before


def test_the_forms_never_check_the_constraints_the_django_way(treatment):
    """Django's own check would put "Constraint ... is violated" above the form."""
    episode = CrsEpisode(treatment=treatment, **CRS)
    episode.resolution = DAY0
    episode.validate_constraints()  # no ValidationError: the rule says it beside the field
    assert record_forms.rule_errors(episode)["resolution"]


@pytest.mark.parametrize(
    "write, field",
    [
        (
            lambda user, treatment: services.record_create(
                Patient,
                user=user,
                site=treatment.patient.site,
                study_id="P001",
                sex="M",
                year_of_birth=1980,
            ),
            "study_id",
        ),
        (
            lambda user, treatment: [
                services.death_record(
                    patient=treatment.patient, user=user, date=DAY0, cause="disease"
                )
                for _twice in range(2)
            ],
            "patient",
        ),
    ],
    ids=["the same study ID", "a second death"],
)
def test_what_two_writes_at_once_let_past_a_rule_is_refused_beside_its_field(
    nurse, treatment, monkeypatch, write, field
):
    """The rule read the data before the other write committed: the database refuses it, and
    the user reads a field message in their language, not the database's."""
    monkeypatch.setattr(services, "record_errors", lambda record, **context: {})

    with pytest.raises(ValidationError) as refused:
        write(nurse, treatment)

    assert field in refused.value.message_dict, refused.value.message_dict
    _no_constraint_named(" ".join(refused.value.messages))
