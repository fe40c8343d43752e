"""Issue #14 point 8: look-alike study IDs are duplicates, and every number has a plausible
range, on every write path (services, form, admin, API, import) with a field message."""

from __future__ import annotations

import math

import pytest
from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.urls import reverse
from rest_framework.test import APIClient

from registry import cohort_file, services
from registry.domain.identifiers import identifier_key, odd_characters, written_form
from registry.domain.ranges import RANGES
from registry.models import CrsEpisode, Patient, Site, Treatment
from registry.models.base import ClinicalRecord
from tests import factories
from tests.registry.test_admin import change_form_data
from tests.registry.test_cohort_file import ALIVE_CAR_T, csv_bytes

pytestmark = pytest.mark.django_db

ORIGINAL = "AHP-B001"
LOOK_ALIKES = {
    "zero-width space": "AHP-B\u200b001",
    "Cyrillic letters": "\u0410\u041d\u0420-\u0412001",  # А Н Р В
    "full-width digits": "AHP-B\uff10\uff10\uff11",
    "full-width everything": "\uff21\uff28\uff30\uff0d\uff22\uff10\uff10\uff11",
    "other case": "ahp-b001",
    "right-to-left override": "\u202eAHP-B001",
    "newline inside": "AHP-\nB001",
    "newline after": "AHP-B001\n",
    "en dash": "AHP\u2013B001",
    "soft hyphen": "AHP-B\u00ad001",
    "spaces around": "  AHP-B001 ",
}
DUPLICATE = "already exists at this site"


@pytest.fixture
def original(nurse, site) -> Patient:
    return factories.patient(user=nurse, site=site, study_id=ORIGINAL)


def test_every_look_alike_shares_the_key_of_the_original():
    for name, look_alike in LOOK_ALIKES.items():
        assert identifier_key(look_alike) == identifier_key(ORIGINAL), name
    assert identifier_key("AHP-B002") != identifier_key(ORIGINAL)


def test_invisible_and_look_alike_characters_are_named_and_plain_ones_are_not():
    assert odd_characters("AHP-B\u200b001") == ["U+200B ZERO WIDTH SPACE"]
    assert odd_characters("\u202eAHP") == ["U+202E RIGHT-TO-LEFT OVERRIDE"]
    assert odd_characters("\u0410HP") == ["U+0410 CYRILLIC CAPITAL LETTER A"]
    assert odd_characters("AHP-B\uff10\uff10\uff11") == []  # NFKC makes it AHP-B001
    assert odd_characters("  AHP-B001\n") == []  # spaces around are trimmed
    assert odd_characters("安徽-001") == []
    assert written_form("\uff21\uff28\uff30-B001 ") == "AHP-B001"


@pytest.mark.parametrize("look_alike", LOOK_ALIKES.values(), ids=LOOK_ALIKES.keys())
def test_a_look_alike_study_id_is_refused_as_a_duplicate_by_the_services(
    nurse, site, original, look_alike
):
    with pytest.raises(ValidationError) as refused:
        factories.patient(user=nurse, site=site, study_id=look_alike)

    messages = refused.value.message_dict["study_id"]
    assert any(DUPLICATE in m and f"record {original.pk}" in m for m in messages), messages
    assert Patient.objects.count() == 1


@pytest.mark.parametrize("look_alike", LOOK_ALIKES.values(), ids=LOOK_ALIKES.keys())
def test_a_look_alike_study_id_is_refused_by_the_api_with_a_field_message(
    nurse, original, look_alike
):
    client = APIClient()
    client.force_authenticate(nurse)
    new = {"site": "AHP", "study_id": look_alike, "sex": "M", "year_of_birth": 1985}

    response = client.post("/api/v1/patients/", new, format="json")

    assert response.status_code == 400, response.content
    assert any(DUPLICATE in m for m in response.json()["study_id"])


