"""Data-quality queries open when the data shows a problem and close when it is fixed."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from registry import quality, services
from registry.models import CrsEpisode, DataQualityQuery, FollowUpContact, QueryKind, Transplant
from tests import factories
from tests.factories import DAY0

pytestmark = pytest.mark.django_db


def open_kinds(patient) -> set[str]:
    return set(
        DataQualityQuery.objects.filter(patient=patient, is_open=True).values_list(
            "kind", flat=True
        )
    )


def test_a_missing_baseline_opens_a_query_that_closes_when_it_is_entered(nurse, patient):
    treatment = factories.treatment(user=nurse, patient=patient, bm_blast_pct=None)
    assert QueryKind.BASELINE_INCOMPLETE in open_kinds(patient)
    services.record_update(treatment, user=nurse, reason="marrow report arrived", bm_blast_pct=45)
    assert QueryKind.BASELINE_INCOMPLETE not in open_kinds(patient)
    closed = DataQualityQuery.objects.get(kind=QueryKind.BASELINE_INCOMPLETE)
    assert closed.closed_at is not None and closed.closed_by is None


def test_crs_status_unknown_after_day_30_opens_a_query(nurse, treatment):
    assert QueryKind.CRS_STATUS_UNKNOWN in open_kinds(treatment.patient)
    services.record_create(
        CrsEpisode,
        user=nurse,
        treatment=treatment,
        onset=DAY0,
        max_temperature_c=38.4,
        hypotension=False,
        oxygen="none",
    )
    assert QueryKind.CRS_STATUS_UNKNOWN not in open_kinds(treatment.patient)


def test_overdue_visits_and_loss_to_follow_up_depend_on_today(nurse, treatment, settings):
    services.record_create(
        FollowUpContact,
        user=nurse,
        treatment=treatment,
        date=DAY0 + timedelta(days=28),
        disease_status="remission",
    )
    quality.refresh_patient(treatment.patient, today=DAY0 + timedelta(days=100))
    assert QueryKind.FOLLOW_UP_OVERDUE not in open_kinds(treatment.patient)
    quality.refresh_patient(treatment.patient, today=DAY0 + timedelta(days=121))
    assert QueryKind.FOLLOW_UP_OVERDUE in open_kinds(treatment.patient)
    quality.refresh_patient(treatment.patient, today=DAY0 + timedelta(days=28 + 181))
    assert QueryKind.LOST_TO_FOLLOW_UP in open_kinds(treatment.patient)


def test_a_query_closed_by_a_data_manager_stays_closed(nurse, data_manager, patient):
    factories.treatment(user=nurse, patient=patient, bm_blast_pct=None)
    query = DataQualityQuery.objects.get(kind=QueryKind.BASELINE_INCOMPLETE)
    quality.query_close(query, user=data_manager, reason="no marrow done: extramedullary only")
    quality.refresh_patient(patient, today=date(2024, 1, 1))
    query.refresh_from_db()
    assert not query.is_open and query.closed_by == data_manager


def test_a_last_contact_before_the_latest_event_opens_a_query(nurse, treatment):
    services.record_create(
        FollowUpContact,
        user=nurse,
        treatment=treatment,
        date=DAY0 + timedelta(days=28),
        disease_status="remission",
    )
    services.record_create(
        Transplant, user=nurse, treatment=treatment, date=DAY0 + timedelta(days=60), type="ucbt"
    )
    assert QueryKind.CONTACT_BEFORE_EVENT in open_kinds(treatment.patient)


def test_the_nightly_task_refreshes_every_patient_and_is_scheduled_in_the_database(
    nurse, treatment, settings
):
    from django_celery_beat.models import PeriodicTask

    from registry.tasks import refresh_quality_queries

    services.record_create(
        FollowUpContact,
        user=nurse,
        treatment=treatment,
        date=DAY0 + timedelta(days=28),
        disease_status="remission",
    )
    settings.IMMUNOREG_TODAY = (DAY0 + timedelta(days=400)).isoformat()
    assert refresh_quality_queries.apply().get() == 1
    assert QueryKind.LOST_TO_FOLLOW_UP in open_kinds(treatment.patient)
    schedule = PeriodicTask.objects.get(task="registry.tasks.refresh_quality_queries")
    assert schedule.enabled and schedule.crontab.hour == "1"
