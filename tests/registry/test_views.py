"""The research nurses' pages, through the test client (the browser tests walk them too)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse

from registry import services
from registry.clock import today
from registry.domain.vocabulary import Role
from registry.models import CrsEpisode, FollowUpContact, Treatment
from tests import factories
from tests.factories import DAY0

pytestmark = pytest.mark.django_db


def test_anonymous_visitors_are_sent_to_the_login_page(client):
    response = client.get(reverse("worklist"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_a_nurse_lands_on_the_worklist_with_name_role_and_sites(client, nurse):
    client.force_login(nurse)
    response = client.get(reverse("home"), follow=True)
    page = response.content.decode()
    assert response.redirect_chain[-1][0] == reverse("worklist")
    assert "Research nurse" in page and "AHP" in page and "nurse" in page


def test_a_visit_due_now_is_on_the_worklist_with_a_link_to_its_form(client, nurse, site):
    patient = factories.patient(
        user=nurse, site=site, study_id="DUE-1", diagnosis_date=today() - timedelta(days=300)
    )
    treatment = factories.treatment(user=nurse, patient=patient, day0=today() - timedelta(days=100))
    client.force_login(nurse)
    page = client.get(reverse("worklist")).content.decode()
    assert "DUE-1" in page and "Day 100" in page
    assert reverse("record-new", args=[treatment.pk, "contact"]) in page


def test_the_patient_list_filters_and_uses_a_constant_number_of_queries(
    client, nurse, site, django_assert_num_queries
):
    for n in range(30):
        patient = factories.patient(user=nurse, site=site, study_id=f"L{n:03d}")
        factories.treatment(user=nurse, patient=patient, arm="car_t" if n % 2 else "blinatumomab")
    client.force_login(nurse)
    url = reverse("patients")
    client.get(url)  # warm the session
    with django_assert_num_queries(6):
        small = client.get(url, {"arm": "car_t", "study_id": "L00"})
    with django_assert_num_queries(6):
        large = client.get(url)
    assert "L001" in small.content.decode() and "L002" not in small.content.decode()
    assert "Page 1 of 2 (30 patients)" in large.content.decode()


def test_another_sites_patient_is_a_404(client, nurse, administrator, other_site):
    elsewhere = factories.patient(user=administrator, site=other_site, study_id="X-1")
    client.force_login(nurse)
    assert client.get(reverse("patient-detail", args=[elsewhere.pk])).status_code == 404
    assert client.get(reverse("record-edit", args=["patient", elsewhere.pk])).status_code == 404


def test_a_pi_reads_the_patient_page_but_cannot_open_a_form(client, users, treatment):
    pi = users[Role.PI]
    client.force_login(pi)
    assert client.get(reverse("patient-detail", args=[treatment.patient.pk])).status_code == 200
    response = client.get(reverse("record-new", args=[treatment.pk, "contact"]))
    assert response.status_code == 403


def test_the_crs_grade_appears_as_the_findings_are_entered(client, nurse):
    client.force_login(nurse)
    response = client.post(
        reverse("crs-grade"),
        {
            "max_temperature_c": "39.2",
            "hypotension": "true",
            "vasopressors": "1",
            "oxygen": "low_flow",
            "o2_flow_l_min": "3",
        },
    )
    assert "Grade 3" in response.content.decode()


def test_the_icans_grade_appears_as_the_findings_are_entered(client, nurse):
    client.force_login(nurse)
    response = client.post(reverse("icans-grade"), {"ice_score": "5", "consciousness": "awake"})
    assert "Grade 2" in response.content.decode()


def test_a_crs_episode_saved_from_its_form_carries_the_derived_grade(client, nurse, treatment):
    client.force_login(nurse)
    response = client.post(
        reverse("record-new", args=[treatment.pk, "crs"]),
        {
            "onset": (DAY0 + timedelta(days=3)).isoformat(),
            "max_temperature_c": "39.0",
            "hypotension": "true",
            "vasopressors": "2",
            "oxygen": "none",
            "grading_system": "astct2019",
            "tocilizumab_doses": "1",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert CrsEpisode.objects.get().derived_grade == 4


def test_a_contact_after_death_is_refused_next_to_the_date(client, nurse, treatment):
    services.death_record(
        patient=treatment.patient, user=nurse, date=DAY0 + timedelta(days=50), cause="disease"
    )
    client.force_login(nurse)
    response = client.post(
        reverse("record-new", args=[treatment.pk, "contact"]),
        {
            "date": (DAY0 + timedelta(days=60)).isoformat(),
            "disease_status": "remission",
            "b_cell_aplasia": "unknown",
        },
    )
    assert response.status_code == 200
    assert "cannot be dated after the death" in response.content.decode()
    assert not FollowUpContact.objects.exists()


def test_editing_asks_for_a_reason_and_the_history_keeps_it(client, nurse, treatment):
    client.force_login(nurse)
    url = reverse("record-edit", args=["treatment", treatment.pk])
    form = client.get(url).context["form"]
    data = {name: ("" if value is None else value) for name, value in form.initial.items()}
    data |= {"bm_blast_pct": "35", "day0": DAY0.isoformat(), "edited_version": treatment.version}
    refused = client.post(url, data)
    assert "Give a reason for the change" in refused.content.decode()
    accepted = client.post(url, data | {"change_reason": "marrow report corrected"})
    assert accepted.status_code == 302
    assert (
        Treatment.objects.get().history.first().history_change_reason == "marrow report corrected"
    )


def test_the_language_choice_is_remembered_for_the_user(client, nurse):
    client.force_login(nurse)
    client.post(reverse("set-language"), {"language": "zh-hans", "next": "/worklist/"})
    nurse.refresh_from_db()
    assert nurse.language == "zh-hans"
    client.logout()
    client.force_login(nurse)
    assert client.get(reverse("worklist")).content.decode().count('lang="zh-hans"') == 1