@pytest.mark.parametrize("name", ["zero-width space", "Cyrillic letters", "other case"])
def test_a_look_alike_study_id_is_refused_by_the_form_next_to_the_field(
    client, nurse, site, original, name
):
    client.force_login(nurse)
    data = {"site": site.pk, "study_id": LOOK_ALIKES[name], "sex": "F", "year_of_birth": "1990"}

    response = client.post(reverse("patient-new"), data)

    assert response.status_code == 200
    assert DUPLICATE in " ".join(response.context["form"].errors["study_id"])
    assert Patient.objects.count() == 1


def test_look_alike_study_ids_in_an_import_are_refused_row_by_row(site, administrator, original):
    rows = [ALIVE_CAR_T | {"study_id": look_alike} for look_alike in LOOK_ALIKES.values()]
    rows = [row for row in rows if row["study_id"] == row["study_id"].strip()]  # cells trimmed

    result = cohort_file.import_cohort(csv_bytes(rows), name="c.csv", user=administrator)

    refused = {
        p.row
        for p in result.problems
        if p.column == "study_id" and (DUPLICATE in p.message or "appears twice" in p.message)
    }
    assert refused == set(range(2, 2 + len(rows))), result.problems
    assert Patient.objects.count() == 1


def test_two_look_alikes_in_one_file_are_reported_as_one_id_twice(site, administrator):
    rows = [ALIVE_CAR_T, ALIVE_CAR_T | {"study_id": ALIVE_CAR_T["study_id"].lower()}]

    result = cohort_file.import_cohort(csv_bytes(rows), name="c.csv", user=administrator)

    assert [(p.row, p.column) for p in result.problems] == [(3, "study_id")]
    assert "appears twice in the file" in result.problems[0].message


def test_an_invisible_character_is_refused_even_when_the_id_is_new(nurse, site):
    with pytest.raises(ValidationError) as refused:
        factories.patient(user=nurse, site=site, study_id="AHP-\u200bB777")

    assert "U+200B ZERO WIDTH SPACE" in " ".join(refused.value.message_dict["study_id"])


def test_a_study_id_is_stored_in_its_written_form(nurse, site):
    patient = factories.patient(user=nurse, site=site, study_id=" \uff21HP-B\uff10\uff10\uff19 ")

    patient.refresh_from_db()
    assert (patient.study_id, patient.study_id_key) == ("AHP-B009", "ahp-b009")


def test_the_database_refuses_a_look_alike_that_slips_past_the_rules(nurse, site, original):
    with pytest.raises(IntegrityError), transaction.atomic():
        Patient.objects.create(site=site, study_id="ahp-b001", sex="F", year_of_birth=1990)


def test_a_look_alike_site_code_is_that_site(site, administrator):
    duplicate = Site(code="\uff21HP", name="Look-alike")
    with pytest.raises(ValidationError) as refused:
        duplicate.full_clean()
    assert "code" in refused.value.message_dict

    row = ALIVE_CAR_T | {"site": "ahp"}
    result = cohort_file.import_cohort(
        csv_bytes([row]), name="c.csv", user=administrator, create_sites=True
    )
    assert result.ok, result.problems
    assert Patient.objects.get().site == site
    assert not Site.objects.filter(code__iexact="ahp").exclude(pk=site.pk).exists()


# --- plausible numbers -------------------------------------------------------------------------
# Computed by the registry, never typed.
DERIVED_NUMBERS = {"version", "derived_grade"}


def typed_numbers() -> list[tuple[type[models.Model], models.Field]]:
    return [
        (model, field)
        for model in apps.get_app_config("registry").get_models()
        if issubclass(model, ClinicalRecord)
        for field in model._meta.concrete_fields
        if isinstance(field, models.IntegerField | models.FloatField | models.DecimalField)
        and not field.is_relation
        and not field.primary_key
        and field.name not in DERIVED_NUMBERS
    ]


def has_model_range(field: models.Field) -> bool:
    """Both ends on the field itself, tighter than the column type allows."""
    lows = [v.limit_value for v in field.validators if type(v).__name__ == "MinValueValidator"]
    highs = [v.limit_value for v in field.validators if type(v).__name__ == "MaxValueValidator"]
    return bool(lows) and bool(highs) and min(highs) <= 1000


