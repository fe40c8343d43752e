"""The REST API: site scoping and the permission matrix, the services' rules and audit, optimistic
concurrency, filters, pagination, constant query counts, the read-only report archive, and an
OpenAPI schema that validates."""

from __future__ import annotations

import hashlib
import io
from datetime import date, timedelta

import hypothesis
import pytest
import schemathesis
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient
from schemathesis.generation import GenerationMode

from analytics.models import ReportDownload, Trigger
from analytics.report.context import Month
from analytics.report.services import report_archive
from analytics.services import snapshot_compute
from registry import services
from registry.api.auth import api_token_create
from registry.clock import today
from registry.domain.vocabulary import Role
from registry.models import ApiToken, CrsEpisode, Death, Patient, Treatment
from tests import factories
from tests.factories import DAY0

pytestmark = pytest.mark.django_db


@pytest.fixture
def api() -> APIClient:
    return APIClient()


def signed_in(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def elsewhere(other_site, administrator):
    """A patient and treatment at the other site."""
    patient = factories.patient(user=administrator, site=other_site, study_id="X001")
    return factories.treatment(user=administrator, patient=patient, arm="blinatumomab")


NEW_PATIENT = {"site": "AHP", "study_id": "P100", "sex": "M", "year_of_birth": 1985}


# --- who may do what -----------------------------------------------------------------------
def test_anonymous_requests_are_refused(api, patient):
    assert api.get("/api/v1/patients/").status_code in (401, 403)
    assert api.post("/api/v1/patients/", NEW_PATIENT, format="json").status_code in (401, 403)


def test_a_token_signs_in(api, nurse, patient):
    _, key = api_token_create(user=nurse)
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    response = api.get("/api/v1/patients/")

    assert response.status_code == 200
    assert [p["study_id"] for p in response.json()["results"]] == ["P001"]


def test_a_token_is_stored_only_as_its_digest(nurse):
    token, key = api_token_create(user=nurse)

    stored = ApiToken.objects.filter(pk=token.pk).values().get()
    assert key not in str(stored.values())
    assert stored["digest"] == hashlib.sha256(key.encode()).hexdigest()


def test_an_expired_token_is_refused(api, nurse, patient):
    token, key = api_token_create(user=nurse, days=1)
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/v1/patients/").status_code == 200

    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now())
    response = api.get("/api/v1/patients/")

    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


def test_a_read_only_token_reads_but_every_write_is_refused(api, data_manager, patient):
    _, key = api_token_create(user=data_manager, read_only=True)
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    assert api.get("/api/v1/patients/").status_code == 200
    created = api.post("/api/v1/patients/", NEW_PATIENT, format="json")
    changed = api.patch(
        f"/api/v1/patients/{patient.pk}/",
        {"version": patient.version, "reason": "probe", "sex": "M"},
        format="json",
    )

    assert (created.status_code, changed.status_code) == (403, 403)
    assert "only read" in created.json()["detail"]
    assert Patient.objects.count() == 1
    patient.refresh_from_db()
    assert patient.version == 1


def test_an_unknown_token_is_refused(api, patient):
    api.credentials(HTTP_AUTHORIZATION="Token not-a-key-anyone-was-given")

    assert api.get("/api/v1/patients/").status_code == 401


def test_create_api_token_prints_a_key_that_signs_in_read_only(api, nurse, patient):
    output = io.StringIO()
    call_command("create_api_token", "nurse", "--read-only", "--days", "7", stdout=output)
    key = output.getvalue().split()[-1]
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    assert "read-only" in output.getvalue()
    assert api.get("/api/v1/patients/").status_code == 200
    assert api.post("/api/v1/patients/", NEW_PATIENT, format="json").status_code == 403
    token = ApiToken.objects.get()
    assert abs(token.expires_at - token.created_at - timedelta(days=7)) < timedelta(minutes=1)


def test_an_administrator_makes_a_token_in_the_admin_and_sees_its_key_once(
    client, administrator, nurse, patient
):
    client.force_login(administrator)

    answer = client.post(
        "/admin/registry/apitoken/add/",
        {"user": nurse.pk, "name": "nightly export", "read_only": "on", "days": "30"},
        follow=True,
    )

    [message] = [str(m) for m in answer.context["messages"] if "shown only now" in str(m)]
    key = message.rsplit(" ", 1)[-1]
    token = ApiToken.objects.get()
    assert (token.user, token.name, token.read_only) == (nurse, "nightly export", True)
    assert token.digest == hashlib.sha256(key.encode()).hexdigest()
    assert key not in client.get(f"/admin/registry/apitoken/{token.pk}/change/").content.decode()


