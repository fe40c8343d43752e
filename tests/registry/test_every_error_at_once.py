"""A submission's every error shows at once: a field's own check and the rules across records
together, never one round after another (the form, the admin, the API, the services, the
cohort import)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from registry import cohort_file, services
from registry.models import CrsEpisode, Patient, Treatment
from tests.factories import DAY0
from tests.registry.test_cohort_file import ALIVE_CAR_T, csv_bytes
from tests.registry.test_cross_record_rules import form_data

pytestmark = pytest.mark.django_db

# A negative temperature (the field's own range) and an onset before day 0 (a rule across the
# episode and its treatment): the walkthrough saw the second only after fixing the first.
TWO_MISTAKES = {"max_temperature_c": "-1", "onset": DAY0 - timedelta(days=1)}
CRS = {"onset": DAY0 + timedelta(days=2), "hypotension": False, "oxygen": "none"}


def test_the_services_report_a_field_check_and_a_rule_together(nurse, treatment):
    with pytest.raises(ValidationError) as refused:
        services.record_create(CrsEpisode, user=nurse, treatment=treatment, **(CRS | TWO_MISTAKES))
    assert {"max_temperature_c", "onset"} <= set(refused.value.message_dict)


def test_the_nurses_form_shows_both_errors_on_the_first_save(client, nurse, treatment):
    client.force_login(nurse)
    url = reverse("record-new", args=[treatment.pk, "crs"])
    form = client.get(url).context["form"]

    response = client.post(url, form_data(form, CRS | TWO_MISTAKES))

    errors = response.context["form"].errors
    assert {"max_temperature_c", "onset"} <= set(errors), errors
    assert "day 0" in " ".join(errors["onset"])
    assert not CrsEpisode.objects.exists()


def test_an_edit_shows_a_field_error_and_a_rule_on_another_record_together(
    client, nurse, treatment
):
    """A diagnosis after day 0 (a rule against the treatment) and an impossible year of birth."""
    client.force_login(nurse)
    patient = treatment.patient
    url = reverse("record-edit", args=["patient", patient.pk])
    form = client.get(url).context["form"]
    changes = {
        "diagnosis_date": DAY0 + timedelta(days=3),
        "year_of_birth": "1800",
        "change_reason": "typo",
    }

    response = client.post(url, form_data(form, changes))

    errors = response.context["form"].errors
    assert {"diagnosis_date", "year_of_birth"} <= set(errors), errors
    assert Patient.objects.get().diagnosis_date == patient.diagnosis_date


def test_a_field_that_does_not_parse_does_not_hide_the_rules_of_the_others(
    client, nurse, treatment
):
    client.force_login(nurse)
    url = reverse("record-new", args=[treatment.pk, "crs"])
    form = client.get(url).context["form"]

    response = client.post(
        url,
        form_data(form, CRS | {"max_temperature_c": "hot", "onset": DAY0 - timedelta(days=1)}),
    )

    errors = response.context["form"].errors
    assert {"max_temperature_c", "onset"} <= set(errors), errors
    assert "recorded_grade" not in errors  # no grade asked for because the temperature failed


def test_the_admin_shows_both_errors_on_the_first_save(client, data_manager, treatment):
    client.force_login(data_manager)
    url = reverse("admin:registry_crsepisode_add")
    page = client.get(url)
    data = form_data(page.context["adminform"].form, CRS | TWO_MISTAKES | {"treatment": treatment})

    response = client.post(url, data)

    errors = response.context["adminform"].form.errors
    assert {"max_temperature_c", "onset"} <= set(errors), errors


def test_the_api_answers_both_errors_at_once(nurse, treatment):
    client = APIClient()
    client.force_authenticate(nurse)
    body = {
        "treatment": treatment.pk,
        "onset": TWO_MISTAKES["onset"].isoformat(),
        "max_temperature_c": "-1",
        "hypotension": False,
        "oxygen": "none",
    }

    response = client.post("/api/v1/crs-episodes/", body, format="json")

    assert response.status_code == 400
    assert {"max_temperature_c", "onset"} <= set(response.json()), response.json()
    assert "day 0" in " ".join(response.json()["onset"])


def test_an_api_update_answers_both_errors_at_once(nurse, treatment):
    client = APIClient()
    client.force_authenticate(nurse)
    body = {
        "version": treatment.version,
        "reason": "typo",
        "bm_blast_pct": "120",
        "day0": (treatment.patient.diagnosis_date - timedelta(days=1)).isoformat(),
    }

    response = client.patch(f"/api/v1/treatments/{treatment.pk}/", body, format="json")

    assert response.status_code == 400
    assert {"bm_blast_pct", "day0"} <= set(response.json()), response.json()
    assert Treatment.objects.get().day0 == treatment.day0


def test_another_sites_rules_are_not_told_through_the_api(nurse, other_site, administrator):
    """The rules are checked only where the user may write: no other site's study IDs."""
    from tests import factories

    factories.patient(user=administrator, site=other_site, study_id="X001")
    client = APIClient()
    client.force_authenticate(nurse)
    body = {"site": other_site.code, "study_id": "X001", "sex": "?", "year_of_birth": 1980}

    response = client.post("/api/v1/patients/", body, format="json")

    assert response.status_code in (400, 403)
    assert "study_id" not in response.json()


def test_the_import_reports_a_cells_range_and_a_rule_of_the_same_row(site, data_manager):
    row = ALIVE_CAR_T | {"bm_blast_pct": "150", "response_date": "2022-02-20"}

    result = cohort_file.import_cohort(csv_bytes([row]), name="cohort.csv", user=data_manager)

    columns = {problem.column for problem in result.problems}
    assert {"bm_blast_pct", "response_date"} <= columns, result.problems
    assert not Patient.objects.exists()
