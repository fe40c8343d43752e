"""The worklist in a cache the processes share (issue #15, point 3): at 1,000,000 patients each
gunicorn process computed a 200,000-patient site afresh (seconds) because each kept its own
cache. In production the cache is Redis (CACHE_URL); the worker computes every site's worklist
for the new day after midnight (registry.tasks.warm_worklists), and a web process then reads
the lines without computing them. These tests use the machine's Redis, under a key prefix of
their own."""

from __future__ import annotations

import threading
import uuid
from datetime import date, timedelta

import pytest
from django.core.cache import cache, caches
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from registry import selectors, services, tasks
from registry.models import FollowUpContact, Patient, Treatment
from registry.selectors import warm_worklists, worklist_for, worklist_sites
from tests.registry.test_selectors_worklist import as_tuples, python_worklist

pytestmark = pytest.mark.django_db

TODAY = date(2024, 10, 31)


@pytest.fixture
def shared_cache():
    """Django's Redis cache on the machine's Redis (database 1, as production uses it), under a
    prefix no other test run shares; its keys are deleted afterwards."""
    location = "redis://127.0.0.1:6379/1"
    prefix = f"test-{uuid.uuid4().hex}"
    with override_settings(
        CACHES={
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": location,
                "KEY_PREFIX": prefix,
            }
        }
    ):
        yield caches["default"]
        client = caches["default"]._cache.get_client(write=True)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)


def a_site_with_visits_due(nurse, site, count: int = 6) -> None:
    for number in range(count):
        patient = services.record_create(
            Patient, user=nurse, site=site, study_id=f"{site.code}-{number:03d}", sex="F",
            year_of_birth=1980,
        )  # fmt: skip
        services.record_create(
            Treatment, user=nurse, patient=patient, arm="car_t",
            day0=TODAY - timedelta(days=20 + 40 * number),
        )  # fmt: skip


def test_a_warmed_worklist_is_read_by_another_process_without_computing(
    shared_cache, nurse, site, settings
):
    settings.IMMUNOREG_TODAY = TODAY.isoformat()
    a_site_with_visits_due(nurse, site)
    assert type(caches["default"]).__name__ == "RedisCache"

    assert tasks.warm_worklists() >= 1  # the worker, after midnight

    # Another web process: a connection of its own to Redis, nothing in its memory.
    caches["default"].close()
    del caches["default"]
    sites = worklist_sites(user=nurse)
    with CaptureQueriesContext(connection) as queries:
        worklist = worklist_for(user=nurse, today=TODAY, sites=sites)

    assert len(queries) == 0, [q["sql"] for q in queries]  # the lines came from Redis
    assert as_tuples(worklist) == as_tuples(python_worklist(user=nurse, today=TODAY))
    assert worklist.due or worklist.overdue


def test_after_a_save_the_shared_worklist_is_brought_up_to_date(shared_cache, nurse, site):
    a_site_with_visits_due(nurse, site)
    warm_worklists(today=TODAY)
    treatment = Treatment.objects.filter(patient__site=site).order_by("pk").first()

    services.record_create(
        FollowUpContact, user=nurse, treatment=treatment, date=TODAY, disease_status="remission"
    )
    caches["default"].close()
    del caches["default"]

    assert as_tuples(worklist_for(user=nurse, today=TODAY)) == as_tuples(
        python_worklist(user=nurse, today=TODAY)
    )


def test_warming_leaves_a_current_site_as_it_is(shared_cache, nurse, site):
    a_site_with_visits_due(nurse, site)
    warm_worklists(today=TODAY)

    with CaptureQueriesContext(connection) as queries:
        warm_worklists(today=TODAY)

    assert len(queries) == 1  # the sites and their data versions, nothing computed


def test_a_site_being_computed_by_another_request_is_waited_for_not_computed_again(nurse, site):
    """On a cold cache (no warm-up yet, a site whose data were replaced as a whole) a dozen
    requests asking for a 200,000-patient site at once each took as long as all of them."""
    a_site_with_visits_due(nurse, site)
    sites = worklist_sites(user=nurse)
    key = f"worklist-site:{site.pk}:{TODAY.isoformat()}"
    (mine,) = sites
    lines = selectors._site_lines_afresh([mine.pk], today=TODAY)[mine.pk]
    cache.add(f"{key}:computing", True, 60)  # another request is computing the site

    def the_other_request_is_done():
        cache.set(key, (mine.code, mine.token, mine.version, lines), 60)
        cache.delete(f"{key}:computing")

    done = threading.Timer(0.5, the_other_request_is_done)
    done.start()
    with CaptureQueriesContext(connection) as queries:
        worklist = worklist_for(user=nurse, today=TODAY, sites=sites)
    done.join()

    assert len(queries) == 0, [q["sql"] for q in queries]
    assert as_tuples(worklist) == as_tuples(python_worklist(user=nurse, today=TODAY))


def test_a_request_computes_the_site_itself_when_the_other_never_finishes(nurse, site, monkeypatch):
    a_site_with_visits_due(nurse, site)
    monkeypatch.setattr(selectors, "WORKLIST_WAIT_SECONDS", 0.3)
    cache.add(f"worklist-site:{site.pk}:{TODAY.isoformat()}:computing", True, 60)  # its worker died

    worklist = worklist_for(user=nurse, today=TODAY)

    assert as_tuples(worklist) == as_tuples(python_worklist(user=nurse, today=TODAY))
    assert worklist.due or worklist.overdue