@pytest.mark.parametrize("role", list(Role))
def test_every_role_reads_its_own_sites_only(users, treatment, elsewhere, role):
    response = signed_in(users[role]).get("/api/v1/treatments/")

    seen = {t["id"] for t in response.json()["results"]}
    expected = {treatment.pk, elsewhere.pk} if role == Role.ADMINISTRATOR else {treatment.pk}
    assert (response.status_code, seen) == (200, expected)


def test_another_sites_record_is_not_found(nurse, elsewhere):
    client = signed_in(nurse)

    assert client.get(f"/api/v1/treatments/{elsewhere.pk}/").status_code == 404
    response = client.patch(
        f"/api/v1/treatments/{elsewhere.pk}/",
        {"version": 1, "reason": "x", "product": "y"},
        format="json",
    )
    assert response.status_code == 404


@pytest.mark.parametrize(
    "role, status",
    [
        (Role.NURSE, 201),
        (Role.DATA_MANAGER, 201),
        (Role.PI, 403),
        (Role.ADMINISTRATOR, 201),
    ],
)
def test_who_may_add_clinical_data_follows_the_permission_matrix(users, site, role, status):
    response = signed_in(users[role]).post("/api/v1/patients/", NEW_PATIENT, format="json")

    assert response.status_code == status, response.content
    assert Patient.objects.filter(study_id="P100").exists() == (status == 201)


def test_a_nurse_may_not_add_a_patient_at_another_site(nurse, other_site):
    response = signed_in(nurse).post(
        "/api/v1/patients/", NEW_PATIENT | {"site": "XHC"}, format="json"
    )

    assert response.status_code == 403
    assert not Patient.objects.exists()


def test_a_record_cannot_hang_off_another_sites_treatment(nurse, elsewhere):
    response = signed_in(nurse).post(
        "/api/v1/relapses/",
        {"treatment": elsewhere.pk, "date": "2022-05-01", "kind": "morphologic"},
        format="json",
    )

    assert response.status_code == 400
    assert "treatment" in response.json()


def test_nothing_is_deleted_through_the_api(administrator, treatment):
    response = signed_in(administrator).delete(f"/api/v1/treatments/{treatment.pk}/")

    assert response.status_code == 405
    assert Treatment.objects.filter(pk=treatment.pk).exists()


