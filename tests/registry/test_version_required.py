"""Every edit path requires the version the user read: an edit sent without it is refused with a
clear message and saves nothing (issue #13.1, #14.10: a form posted without its hidden version
field used to overwrite newer changes unseen)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import models
from django.urls import reverse
from rest_framework.test import APIClient

from registry import services
from registry.forms import MISSING_VERSION
from registry.models import (
    CarPersistence,
    CrsEpisode,
    Death,
    FollowUpContact,
    IcansEpisode,
    IecHsEpisode,
    Infection,
    IvigCourse,
    Patient,
    Relapse,
    ResponseAssessment,
    SecondCancer,
    Transplant,
    Treatment,
)
from registry.views import KINDS
from tests.factories import DAY0
from tests.registry.test_cross_record_rules import form_data

pytestmark = pytest.mark.django_db

API_BASENAMES = {
    Patient: "patient",
    Treatment: "treatment",
    CrsEpisode: "crs-episode",
    IcansEpisode: "icans-episode",
    ResponseAssessment: "response",
    Transplant: "transplant",
    FollowUpContact: "contact",
    Relapse: "relapse",
    Death: "death",
    Infection: "infection",
    IecHsEpisode: "iec-hs-episode",
    IvigCourse: "ivig-course",
    CarPersistence: "persistence-assessment",
    SecondCancer: "second-cancer",
}


@pytest.fixture
def records(nurse, treatment) -> dict[type[models.Model], models.Model]:
    """One saved record of every kind, at the nurse's site."""

    def create(model: type[models.Model], **fields: Any) -> models.Model:
        return services.record_create(model, user=nurse, treatment=treatment, **fields)

    made = {
        Patient: treatment.patient,
        Treatment: treatment,
        CrsEpisode: create(CrsEpisode, onset=DAY0 + timedelta(days=2), recorded_grade=1),
        IcansEpisode: create(IcansEpisode, onset=DAY0 + timedelta(days=4), recorded_grade=1),
        ResponseAssessment: create(
            ResponseAssessment, date=DAY0 + timedelta(days=28), response="cr"
        ),
        Transplant: create(Transplant, date=DAY0 + timedelta(days=90), type="ucbt"),
        FollowUpContact: create(
            FollowUpContact, date=DAY0 + timedelta(days=60), disease_status="remission"
        ),
        Relapse: create(Relapse, date=DAY0 + timedelta(days=200), kind="morphologic"),
        Infection: create(
            Infection,
            onset=DAY0 + timedelta(days=12),
            site="bloodstream",
            organism_class="bacterial",
            ctcae_grade=3,
        ),
        IecHsEpisode: create(
            IecHsEpisode, onset=DAY0 + timedelta(days=9), ferritin_rise=True, recorded_grade=2
        ),
        IvigCourse: create(IvigCourse, start=DAY0 + timedelta(days=40)),
        CarPersistence: create(
            CarPersistence, date=DAY0 + timedelta(days=90), method="flow", detected=True
        ),
        SecondCancer: create(SecondCancer, date=DAY0 + timedelta(days=250), cancer_type="MDS"),
    }
    made[Death] = services.death_record(
        patient=treatment.patient, user=nurse, date=DAY0 + timedelta(days=300), cause="disease"
    )
    return made


def saved_state(record: models.Model) -> tuple[dict[str, Any], int]:
    """The record's row as saved, and how many history rows it has."""
    model = type(record)
    row = model.objects.filter(pk=record.pk).values().get()
    return row, model.history.filter(id=record.pk).count()


def test_a_nurses_edit_posted_without_its_version_is_refused_and_saves_nothing(
    client, nurse, records
):
    client.force_login(nurse)
    for kind_name, kind in KINDS.items():
        record = records[kind.model]
        before = saved_state(record)
        url = reverse("record-edit", args=[kind_name, record.pk])
        data = form_data(client.get(url).context["form"], {"change_reason": "typo"})
        assert data.pop("edited_version") == record.version, kind_name

        response = client.post(url, data)

        assert response.status_code == 200, kind_name
        assert str(MISSING_VERSION) in response.context["form"].non_field_errors(), kind_name
        assert str(MISSING_VERSION) in response.content.decode(), kind_name
        assert saved_state(record) == before, kind_name
        saved = client.post(url, data | {"edited_version": record.version})
        assert saved.status_code == 302, kind_name


def admin_form_data(response) -> dict[str, Any]:
    """What the admin's change page sends back as it is, with its inlines' management forms."""
    data = form_data(response.context["adminform"].form, {})
    for inline in response.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        data |= {
            management.add_prefix(name): management[name].value() for name in management.fields
        }
    return data


def test_an_admin_edit_posted_without_its_version_is_refused_and_saves_nothing(
    client, data_manager, records
):
    client.force_login(data_manager)
    for model, record in records.items():
        before = saved_state(record)
        url = reverse(f"admin:registry_{model._meta.model_name}_change", args=[record.pk])
        data = admin_form_data(client.get(url)) | {"change_reason": "typo"}
        assert data.pop("edited_version") == record.version, model

        response = client.post(url, data)

        assert response.status_code == 200, model
        assert str(MISSING_VERSION) in response.content.decode(), model
        assert saved_state(record) == before, model
        saved = client.post(url, data | {"edited_version": record.version})
        assert saved.status_code == 302, model


def test_an_api_update_without_its_version_is_refused_and_saves_nothing(nurse, records):
    client = APIClient()
    client.force_authenticate(nurse)
    for model, record in records.items():
        before = saved_state(record)
        url = reverse(f"api:{API_BASENAMES[model]}-detail", args=[record.pk])
        body = {
            key: value
            for key, value in client.get(url).json().items()
            if key not in ("id", "version", "created_at", "updated_at")
        }
        for method in (client.put, client.patch):
            response = method(url, body | {"reason": "typo"}, format="json")

            assert response.status_code == 400, (model, method)
            assert "version" in response.json(), (model, method)
            assert saved_state(record) == before, (model, method)


def test_a_stale_version_in_the_nurses_form_is_refused_and_keeps_the_newer_edit(
    client, nurse, treatment
):
    client.force_login(nurse)
    url = reverse("record-edit", args=["treatment", treatment.pk])
    data = form_data(client.get(url).context["form"], {"change_reason": "typo"})
    services.record_update(
        treatment, user=nurse, reason="marrow report", version=treatment.version, bm_blast_pct=55
    )

    response = client.post(url, data | {"bm_blast_pct": "12"})

    assert response.status_code == 200
    assert "changed by someone else" in response.content.decode()
    treatment.refresh_from_db()
    assert (treatment.bm_blast_pct, treatment.version) == (55, 2)


def test_a_new_record_needs_no_version(client, nurse, treatment):
    client.force_login(nurse)
    response = client.post(
        reverse("record-new", args=[treatment.pk, "relapse"]),
        {
            "date": (DAY0 + timedelta(days=100)).isoformat(),
            "kind": "morphologic",
            "cd19_status": "unknown",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Relapse.objects.count() == 1
