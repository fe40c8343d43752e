"""People who probe the registry: forged forms (CSRF), script and SQL typed into text fields,
uploads too big or of the wrong kind, attempts to change the audit trail, error pages, and
wrong passwords sent through the reverse proxy to lock someone else out."""

from __future__ import annotations

from datetime import date

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings
from rest_framework.test import APIClient

from registry import services
from registry.models import FollowUpContact, Patient, Treatment
from tests import factories
from tests.deploy.conftest import PASSWORD, Stack, start_web
from tests.deploy.conftest import Client as ProxiedClient

SCRIPT = '<script>alert("x")</script>'
SQL = "x'); DROP TABLE registry_patient;--"
ESCAPED_SCRIPT = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"


# --- CSRF ----------------------------------------------------------------------------------------


@pytest.fixture
def csrf_client(nurse) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(nurse)
    return client


def patient_form(site, **fields) -> dict:
    return {
        "site": site.pk,
        "study_id": "CSRF-1",
        "sex": "F",
        "year_of_birth": "1990",
        "ph_status": "unknown",
    } | fields


def test_a_form_posted_without_its_csrf_token_is_refused_and_saves_nothing(csrf_client, site):
    answer = csrf_client.post("/patients/new/", patient_form(site))

    assert answer.status_code == 403
    assert "CSRF" in answer.content.decode()
    assert not Patient.objects.exists()


def test_a_form_posted_with_its_csrf_token_is_saved(csrf_client, site):
    page = csrf_client.get("/patients/new/")
    token = page.context["csrf_token"]

    answer = csrf_client.post("/patients/new/", patient_form(site, csrfmiddlewaretoken=token))

    assert answer.status_code == 302
    assert Patient.objects.filter(study_id="CSRF-1").exists()


def test_an_api_write_with_a_session_but_no_csrf_token_is_refused(nurse, site):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(nurse)

    answer = client.post(
        "/api/v1/patients/",
        {"site": site.code, "study_id": "CSRF-2", "sex": "M", "year_of_birth": 1980},
        format="json",
    )

    assert answer.status_code == 403
    assert not Patient.objects.exists()


# --- script and SQL in text fields ---------------------------------------------------------------


@pytest.mark.parametrize("typed", [SCRIPT, SQL])
def test_text_typed_into_the_patient_form_is_stored_as_typed(client, nurse, site, typed):
    client.force_login(nurse)

    answer = client.post("/patients/new/", patient_form(site, study_id=typed))

    assert answer.status_code == 302
    assert Patient.objects.get().study_id == typed


def test_text_typed_into_the_treatment_form_is_stored_as_typed(client, nurse, patient):
    client.force_login(nurse)
    form = {
        "arm": "car_t",
        "day0": "2023-02-01",
        "disease_burden": "morphologic",
        "bm_blast_pct": "40",
        "relapse_status": "first_relapse",
        "cd19_positive": "unknown",
        "crs_status": "unknown",
        "icans_status": "unknown",
        "product": SCRIPT,
        "lymphodepletion": SQL,
        "bridging": SCRIPT + SQL,
    }

    answer = client.post(f"/records/{patient.pk}/treatment/new/", form)

    assert answer.status_code == 302, answer.content.decode()[:3000]
    treatment = Treatment.objects.get(patient=patient)
    assert (treatment.product, treatment.lymphodepletion, treatment.bridging) == (
        SCRIPT,
        SQL,
        SCRIPT + SQL,
    )


@pytest.fixture
def hostile_records(nurse, site):
    """A patient whose every free-text field holds script (or SQL), saved through the services."""
    patient = factories.patient(user=nurse, site=site, study_id=SCRIPT)
    treatment = factories.treatment(
        user=nurse, patient=patient, product=SCRIPT, lymphodepletion=SQL, bridging=SCRIPT
    )
    contact = services.record_create(
        FollowUpContact,
        user=nurse,
        treatment=treatment,
        date=date(2022, 6, 1),
        disease_status="unknown",
        notes=SCRIPT,
    )
    return patient, treatment, contact