# --- the same rules, messages and audit as the forms ----------------------------------------
def test_a_broken_rule_is_a_400_with_the_services_message_by_field(nurse, treatment):
    response = signed_in(nurse).post(
        "/api/v1/responses/",
        {"treatment": treatment.pk, "date": str(DAY0 - timedelta(days=3)), "response": "cr"},
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {
        "date": ["The response date must be on or after day 0 (2022-03-01)."]
    }


def test_a_duplicate_study_id_gets_the_services_message(nurse, patient):
    response = signed_in(nurse).post(
        "/api/v1/patients/", NEW_PATIENT | {"study_id": "P001"}, format="json"
    )

    assert response.status_code == 400
    assert f"already exists at this site (record {patient.pk})" in response.json()["study_id"][0]


def test_a_write_through_the_api_is_audited_with_its_user(nurse, treatment):
    response = signed_in(nurse).post(
        "/api/v1/crs-episodes/",
        {
            "treatment": treatment.pk,
            "onset": "2022-03-03",
            "max_temperature_c": "39.2",
            "hypotension": True,
            "vasopressors": 1,
            "oxygen": "none",
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["derived_grade"], body["grade"], body["version"]) == (3, 3, 1)
    episode = CrsEpisode.objects.get()
    assert episode.history.get().history_user == nurse
    treatment.refresh_from_db()
    assert treatment.crs_status == "yes"  # the services' derivation, as in the forms


def test_a_death_from_crs_names_its_fatal_episode(administrator, treatment):
    episode = services.record_create(
        CrsEpisode,
        user=administrator,
        treatment=treatment,
        onset=DAY0,
        max_temperature_c=39.5,
        hypotension=True,
        vasopressors=2,
        oxygen="high_flow",
    )
    assert episode.grade == 4

    response = signed_in(administrator).post(
        "/api/v1/deaths/",
        {
            "patient": treatment.patient.pk,
            "date": "2022-03-10",
            "cause": "crs",
            "fatal_crs_episode": episode.pk,
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    episode.refresh_from_db()
    assert (episode.grade, Death.objects.get().cause) == (5, "crs")


# --- optimistic concurrency ----------------------------------------------------------------
def test_an_update_with_the_current_version_applies_and_is_audited(nurse, treatment):
    response = signed_in(nurse).patch(
        f"/api/v1/treatments/{treatment.pk}/",
        {"version": 1, "reason": "typo in the product", "product": "Tisagenlecleucel"},
        format="json",
    )

    assert response.status_code == 200, response.content
    assert (response.json()["version"], response.json()["product"]) == (2, "Tisagenlecleucel")
    latest = treatment.history.order_by("-history_id").first()
    assert (latest.history_change_reason, latest.history_user) == ("typo in the product", nurse)


def test_an_update_with_a_stale_version_is_refused_with_409_and_changes_nothing(
    nurse, data_manager, treatment
):
    services.record_update(treatment, user=data_manager, reason="fix", version=1, product="A")

    response = signed_in(nurse).put(
        f"/api/v1/treatments/{treatment.pk}/",
        {
            "patient": treatment.patient.pk,
            "arm": "car_t",
            "day0": str(DAY0),
            "product": "B",
            "version": 1,
            "reason": "my change",
        },
        format="json",
    )

    assert response.status_code == 409
    assert "changed by someone else" in response.json()["detail"]
    treatment.refresh_from_db()
    assert (treatment.product, treatment.version) == ("A", 2)


def test_an_update_must_carry_its_version_and_a_reason(nurse, treatment):
    client = signed_in(nurse)

    no_version = client.patch(
        f"/api/v1/treatments/{treatment.pk}/", {"reason": "x", "product": "B"}, format="json"
    )
    no_reason = client.patch(
        f"/api/v1/treatments/{treatment.pk}/", {"version": 1, "product": "B"}, format="json"
    )

    assert (no_version.status_code, list(no_version.json())) == (400, ["version"])
    assert (no_reason.status_code, list(no_reason.json())) == (400, ["reason"])
    treatment.refresh_from_db()
    assert treatment.version == 1


# --- filters, pagination, queries ----------------------------------------------------------
def test_lists_filter_by_site_arm_dates_and_updated_since(administrator, treatment, elsewhere):
    client = signed_in(administrator)

    def ids(url: str) -> set[int]:
        response = client.get(url)
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["results"]}

    assert ids("/api/v1/treatments/?site=XHC") == {elsewhere.pk}
    assert ids("/api/v1/patients/?arm=car_t") == {treatment.patient.pk}
    assert ids("/api/v1/treatments/?date_from=2022-03-01&date_to=2022-03-01") == {
        treatment.pk,
        elsewhere.pk,
    }
    assert ids("/api/v1/treatments/?date_from=2022-03-02") == set()
    since = (timezone.now() + timedelta(minutes=1)).isoformat()
    assert ids(f"/api/v1/treatments/?updated_since={since.replace('+', '%2B')}") == set()
    assert client.get("/api/v1/treatments/?date_from=not-a-date").status_code == 400


def test_lists_are_paginated(administrator, site):
    for number in range(55):
        factories.patient(user=administrator, site=site, study_id=f"P{number:03d}")

    first = signed_in(administrator).get("/api/v1/patients/").json()

    assert (first["count"], len(first["results"])) == (55, 50)
    assert first["next"].endswith("?page=2")


@pytest.mark.parametrize(
    "url", ["/api/v1/patients/", "/api/v1/treatments/", "/api/v1/crs-episodes/"]
)
def test_list_endpoints_take_the_same_number_of_queries_for_5_or_30_records(nurse, site, url):
    client = signed_in(nurse)

    def add(numbers: range) -> None:
        for number in numbers:
            patient = factories.patient(user=nurse, site=site, study_id=f"Q{number:03d}")
            treatment = factories.treatment(user=nurse, patient=patient)
            services.record_create(
                CrsEpisode, user=nurse, treatment=treatment, onset=DAY0, recorded_grade=1
            )

    def queries() -> int:
        with CaptureQueriesContext(connection) as context:
            assert client.get(url).status_code == 200
        return len(context.captured_queries)

    add(range(5))
    few = queries()
    add(range(5, 30))
    assert queries() == few


# --- the schema ----------------------------------------------------------------------------
def test_the_openapi_schema_validates(client, nurse):
    from drf_spectacular.validation import validate_schema

    client.force_login(nurse)
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    schema = response.json()
    validate_schema(schema)
    assert schema["openapi"].startswith("3.")
    assert {"/api/v1/patients/", "/api/v1/deaths/{id}/", "/api/v1/crs-episodes/"} <= set(
        schema["paths"]
    )


def test_the_api_names_its_urls_in_its_own_namespace_apart_from_the_pages():
    assert reverse("api:patient-detail", args=[7]) == "/api/v1/patients/7/"
    assert reverse("patient-detail", args=[7]) == "/patients/7/"
    assert reverse("api:schema") == "/api/schema/"


def test_swagger_ui_and_redoc_are_served(client, nurse):
    client.force_login(nurse)

    assert client.get("/api/schema/swagger/").status_code == 200
    assert client.get("/api/schema/redoc/").status_code == 200


def test_dates_in_the_future_are_refused_as_in_the_forms(nurse, patient):
    response = signed_in(nurse).post(
        "/api/v1/treatments/",
        {"patient": patient.pk, "arm": "car_t", "day0": str(today() + timedelta(days=1))},
        format="json",
    )

    assert response.status_code == 400
    assert "future" in response.json()["day0"][0]


# --- bad bodies are a 400 with a message, never a 500 ------------------------------------------
def clinical_list_urls() -> list[str]:
    from registry.api.urls import router
    from registry.api.views import ClinicalViewSet

    return [
        f"/api/v1/{prefix}/"
        for prefix, viewset, _ in router.registry
        if issubclass(viewset, ClinicalViewSet)
    ]


DEEP = "[" * 50_000 + "]" * 50_000


@pytest.mark.parametrize("url", clinical_list_urls())
def test_deeply_nested_json_is_refused_with_a_message_on_every_endpoint(data_manager, url):
    response = signed_in(data_manager).post(url, DEEP, content_type="application/json")

    assert response.status_code == 400
    assert "nested deeper than" in response.json()["detail"]


def test_deeply_nested_json_in_an_update_is_refused_with_a_message(data_manager, patient):
    deep_reason = '{"version": 1, "reason": ' + "[" * 5000 + "]" * 5000 + "}"

    response = signed_in(data_manager).patch(
        f"/api/v1/patients/{patient.pk}/", deep_reason, content_type="application/json"
    )

    assert response.status_code == 400
    assert "nested deeper than" in response.json()["detail"]


def test_a_json_body_over_the_size_limit_is_refused_with_a_message(data_manager, settings):
    huge = '{"study_id": "' + "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1) + '"}'

    response = signed_in(data_manager).post(
        "/api/v1/patients/", huge, content_type="application/json"
    )

    assert response.status_code == 400
    assert "larger than" in response.json()["detail"]
    assert not Patient.objects.exists()


def test_brackets_inside_strings_do_not_count_as_nesting(data_manager, site):
    response = signed_in(data_manager).post(
        "/api/v1/patients/",
        NEW_PATIENT | {"study_id": "[" * 30 + "{"},
        format="json",
    )

    assert response.status_code == 201, response.json()


# --- property-based: no request the schema allows makes the server fail --------------------
def _fuzzed_schema():
    from django.core.wsgi import get_wsgi_application
    from drf_spectacular.generators import SchemaGenerator

    schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
    schema.app = get_wsgi_application()
    return schema


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize(
    "operation",
    [result.ok() for result in _fuzzed_schema().get_all_operations()],
    ids=lambda operation: operation.label,
)
def test_no_request_the_schema_allows_or_refuses_gets_a_server_error(
    operation, mode, request, administrator, treatment, elsewhere
):
    """Positive: requests the schema allows; negative: every payload, parameter and body
    broken against it (wrong types, missing fields, out of range): a 4xx, never a 5xx."""
    _, key = api_token_create(user=administrator)
    # As Django's test client does: the WSGI handler must not close the test's connection.
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
        request.addfinalizer(lambda signal=signal: signal.connect(close_old_connections))

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(
        max_examples=4,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    def call(case) -> None:
        case.call_and_validate(
            headers={"Authorization": f"Token {key}"},
            checks=[schemathesis.checks.not_a_server_error],
        )

    call()


# --- read-only analytics -------------------------------------------------------------------
def test_the_latest_complete_analytics_snapshot_is_served_to_whom_the_matrix_allows(
    users, site, treatment
):
    from analytics.services import snapshot_compute

    url = "/api/v1/analytics/latest/"
    administrator, pi = signed_in(users[Role.ADMINISTRATOR]), signed_in(users[Role.PI])
    assert administrator.get(url).status_code == 404  # nothing computed yet

    whole = snapshot_compute(site=None, trigger="command")
    mine = snapshot_compute(site=site, trigger="command")

    response = administrator.get(url)
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["site"]) == (whole.pk, None)
    assert body["output"]["populations"]["car_t"]["analysis"] == 1
    # SAP 15: the competing risks, the adjusted comparison and RMST are in the JSON too.
    assert {"competing_risks", "adjusted", "rmst"} <= set(body["output"])
    assert set(body["output"]["competing_risks"]) >= {"relapse", "nrm"}
    assert pi.get(url).status_code == 403  # PI of AHP only: not the whole registry
    assert pi.get(f"{url}?site=AHP").json()["id"] == mine.pk
    assert pi.get(f"{url}?site=XHC").status_code == 404
    assert signed_in(users[Role.NURSE]).get(f"{url}?site=AHP").status_code == 403


# --- the monthly report archive, read-only ---------------------------------------------------
@pytest.fixture
def archive(settings, tmp_path, site, other_site, treatment, elsewhere) -> dict:
    """October 2024's report of the whole registry (None) and of each site, as the monthly run
    archives them."""
    settings.MEDIA_ROOT = tmp_path
    month = Month.parse("2024-10")
    reports = {}
    for scope in (None, site, other_site):
        snapshot_compute(site=scope, trigger=Trigger.COMMAND)
        reports[scope] = report_archive(
            site=scope, month=month, language="en", trigger=Trigger.MONTHLY
        )
    return reports


def test_the_report_archive_lists_the_reports_of_each_roles_scopes_only(users, site, archive):
    expected = {
        Role.DATA_MANAGER: {archive[site].pk},
        Role.PI: {archive[site].pk},
        Role.ADMINISTRATOR: {report.pk for report in archive.values()},
    }
    for role, reports in expected.items():
        response = signed_in(users[role]).get("/api/v1/reports/")

        assert response.status_code == 200
        assert {row["id"] for row in response.json()["results"]} == reports, role
    row = response.json()["results"][-1]
    assert row["site"] in (None, "AHP", "XHC")
    assert row["download"].endswith(f"/api/v1/reports/{row['id']}/download/")


def test_a_report_downloads_with_a_token_as_the_stored_pdf_and_the_download_is_logged(
    api, users, site, archive
):
    pi, report = users[Role.PI], archive[site]
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=pi)[1]}")

    response = api.get(f"/api/v1/reports/{report.pk}/download/", HTTP_ACCEPT="application/pdf")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == (
        'attachment; filename="immunoreg-AHP-2024-10-en.pdf"'
    )
    with report.pdf.open("rb") as stored:
        assert response.content == stored.read()
    logged = ReportDownload.objects.get()
    assert (logged.user, logged.report) == (pi, report)


