"""The admin's data-quality query list is the data manager's work: the open queries, a page at
a time; the closed ones (most of them, closed by the registry itself) one click away."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from registry.models import DataQualityQuery, QueryKind
from tests import factories

pytestmark = pytest.mark.django_db
URL = reverse("admin:registry_dataqualityquery_changelist")


def queries(patient, *, open_: int, closed: int) -> None:
    """Queries as the registry leaves them: rows written directly, the condition each stands
    for told apart by its key (what opens and closes them is tested in test_quality.py)."""
    now = timezone.now()
    DataQualityQuery.objects.bulk_create(
        [
            DataQualityQuery(
                patient=patient,
                kind=QueryKind.FOLLOW_UP_OVERDUE,
                key=f"{'open' if n < open_ else 'closed'}-{n}",
                message=f"query {n}",
                is_open=n < open_,
                opened_at=now - timedelta(days=n),
                closed_at=None if n < open_ else now,
            )
            for n in range(open_ + closed)
        ]
    )


def listed(response) -> tuple[int, int]:
    """(open, closed) queries on the page."""
    rows = list(response.context["cl"].result_list)
    return sum(q.is_open for q in rows), sum(not q.is_open for q in rows)


def test_the_list_shows_the_open_queries_by_default(client, data_manager, patient):
    queries(patient, open_=3, closed=7)
    client.force_login(data_manager)
    response = client.get(URL)
    assert response.status_code == 200
    assert listed(response) == (3, 0)
    assert response.context["cl"].result_count == 3


def test_the_data_manager_can_switch_to_the_closed_queries_or_all_of_them(
    client, data_manager, patient
):
    queries(patient, open_=3, closed=7)
    client.force_login(data_manager)
    assert listed(client.get(URL, {"status": "closed"})) == (0, 7)
    assert listed(client.get(URL, {"status": "all"})) == (3, 7)
    page = client.get(URL).content.decode()
    # The filter offers the three choices, "Open" selected.
    offered = re.findall(r'<li( class="selected")?>\s*<a href="\?status=(\w+)"', page)
    assert offered == [(' class="selected"', "open"), ("", "closed"), ("", "all")]


def test_the_list_is_paged_fifty_at_a_time(client, data_manager, patient):
    queries(patient, open_=120, closed=5)
    client.force_login(data_manager)
    first = client.get(URL)
    assert listed(first) == (50, 0)
    assert first.context["cl"].result_count == 120
    third = client.get(URL, {"p": "3"})
    assert listed(third) == (20, 0)


def test_the_list_costs_the_same_few_queries_whatever_its_length(
    client, data_manager, nurse, site, django_assert_max_num_queries
):
    for n in range(20):
        patient = factories.patient(user=nurse, site=site, study_id=f"Q{n:03d}")
        queries(patient, open_=3, closed=3)
    client.force_login(data_manager)
    for status in ("open", "closed", "all"):
        with django_assert_max_num_queries(15):
            assert client.get(URL, {"status": status}).status_code == 200


def test_another_sites_queries_stay_out_of_every_choice(
    client, data_manager, nurse, other_site, patient
):
    stranger = factories.UserFactory(username="other", sites=[other_site])
    theirs = factories.patient(user=stranger, site=other_site, study_id="X001")
    queries(patient, open_=1, closed=1)
    queries(theirs, open_=2, closed=2)
    client.force_login(data_manager)
    assert listed(client.get(URL, {"status": "all"})) == (1, 1)
