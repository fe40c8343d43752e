"""No admin page shows its reader a link they may not follow: a read-only foreign key to an
admin they may not open (a snapshot's site, a log's user) and the authors in a history page
are text for a data manager, links for an administrator."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib import admin
from django.urls import reverse

from analytics import services as analytics
from analytics.models import Snapshot, Trigger
from registry import quality, services
from registry.clock import today
from registry.models import ExportLog, FollowUpContact, Treatment

pytestmark = pytest.mark.django_db
ADMIN_LINK = re.compile(r'href="(/admin/[^"#?]*)')


@pytest.fixture
def records(nurse, data_manager, site, patient, treatment):
    services.record_save(_contact(treatment), user=nurse, reason="")
    quality.refresh_patient(patient, today=today())
    analytics.snapshot_compute(site=site, trigger=Trigger.COMMAND)
    ExportLog.objects.create(user=data_manager, format="csv", identified=False, scope="AHP", rows=1)
    return patient


def _contact(treatment: Treatment) -> FollowUpContact:
    return FollowUpContact(
        treatment=treatment, date=treatment.day0 + timedelta(days=30), disease_status="remission"
    )


def pages_of_every_admin(client) -> list[str]:
    """The change and history page of the first record the reader sees in every admin."""
    urls = []
    for model, model_admin in admin.site._registry.items():
        request = client.get(reverse("admin:index")).wsgi_request
        if not model_admin.has_view_permission(request):
            continue
        first = model_admin.get_queryset(request).order_by("pk").first()
        if first is None:
            continue
        info = model._meta.app_label, model._meta.model_name
        urls.append(reverse("admin:{}_{}_change".format(*info), args=[first.pk]))
        urls.append(reverse("admin:{}_{}_history".format(*info), args=[first.pk]))
    return urls


@pytest.mark.parametrize("role", ["data_manager", "administrator"])
def test_every_admin_link_on_a_record_or_history_page_answers(client, users, records, role):
    user = next(u for r, u in users.items() if r.value == role)
    client.force_login(user)
    pages = pages_of_every_admin(client)
    assert any("snapshot" in url for url in pages)
    assert any("exportlog" in url for url in pages)
    assert any("dataqualityquery" in url for url in pages)
    refused = []
    answered: dict[str, int] = {}  # a link's answer does not depend on the page that shows it
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        for link in set(ADMIN_LINK.findall(response.content.decode())):
            if link.endswith("/logout/"):
                continue
            if link not in answered:
                answered[link] = client.get(link).status_code
            if answered[link] in (403, 404):
                refused.append((url, link))
    assert refused == []


def test_a_data_manager_reads_a_snapshots_site_and_a_logs_user_as_text(
    client, data_manager, records, site
):
    client.force_login(data_manager)
    snapshot = Snapshot.objects.get(site=site)
    page = client.get(reverse("admin:analytics_snapshot_change", args=[snapshot.pk]))
    assert site.code in page.content.decode()
    assert "/admin/registry/site/" not in page.content.decode()
    log = ExportLog.objects.get()
    page = client.get(reverse("admin:registry_exportlog_change", args=[log.pk]))
    assert "/admin/registry/user/" not in page.content.decode()
    # the patient's versions were written by the nurse: her name, not a link to the user admin
    history = client.get(reverse("admin:registry_patient_history", args=[records.pk]))
    assert records.history.first().history_user.username in history.content.decode()
    assert "/admin/registry/user/" not in history.content.decode()


def test_an_administrator_still_has_the_links(client, administrator, records, site):
    client.force_login(administrator)
    snapshot = Snapshot.objects.get(site=site)
    page = client.get(reverse("admin:analytics_snapshot_change", args=[snapshot.pk]))
    assert f"/admin/registry/site/{site.pk}/change/" in page.content.decode()
