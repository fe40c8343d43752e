"""`/healthz`: database, broker, latest snapshot age, outbox backlog; nothing about patients."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import OperationalError
from django.test import override_settings
from django.utils import timezone

from analytics.models import Snapshot
from registry import outbox
from registry.models import OutboxMessage
from tests.deploy.conftest import free_port

KEYS = {"status", "database", "broker", "latest_snapshot", "outbox"}


def test_the_health_check_answers_anyone_with_counts_and_ages_only(client, patient):
    answer = client.get("/healthz")

    report = answer.json()
    assert answer.status_code == 200 and set(report) == KEYS
    assert report["status"] == "ok" and report["database"] == "ok"
    assert patient.study_id not in answer.content.decode()
    assert answer["Cache-Control"] == "no-store"


def test_the_age_of_the_latest_complete_snapshot_is_reported(client, db):
    finished = timezone.now() - timedelta(hours=40)
    Snapshot.objects.create(
        trigger="command",
        status="complete",
        started_at=finished,
        heartbeat_at=finished,
        finished_at=finished,
    )

    latest = client.get("/healthz").json()["latest_snapshot"]

    assert 40 * 3600 <= latest["age_seconds"] < 40 * 3600 + 60
    assert latest["stale"] is True


def test_work_waiting_in_the_outbox_is_counted(client, patient):
    OutboxMessage.objects.all().delete()
    outbox.patient_changed(patient)  # in the test's transaction: never sent

    assert client.get("/healthz").json()["outbox"]["pending"] == 1


@override_settings(
    CELERY_TASK_ALWAYS_EAGER=False, CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0"
)
def test_a_broker_that_does_not_answer_makes_the_app_degraded_not_down(client, db):
    answer = client.get("/healthz")

    assert answer.status_code == 200
    assert (answer.json()["status"], answer.json()["broker"]) == ("degraded", "unavailable")


def test_a_database_that_does_not_answer_makes_the_check_fail(client, db, monkeypatch):
    def unreachable():
        raise OperationalError("connection refused")

    monkeypatch.setattr("registry.health.latest_snapshot_at", unreachable)

    answer = client.get("/healthz")

    assert answer.status_code == 503
    assert answer.json()["database"] == "unavailable"


@pytest.mark.parametrize("path", ["/healthz", "/api/v1/patients/", "/patients/"])
def test_an_unreachable_database_gives_a_clean_503_everywhere(client, nurse, monkeypatch, path):
    def unreachable(*args, **kwargs):
        raise OperationalError("could not connect to server at 10.0.0.5")

    monkeypatch.setattr("registry.health.check_database", unreachable)
    monkeypatch.setattr("registry.views.patient_list", unreachable)
    monkeypatch.setattr("registry.api.views.records_visible_to", unreachable)
    client.raise_request_exception = False
    client.force_login(nurse)

    answer = client.get(path)

    assert answer.status_code == 503
    assert "10.0.0.5" not in answer.content.decode()
    assert answer["Retry-After"] == "30"


@override_settings(IMMUNOREG_OUTBOX_RESEND_AFTER_SECONDS=600, IMMUNOREG_OUTBOX_MAX_SENDS=3)
@pytest.mark.parametrize(("sends", "counted"), [(1, "overdue"), (3, "given_up")])
def test_work_the_broker_took_but_never_did_makes_the_app_degraded(client, patient, sends, counted):
    OutboxMessage.objects.all().delete()
    sent_at = timezone.now() - timedelta(minutes=11)
    OutboxMessage.objects.create(
        action="refresh_patient_queries",
        key=f"patient:{patient.pk}",
        arguments={"patient_id": patient.pk},
        sent_at=sent_at,
        sends=sends,
        attempts=sends,
    )

    answer = client.get("/healthz")

    report = answer.json()
    assert answer.status_code == 200 and report["status"] == "degraded"
    assert report["outbox"]["pending"] == 0
    assert {report["outbox"]["overdue"], report["outbox"]["given_up"]} == {0, 1}
    assert report["outbox"][counted] == 1