def test_script_in_text_fields_is_shown_escaped_on_every_page(client, nurse, hostile_records):
    patient, treatment, contact = hostile_records
    client.force_login(nurse)
    pages = [
        "/patients/",
        f"/patients/?study_id={SCRIPT}",
        f"/patients/{patient.pk}/",
        f"/records/patient/{patient.pk}/",
        f"/records/treatment/{treatment.pk}/",
        f"/records/contact/{contact.pk}/",
        "/worklist/",
    ]
    for url in pages:
        answer = client.get(url)
        page = answer.content.decode()
        assert answer.status_code == 200, url
        assert SCRIPT not in page, f"{url} shows the script unescaped"
    assert ESCAPED_SCRIPT in client.get(f"/patients/{patient.pk}/").content.decode()


def test_script_and_sql_come_back_from_the_api_as_typed(nurse, hostile_records):
    patient, treatment, contact = hostile_records
    api = APIClient()
    api.force_authenticate(nurse)

    assert api.get(f"/api/v1/patients/{patient.pk}/").json()["study_id"] == SCRIPT
    assert api.get(f"/api/v1/treatments/{treatment.pk}/").json()["lymphodepletion"] == SQL
    assert api.get(f"/api/v1/contacts/{contact.pk}/").json()["notes"] == SCRIPT
    assert api.get("/api/v1/patients/", {"study_id": SQL}).status_code == 200
    assert Patient.objects.count() == 1  # the table is still there


# --- nothing with patient data is kept by a cache ----------------------------------------------


def test_pages_api_answers_and_the_admin_are_never_kept_by_a_cache(client, data_manager, patient):
    client.force_login(data_manager)
    api = APIClient()
    api.force_authenticate(data_manager)
    answers = {
        url: client.get(url)
        for url in (
            "/worklist/",
            "/patients/",
            f"/patients/{patient.pk}/",
            "/export/",
            "/admin/registry/patient/",
            "/accounts/login/",
        )
    } | {url: api.get(url) for url in ("/api/v1/patients/", f"/api/v1/patients/{patient.pk}/")}

    kept = {
        url: a.get("Cache-Control")
        for url, a in answers.items()
        if "no-store" not in a.get("Cache-Control", "")
    }
    assert not kept


# --- uploads ---------------------------------------------------------------------------------------

CSV = b"study_id,site\nP1,AHP\n"


def upload(client: Client, name: str, content: bytes):
    return client.post("/patients/new/", {"file": SimpleUploadedFile(name, content)})


@pytest.mark.parametrize(
    "name, content",
    [
        ("cohort.exe", b"MZ\x90\x00"),
        ("photo.jpg", b"\xff\xd8\xff\xe0"),
        ("cohort.xlsx", b"not a workbook"),
        ("cohort.csv", b"\x00\x01binary"),
        ("cohort", CSV),
    ],
)
def test_an_upload_of_the_wrong_kind_is_refused(client, data_manager, name, content):
    client.force_login(data_manager)

    answer = upload(client, name, content)

    assert answer.status_code == 415
    assert "File refused" in answer.content.decode()


@override_settings(IMMUNOREG_MAX_UPLOAD_BYTES=1000)
def test_an_upload_over_the_size_limit_is_refused(client, data_manager):
    client.force_login(data_manager)

    assert upload(client, "cohort.csv", CSV * 100).status_code == 413


def test_a_request_announcing_a_body_over_the_limit_is_refused_before_it_is_read(
    client, data_manager
):
    client.force_login(data_manager)

    answer = client.post(
        "/patients/new/", data=b"x", content_type="text/csv", CONTENT_LENGTH=str(10**9)
    )

    assert answer.status_code == 413


def test_an_upload_of_an_accepted_kind_reaches_the_page(client, data_manager):
    client.force_login(data_manager)

    for name, content in [("cohort.csv", CSV), ("cohort.xlsx", b"PK\x03\x04rest")]:
        assert upload(client, name, content).status_code == 200  # the form, with its errors


# --- the audit trail ------------------------------------------------------------------------------


def history_rows(patient) -> list[tuple]:
    return list(patient.history.order_by("history_id").values_list("history_id", "study_id"))


