"""Data managers clean data in the admin, through the same services and audit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse

from registry import services
from registry.domain.vocabulary import Role
from registry.models import CrsEpisode, FollowUpContact, Treatment
from tests import factories
from tests.factories import DAY0

pytestmark = pytest.mark.django_db


def change_form_data(treatment: Treatment, **overrides) -> dict:
    data = {
        "patient": treatment.patient_id,
        "arm": treatment.arm,
        "day0": treatment.day0.isoformat(),
        "product": "",
        "costim_domain": "",
        "dose_cells_per_kg": "",
        "cycles": "",
        "lymphodepletion": "",
        "bridging": "",
        "disease_burden": treatment.disease_burden,
        "bm_blast_pct": str(treatment.bm_blast_pct),
        "extramedullary": "unknown",
        "relapse_status": treatment.relapse_status,
        "prior_hsct": "unknown",
        "cd19_positive": treatment.cd19_positive,
        "crs_status": treatment.crs_status,
        "icans_status": treatment.icans_status,
        "change_reason": "",
        "edited_version": treatment.version,
    }
    for prefix in (
        "crs_episodes",
        "icans_episodes",
        "responses",
        "transplants",
        "relapses",
        "contacts",
        "infections",
        "iec_hs_episodes",
        "ivig_courses",
        "persistence_assessments",
        "second_cancers",
    ):
        data |= {f"{prefix}-TOTAL_FORMS": 0, f"{prefix}-INITIAL_FORMS": 0}
    return data | overrides


def test_a_data_manager_finds_a_patient_by_study_id(client, data_manager, patient):
    client.force_login(data_manager)
    response = client.get(reverse("admin:registry_patient_changelist"), {"q": "P001"})
    assert response.status_code == 200
    assert "P001" in response.content.decode()


def test_a_data_manager_fixes_a_date_with_a_reason_and_the_history_shows_it(
    client, data_manager, treatment
):
    client.force_login(data_manager)
    url = reverse("admin:registry_treatment_change", args=[treatment.pk])
    new_day0 = DAY0 + timedelta(days=2)
    response = client.post(
        url,
        change_form_data(
            treatment, day0=new_day0.isoformat(), change_reason="infusion date was mistyped"
        ),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    treatment.refresh_from_db()
    assert treatment.day0 == new_day0
    history = client.get(reverse("admin:registry_treatment_history", args=[treatment.pk]))
    page = history.content.decode()
    assert "infusion date was mistyped" in page
    assert data_manager.username in page
    assert "2022-03-01" in page or "March 1, 2022" in page


def test_an_edit_without_a_reason_is_refused_next_to_the_field(client, data_manager, treatment):
    client.force_login(data_manager)
    url = reverse("admin:registry_treatment_change", args=[treatment.pk])
    response = client.post(url, change_form_data(treatment, bm_blast_pct="10"))
    assert response.status_code == 200
    assert "Give a reason for the change" in response.content.decode()
    treatment.refresh_from_db()
    assert treatment.bm_blast_pct == 40


def test_a_broken_rule_is_shown_in_the_admin_and_saves_nothing(client, data_manager, treatment):
    client.force_login(data_manager)
    url = reverse("admin:registry_treatment_change", args=[treatment.pk])
    response = client.post(
        url, change_form_data(treatment, bm_blast_pct="120", change_reason="lab report")
    )
    assert response.status_code == 200
    assert "less than or equal to 100" in response.content.decode()
    treatment.refresh_from_db()
    assert treatment.bm_blast_pct == 40


def test_another_sites_patient_is_not_found_in_the_admin(
    client, data_manager, administrator, other_site
):
    elsewhere = factories.patient(user=administrator, site=other_site, study_id="X-9")
    client.force_login(data_manager)
    response = client.get(reverse("admin:registry_patient_change", args=[elsewhere.pk]))
    assert response.status_code == 404
    assert "X-9" not in response.content.decode()
    listing = client.get(reverse("admin:registry_patient_changelist"))
    assert "X-9" not in listing.content.decode()


@pytest.mark.parametrize("role", [Role.NURSE, Role.PI])
def test_nurses_and_pis_have_no_admin(client, users, role):
    client.force_login(users[role])
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_a_data_manager_cannot_delete(client, data_manager, treatment):
    client.force_login(data_manager)
    response = client.post(
        reverse("admin:registry_treatment_delete", args=[treatment.pk]),
        {"post": "yes", "delete_reason": "duplicate"},
    )
    assert response.status_code == 403
    assert Treatment.objects.filter(pk=treatment.pk).exists()


def test_an_administrator_deletes_only_with_a_reason(client, administrator, nurse, treatment):
    contact = services.record_create(
        FollowUpContact,
        user=nurse,
        treatment=treatment,
        date=DAY0 + timedelta(days=28),
        disease_status="remission",
    )
    client.force_login(administrator)
    url = reverse("admin:registry_followupcontact_delete", args=[contact.pk])
    client.post(url, {"post": "yes", "delete_reason": ""})
    assert FollowUpContact.objects.filter(pk=contact.pk).exists()
    client.post(url, {"post": "yes", "delete_reason": "entered on the wrong patient"})
    assert not FollowUpContact.objects.filter(pk=contact.pk).exists()
    assert FollowUpContact.history.filter(
        history_type="-", history_change_reason="entered on the wrong patient"
    ).exists()


def test_the_audit_cannot_be_reverted_through_the_admin(client, administrator, treatment, nurse):
    services.record_update(treatment, user=nurse, reason="fix", bm_blast_pct=30)
    first = treatment.history.earliest()
    client.force_login(administrator)
    url = reverse("admin:registry_treatment_simple_history", args=[treatment.pk, first.pk])
    client.post(url, change_form_data(treatment, bm_blast_pct="40", change_reason="revert"))
    treatment.refresh_from_db()
    assert treatment.bm_blast_pct == 30
    assert treatment.history.count() == 2  # no version was written by the attempt


@pytest.mark.parametrize(
    "url_name",
    [
        "admin:registry_patient_changelist",
        "admin:registry_treatment_changelist",
        "admin:registry_crsepisode_changelist",
        "admin:registry_dataqualityquery_changelist",
    ],
)
def test_admin_lists_use_a_constant_number_of_queries(
    client, data_manager, nurse, site, django_assert_max_num_queries, url_name
):
    for n in range(12):
        patient = factories.patient(user=nurse, site=site, study_id=f"Q{n:03d}")
        treatment = factories.treatment(user=nurse, patient=patient)
        services.record_create(
            CrsEpisode,
            user=nurse,
            treatment=treatment,
            onset=DAY0,
            max_temperature_c=39,
            hypotension=False,
            oxygen="none",
        )
    client.force_login(data_manager)
    with django_assert_max_num_queries(15):
        assert client.get(reverse(url_name)).status_code == 200
