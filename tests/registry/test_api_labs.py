"""/api/v1/labs/: a treatment's laboratory values, read at your sites and written as rows
together (services.lab_series_save), with the treatment's ICAHT derived in the same write."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from registry import services
from registry.domain.vocabulary import Role
from registry.models import LabValue
from tests import factories
from tests.factories import DAY0

pytestmark = pytest.mark.django_db
URL = "/api/v1/labs/"


def day(n: int) -> str:
    return (DAY0 + timedelta(days=n)).isoformat()


def signed_in(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def neutropenia(days: int) -> list[dict]:
    return [{"date": day(n), "anc_per_ul": 300 if 1 <= n <= days else 3000} for n in range(41)]


@pytest.fixture
def elsewhere(other_site, administrator):
    """A treatment at the other site, with a lab value."""
    patient = factories.patient(user=administrator, site=other_site, study_id="X001")
    treatment = factories.treatment(user=administrator, patient=patient)
    services.lab_series_save(
        treatment=treatment, rows=[{"date": day(1), "anc_per_ul": 999}], user=administrator
    )
    return treatment


# --- writing rows together ---------------------------------------------------------------


def test_a_nurse_saves_a_series_in_one_request_and_the_grade_follows(treatment, nurse):
    response = signed_in(nurse).post(
        URL, {"treatment": treatment.pk, "rows": neutropenia(7)}, format="json"
    )

    assert response.status_code == 201, response.content
    assert len(response.json()) == 41
    assert response.json()[1] | {"id": None} == {
        "id": None,
        "version": 1,
        "created_at": response.json()[1]["created_at"],
        "updated_at": response.json()[1]["updated_at"],
        "treatment": treatment.pk,
        "date": day(1),
        "anc_per_ul": 300,
        "platelets_10e9_l": None,
        "haemoglobin_g_dl": None,
        "crp_mg_l": None,
        "ferritin_ng_ml": None,
        "igg_g_l": None,
        "cd19_b_cells_per_ul": None,
    }
    treatment.refresh_from_db()
    assert (treatment.icaht_early_grade, treatment.icaht_early_rule) == (2, "early_anc_500_days")


def test_decimals_are_taken_as_typed(treatment, nurse):
    rows = [{"date": day(1), "haemoglobin_g_dl": 8.9, "igg_g_l": "4.5", "crp_mg_l": 120}]
    response = signed_in(nurse).post(URL, {"treatment": treatment.pk, "rows": rows}, format="json")
    assert response.status_code == 201, response.content
    lab = LabValue.objects.get()
    assert (str(lab.haemoglobin_g_dl), str(lab.igg_g_l), str(lab.crp_mg_l)) == (
        "8.9",
        "4.5",
        "120.0",
    )


def test_refused_rows_come_back_one_object_per_row_sent_and_nothing_is_saved(treatment, nurse):
    rows = [
        {"date": day(1), "anc_per_ul": 300},
        {"date": day(-2), "anc_per_ul": 300},
        {"date": day(3)},
        {"date": day(4), "haemoglobin_g_dl": "8.95"},
    ]
    response = signed_in(nurse).post(URL, {"treatment": treatment.pk, "rows": rows}, format="json")

    assert response.status_code == 400, response.content
    errors = response.json()["rows"]
    assert len(errors) == 4
    assert errors[0] == {}
    assert list(errors[1]) == ["date"]
    assert list(errors[2]) == ["non_field_errors"]
    assert list(errors[3]) == ["haemoglobin_g_dl"]
    assert not LabValue.objects.exists()


def test_refusals_are_in_the_readers_language(treatment, nurse):
    nurse.language = "zh-hans"
    nurse.save()
    rows = [{"date": day(3)}]
    response = signed_in(nurse).post(
        URL,
        {"treatment": treatment.pk, "rows": rows},
        format="json",
        HTTP_ACCEPT_LANGUAGE="zh-hans",
    )
    assert response.status_code == 400
    assert response.json()["rows"][0]["non_field_errors"] == [
        "请为该日期至少录入一项实验室检查值，或删去这一行。"
    ]


def test_saved_rows_are_changed_with_their_version_and_a_reason(treatment, nurse):
    client = signed_in(nurse)
    created = client.post(URL, {"treatment": treatment.pk, "rows": neutropenia(7)}, format="json")
    changes = [{"id": row["id"], "version": 1, "anc_per_ul": 50} for row in created.json()[1:8]]

    refused = client.post(URL, {"treatment": treatment.pk, "rows": changes}, format="json")
    assert refused.status_code == 400
    assert "reason" in refused.json()

    body = {"treatment": treatment.pk, "rows": changes, "reason": "re-read the report"}
    response = client.post(URL, body, format="json")
    assert response.status_code == 201, response.content
    assert {row["version"] for row in response.json()} == {2}
    treatment.refresh_from_db()
    assert treatment.icaht_early_grade == 3


def test_an_empty_series_is_refused(treatment, nurse):
    response = signed_in(nurse).post(URL, {"treatment": treatment.pk, "rows": []}, format="json")
    assert response.status_code == 400
    assert "rows" in response.json()


# --- who may write, and where ------------------------------------------------------------


def test_anonymous_requests_are_refused(treatment):
    assert APIClient().get(URL).status_code in (401, 403)
    body = {"treatment": treatment.pk, "rows": [{"date": day(1), "anc_per_ul": 1}]}
    assert APIClient().post(URL, body, format="json").status_code in (401, 403)
    assert not LabValue.objects.exists()


def test_a_principal_investigator_reads_but_may_not_write(treatment, users):
    client = signed_in(users[Role.PI])
    body = {"treatment": treatment.pk, "rows": [{"date": day(1), "anc_per_ul": 1}]}
    assert client.post(URL, body, format="json").status_code == 403
    assert client.get(URL).status_code == 200
    assert not LabValue.objects.exists()


def test_another_sites_treatment_does_not_exist_for_a_nurse(nurse, elsewhere):
    body = {"treatment": elsewhere.pk, "rows": [{"date": day(2), "anc_per_ul": 1}]}
    response = signed_in(nurse).post(URL, body, format="json")
    assert response.status_code == 400
    assert "treatment" in response.json()
    assert LabValue.objects.count() == 1


def test_another_sites_row_cannot_be_changed_through_ones_own_treatment(
    treatment, nurse, elsewhere
):
    theirs = LabValue.objects.get(treatment=elsewhere)
    rows = [{"id": theirs.pk, "version": 1, "anc_per_ul": 5}]
    body = {"treatment": treatment.pk, "rows": rows, "reason": "x"}
    response = signed_in(nurse).post(URL, body, format="json")
    assert response.status_code == 400
    assert "id" in response.json()["rows"][0]
    assert LabValue.objects.get(pk=theirs.pk).anc_per_ul == 999


# --- reading -----------------------------------------------------------------------------


def test_the_list_shows_only_ones_own_sites_and_filters_by_treatment(
    treatment, nurse, administrator, elsewhere
):
    other = factories.treatment(user=nurse, patient=treatment.patient, day0=DAY0 + timedelta(200))
    services.lab_series_save(treatment=treatment, rows=neutropenia(2)[:3], user=nurse)
    services.lab_series_save(
        treatment=other, rows=[{"date": day(201), "anc_per_ul": 7}], user=nurse
    )
    client = signed_in(nurse)

    listed = client.get(URL).json()["results"]
    assert {row["treatment"] for row in listed} == {treatment.pk, other.pk}
    only = client.get(URL, {"treatment": treatment.pk}).json()["results"]
    assert [row["date"] for row in only] == [day(0), day(1), day(2)]
    assert client.get(URL, {"treatment": elsewhere.pk}).json()["results"] == []
    theirs = LabValue.objects.get(treatment=elsewhere)
    assert client.get(f"{URL}{theirs.pk}/").status_code == 404
    everything = signed_in(administrator).get(URL).json()["results"]
    assert elsewhere.pk in {row["treatment"] for row in everything}


def test_the_list_costs_the_same_queries_whatever_its_length(treatment, nurse):
    client = signed_in(nurse)
    services.lab_series_save(treatment=treatment, rows=neutropenia(2)[:2], user=nurse)
    with CaptureQueriesContext(connection) as few:
        client.get(URL)
    services.lab_series_save(treatment=treatment, rows=neutropenia(2)[2:30], user=nurse)
    with CaptureQueriesContext(connection) as many:
        assert len(client.get(URL).json()["results"]) == 30
    assert len(many) == len(few)


# --- ICAHT on the treatment ----------------------------------------------------------------


def test_the_treatment_shows_its_derived_icaht_read_only(treatment, nurse):
    client = signed_in(nurse)
    client.post(URL, {"treatment": treatment.pk, "rows": neutropenia(7)}, format="json")

    body = client.get(f"/api/v1/treatments/{treatment.pk}/").json()
    assert body["icaht_early_grade"] == 2
    assert body["icaht_early_rule"] == "early_anc_500_days"
    assert body["icaht_early_reason"] == "ANC at or below 500/µL on 7 days of days 0-30."
    assert body["icaht_late_grade"] is not None or body["icaht_late_rule"]
    assert body["icaht_late_reason"]

    # typed values are ignored: the grade is derived, never written
    response = client.patch(
        f"/api/v1/treatments/{treatment.pk}/",
        {
            "version": body["version"],
            "reason": "typo",
            "icaht_early_grade": 4,
            "icaht_early_rule": "early_anc_100_days",
            "icaht_early_reason": "made up",
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    treatment.refresh_from_db()
    assert (treatment.icaht_early_grade, treatment.icaht_early_rule) == (2, "early_anc_500_days")


def test_a_treatment_without_labs_is_not_gradable_with_its_reason(treatment, nurse):
    body = signed_in(nurse).get(f"/api/v1/treatments/{treatment.pk}/").json()
    assert body["icaht_early_grade"] is None
    assert body["icaht_early_reason"].startswith("Not gradable")


# --- deleting a day's values ---------------------------------------------------------------
def test_an_administrator_deletes_a_day_with_a_reason_and_the_grade_follows(
    treatment, nurse, administrator
):
    services.lab_series_save(treatment=treatment, rows=neutropenia(7), user=nurse)
    lab = LabValue.objects.get(treatment=treatment, date=day(7))
    client = signed_in(administrator)

    refused = client.delete(f"{URL}{lab.pk}/")
    assert refused.status_code == 400 and "reason" in refused.json()
    assert LabValue.objects.filter(pk=lab.pk).exists()
    stale = client.delete(f"{URL}{lab.pk}/?reason=duplicate&version=9")
    assert stale.status_code == 409
    assert LabValue.objects.filter(pk=lab.pk).exists()

    response = client.delete(f"{URL}{lab.pk}/?reason=duplicate&version={lab.version}")
    assert response.status_code == 204, response.content
    assert not LabValue.objects.filter(pk=lab.pk).exists()
    gone = LabValue.history.filter(id=lab.pk).latest("history_id")
    assert (gone.history_type, gone.history_user, gone.history_change_reason) == (
        "-",
        administrator,
        "duplicate",
    )
    treatment.refresh_from_db()
    assert treatment.icaht_early_grade is None  # day 7 missing inside the neutropenia


@pytest.mark.parametrize(
    "role, status", [(Role.NURSE, 403), (Role.DATA_MANAGER, 403), (Role.PI, 403)]
)
def test_only_an_administrator_may_delete_a_day(treatment, nurse, users, role, status):
    services.lab_series_save(treatment=treatment, rows=neutropenia(2)[:1], user=nurse)
    lab = LabValue.objects.get()
    response = signed_in(users[role]).delete(f"{URL}{lab.pk}/?reason=typo")
    assert response.status_code == status
    assert LabValue.objects.filter(pk=lab.pk).exists()


@pytest.mark.parametrize("role", [Role.NURSE, Role.DATA_MANAGER, Role.PI])
def test_another_sites_day_does_not_exist_for_anyone_of_this_site(users, elsewhere, role):
    lab = LabValue.objects.get(treatment=elsewhere)
    response = signed_in(users[role]).delete(f"{URL}{lab.pk}/?reason=typo")
    assert response.status_code in (403, 404)  # a reader's method is refused before the look-up
    if role != Role.PI:
        assert response.status_code == 404
    assert LabValue.objects.filter(pk=lab.pk).exists()


def test_a_bulk_write_may_delete_a_row_as_the_grid_does(treatment, nurse, administrator):
    services.lab_series_save(treatment=treatment, rows=neutropenia(2)[:2], user=nurse)
    first, second = LabValue.objects.order_by("date")
    rows = [
        {"id": first.pk, "version": first.version, "delete": True},
        {"date": day(5), "anc_per_ul": 700},
    ]
    as_nurse = signed_in(nurse).post(
        URL, {"treatment": treatment.pk, "rows": rows, "reason": "typo"}, format="json"
    )
    assert as_nurse.status_code == 400
    assert "Only administrators" in as_nurse.json()["rows"][0]["delete"][0]
    assert LabValue.objects.count() == 2

    response = signed_in(administrator).post(
        URL, {"treatment": treatment.pk, "rows": rows, "reason": "typo"}, format="json"
    )
    assert response.status_code == 201, response.content
    assert list(LabValue.objects.order_by("date").values_list("date", flat=True)) == [
        second.date,
        DAY0 + timedelta(days=5),
    ]