def test_the_audit_cannot_be_changed_or_restored_through_the_admin(client, administrator, patient):
    before = history_rows(patient)
    client.force_login(administrator)
    version_id = before[0][0]
    url = f"/admin/registry/patient/{patient.pk}/history/{version_id}/"

    assert client.get(url).status_code == 200  # readable
    assert client.post(url, {"study_id": "CHANGED", "site": patient.site_id}).status_code == 403
    assert client.get("/admin/registry/historicalpatient/").status_code == 404
    assert history_rows(patient) == before


def test_the_api_offers_no_way_to_delete_or_rewrite_history(patient, administrator):
    api = APIClient()
    api.force_authenticate(administrator)
    before = history_rows(patient)

    assert api.delete(f"/api/v1/patients/{patient.pk}/").status_code == 405
    answer = api.patch(
        f"/api/v1/patients/{patient.pk}/",
        {"version": patient.version, "reason": "probe", "created_at": "2000-01-01T00:00:00Z"},
        format="json",
    )
    assert answer.status_code == 200
    patient.refresh_from_db()
    assert patient.created_at.year != 2000  # read-only: ignored
    assert history_rows(patient)[: len(before)] == before  # earlier versions untouched
    assert api.get(f"/api/v1/patients/{patient.pk}/history/").status_code == 404


# --- error pages ------------------------------------------------------------------------------------


def test_another_sites_patient_is_a_404_that_names_nothing(client, site, other_site, patient):
    stranger = factories.UserFactory(username="stranger", role="nurse", sites=[other_site])
    client.force_login(stranger)

    answer = client.get(f"/patients/{patient.pk}/")

    assert answer.status_code == 404
    assert patient.study_id not in answer.content.decode()


def test_a_server_error_page_shows_nothing_of_the_data(client, nurse, patient, monkeypatch):
    def failing(**kwargs):
        raise RuntimeError(f"worklist failed for {patient.study_id}")

    monkeypatch.setattr("registry.views.worklist_for", failing)
    client.raise_request_exception = False
    client.force_login(nurse)

    answer = client.get("/worklist/")

    page = answer.content.decode()
    assert answer.status_code == 500
    assert "Something went wrong" in page
    assert patient.study_id not in page and "RuntimeError" not in page


# --- signing in behind the reverse proxy: the lock-out keys on the real client's address -------

VICTIM, ATTACKER = "203.0.113.5", "198.51.100.66"


def forwarded_for(client_address: str, *, claimed: str = "") -> str:
    """X-Forwarded-For as the hospital's nginx sends it ($proxy_add_x_forwarded_for): whatever
    the client claimed, then the address nginx saw the client connect from."""
    return ", ".join(part for part in (claimed, client_address) if part)


@pytest.fixture(scope="module")
def behind_one_proxy(stack: Stack):
    """gunicorn as in production with DJANGO_PROXY_COUNT=1; the test speaks as the proxy."""
    web, port = start_web(
        stack.env(DJANGO_PROXY_COUNT="1"), stack.logs / "gunicorn-proxy.log", workers=1, threads=2
    )
    try:
        yield port
    finally:
        web.stop()
        with stack.postgres.connect(stack.database) as connection:
            connection.execute("DELETE FROM axes_accessattempt")


def test_an_attacker_behind_the_proxy_locks_out_their_own_address_not_the_user(
    stack, behind_one_proxy
):
    attacker = ProxiedClient(behind_one_proxy)
    as_attacker = {"X-Forwarded-For": forwarded_for(ATTACKER, claimed=VICTIM)}
    attacker.get("/accounts/login/", headers=as_attacker)
    wrong = {"username": "admin", "password": "not-the-password"}
    answers = [attacker.post("/accounts/login/", wrong, headers=as_attacker) for _ in range(5)]
    assert [a.status for a in answers] == [200, 200, 200, 200, 429]
    right = {"username": "admin", "password": PASSWORD}
    assert attacker.post("/accounts/login/", right, headers=as_attacker).status == 429

    user = ProxiedClient(behind_one_proxy)
    as_user = {"X-Forwarded-For": forwarded_for(VICTIM, claimed="10.1.2.3")}
    user.get("/accounts/login/", headers=as_user)
    assert user.post("/accounts/login/", right, headers=as_user).status == 302

    attempts = stack.query(
        "SELECT host(ip_address), failures_since_start FROM axes_accessattempt "
        "WHERE username = 'admin'"
    )
    assert attempts == [(ATTACKER, 6)]