def test_every_typed_number_has_a_plausible_range():
    unranged = [
        f"{model.__name__}.{field.name}"
        for model, field in typed_numbers()
        if not has_model_range(field)
        and (model.__name__, field.name) not in RANGES
        and field.name != "year_of_birth"  # registry.validation: the last 110 years
    ]

    assert typed_numbers()
    assert unranged == []


ABSURD_DOSES = [-5, 1e308, 0, 5e9, math.inf]


@pytest.mark.parametrize("dose", ABSURD_DOSES)
def test_an_absurd_dose_is_refused_by_the_services_with_a_field_message(nurse, patient, dose):
    with pytest.raises(ValidationError) as refused:
        factories.treatment(user=nurse, patient=patient, dose_cells_per_kg=dose)

    assert "cells/kg" in " ".join(refused.value.message_dict["dose_cells_per_kg"])
    assert not Treatment.objects.exists()


@pytest.mark.parametrize(
    "field, value",
    [("cycles", 500), ("cycles", 0), ("dose_cells_per_kg", 2e6), ("cycles", 4)],
)
def test_other_treatment_numbers_keep_to_their_range(nurse, patient, field, value):
    plausible = value in (2e6, 4)
    if plausible:
        assert factories.treatment(user=nurse, patient=patient, **{field: value}).pk
        return
    with pytest.raises(ValidationError) as refused:
        factories.treatment(user=nurse, patient=patient, **{field: value})
    assert field in refused.value.message_dict


def test_too_many_tocilizumab_doses_are_refused(nurse, treatment):
    with pytest.raises(ValidationError) as refused:
        services.record_create(
            CrsEpisode,
            user=nurse,
            treatment=treatment,
            onset=treatment.day0,
            recorded_grade=2,
            grading_system="lee2014",
            tocilizumab_doses=40,
        )
    assert "tocilizumab_doses" in refused.value.message_dict


@pytest.mark.parametrize("dose", ["-5", "1e308"])
def test_an_absurd_dose_is_refused_by_the_form_next_to_the_field(client, nurse, treatment, dose):
    client.force_login(nurse)
    url = reverse("record-edit", args=["treatment", treatment.pk])
    form = client.get(url).context["form"]
    data = {name: ("" if value is None else value) for name, value in form.initial.items()}
    data |= {
        "dose_cells_per_kg": dose,
        "edited_version": treatment.version,
        "change_reason": "dose",
    }

    response = client.post(url, data)

    assert response.status_code == 200
    assert response.context["form"].errors["dose_cells_per_kg"]
    assert Treatment.objects.get().dose_cells_per_kg is None


@pytest.mark.parametrize("dose", ["-5", "1e308"])
def test_an_absurd_dose_is_refused_by_the_admin_next_to_the_field(
    client, data_manager, treatment, dose
):
    client.force_login(data_manager)
    url = reverse("admin:registry_treatment_change", args=[treatment.pk])

    response = client.post(
        url, change_form_data(treatment, dose_cells_per_kg=dose, change_reason="dose")
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["dose_cells_per_kg"]
    assert Treatment.objects.get().dose_cells_per_kg is None


@pytest.mark.parametrize("dose", [-5, 1e308])
def test_an_absurd_dose_is_refused_by_the_api_with_a_field_message(nurse, treatment, dose):
    client = APIClient()
    client.force_authenticate(nurse)

    response = client.patch(
        f"/api/v1/treatments/{treatment.pk}/",
        {"version": treatment.version, "reason": "dose", "dose_cells_per_kg": dose},
        format="json",
    )

    assert response.status_code == 400, response.content
    assert response.json()["dose_cells_per_kg"]
    assert Treatment.objects.get().dose_cells_per_kg is None


@pytest.mark.parametrize(
    "column, value",
    [("bm_blast_pct", "-5"), ("bm_blast_pct", "1e308"), ("year_of_birth", "1800")],
)
def test_an_absurd_number_in_an_import_is_refused_with_its_column(
    site, administrator, column, value
):
    result = cohort_file.import_cohort(
        csv_bytes([ALIVE_CAR_T | {column: value}]), name="c.csv", user=administrator
    )

    assert {p.column for p in result.problems} == {column}, result.problems
    assert not Patient.objects.exists()