def test_another_scopes_report_is_not_found_and_not_logged(users, site, archive):
    client = signed_in(users[Role.PI])

    for scope, report in archive.items():
        if scope == site:
            continue
        assert client.get(f"/api/v1/reports/{report.pk}/").status_code == 404
        assert client.get(f"/api/v1/reports/{report.pk}/download/").status_code == 404
    assert not ReportDownload.objects.exists()


def test_anonymous_users_and_nurses_get_no_reports(api, nurse, site, archive):
    list_url, download_url = "/api/v1/reports/", f"/api/v1/reports/{archive[site].pk}/download/"
    for url, accept in ((list_url, "application/json"), (download_url, "application/pdf")):
        assert api.get(url, HTTP_ACCEPT=accept).status_code in (401, 403)
        response = signed_in(nurse).get(url, HTTP_ACCEPT=accept)
        assert response.status_code == 403
        assert response.json() == {
            "detail": "Reports are for data managers, PIs and administrators."
        }
    assert not ReportDownload.objects.exists()


def test_the_report_archive_filters_by_month_site_and_language(administrator, site, archive):
    client = signed_in(administrator)

    def ids(query: str) -> set[int]:
        response = client.get(f"/api/v1/reports/?{query}")
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["results"]}

    assert ids("month=2024-10") == ids("month=2024-10-15") == {r.pk for r in archive.values()}
    assert ids("month=2024-09") == set()
    assert ids("site=AHP") == {archive[site].pk}
    assert ids("language=zh-hans") == set()
    assert client.get("/api/v1/reports/?month=October").status_code == 400


def test_the_report_archive_takes_the_same_number_of_queries_for_3_or_15_reports(
    administrator, site, archive
):
    client = signed_in(administrator)

    def queries() -> int:
        with CaptureQueriesContext(connection) as context:
            assert client.get("/api/v1/reports/").status_code == 200
        return len(context.captured_queries)

    few = queries()
    for report in archive.values():  # copies of the archive's rows, for earlier months
        for months_back in range(1, 5):
            report.pk, report.month = None, date(2024, 10 - months_back, 1)
            report.save()
    assert queries() == few
