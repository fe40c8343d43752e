"""Snapshots in the admin: listed for data managers and administrators, never changed there."""

from __future__ import annotations

import pytest
from django.urls import reverse

from analytics import services
from analytics.models import Snapshot, Trigger
from registry.domain.vocabulary import Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def snapshot(users):
    return services.snapshot_compute(site=None, trigger=Trigger.COMMAND)


def test_an_administrator_can_read_a_snapshot_in_the_admin(client, administrator, snapshot):
    client.force_login(administrator)
    listing = client.get(reverse("admin:analytics_snapshot_changelist"))
    detail = client.get(reverse("admin:analytics_snapshot_change", args=[snapshot.pk]))
    assert listing.status_code == 200 and snapshot.fingerprint in listing.content.decode()
    assert detail.status_code == 200 and "schema_version" in detail.content.decode()


def test_the_admin_cannot_add_change_or_delete_a_snapshot(client, administrator, snapshot):
    client.force_login(administrator)
    add = client.get(reverse("admin:analytics_snapshot_add"))
    change = client.post(
        reverse("admin:analytics_snapshot_change", args=[snapshot.pk]), {"error": "edited"}
    )
    delete = client.post(
        reverse("admin:analytics_snapshot_delete", args=[snapshot.pk]), {"post": "yes"}
    )
    assert add.status_code == 403 and change.status_code == 403 and delete.status_code == 403
    assert Snapshot.objects.get(pk=snapshot.pk).error == ""


def test_a_data_manager_sees_only_the_snapshots_of_their_scopes(client, data_manager, site):
    whole = services.snapshot_compute(site=None, trigger=Trigger.COMMAND)
    own = services.snapshot_compute(site=site, trigger=Trigger.COMMAND)
    client.force_login(data_manager)
    html = client.get(reverse("admin:analytics_snapshot_changelist")).content.decode()
    change = reverse("admin:analytics_snapshot_change", args=[own.pk])
    assert change in html
    assert reverse("admin:analytics_snapshot_change", args=[whole.pk]) not in html


def test_a_pi_has_no_admin_access_to_snapshots(client, users, snapshot):
    client.force_login(users[Role.PI])
    response = client.get(reverse("admin:analytics_snapshot_changelist"))
    assert response.status_code in (302, 403)
