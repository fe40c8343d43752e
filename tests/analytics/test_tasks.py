"""The Celery tasks (run eagerly here; tests/analytics/test_integration.py runs a real worker):
a nightly schedule at 02:00, "recompute now" without double queueing, retries on transient
errors."""

from __future__ import annotations

import pytest
from django.db import OperationalError
from django_celery_beat.models import PeriodicTask
from kombu.exceptions import OperationalError as BrokerOperationalError

from analytics import services, tasks
from analytics.models import Snapshot, Stage, Status, Trigger
from config.celery import app as celery_app
from registry import demo
from registry.models import Site

pytestmark = pytest.mark.django_db


@pytest.fixture
def eager(monkeypatch):
    """Run tasks in this process even where CI configures a broker: these tests are about the
    flow around the task (test_integration.py sends tasks to a real worker)."""
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)


@pytest.fixture
def cohort(users):
    return demo.seed_scaled(12)


def test_the_nightly_computation_is_scheduled_at_two_in_the_database_so_admins_can_edit_it():
    task = PeriodicTask.objects.get(task="analytics.tasks.nightly_analytics")
    assert task.enabled
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("0", "2", "*")
    assert task.task in celery_app.tasks


def test_the_nightly_task_computes_every_scope(cohort):
    ids = tasks.nightly_analytics.apply().get()
    assert len(ids) == 1 + Site.objects.count()
    assert set(Snapshot.objects.filter(pk__in=ids).values_list("trigger", flat=True)) == {
        Trigger.NIGHTLY
    }


def test_the_task_runs_the_snapshot_claimed_for_it(cohort, data_manager):
    claimed = services.snapshot_claim(site=None, trigger=Trigger.ON_DEMAND, user=data_manager)
    result = tasks.recompute_analytics.apply(kwargs={"snapshot_id": claimed.pk}).get()
    claimed.refresh_from_db()
    assert result == claimed.pk and claimed.status == Status.COMPLETE
    assert claimed.requested_by == data_manager


def test_the_task_computes_a_named_site_when_nothing_was_claimed(cohort):
    pk = tasks.recompute_analytics.apply(
        kwargs={"trigger": Trigger.COMMAND, "site_code": "AHP"}
    ).get()
    assert Snapshot.objects.get(pk=pk).site.code == "AHP"


def test_a_transient_database_error_is_retried_and_the_retry_completes(cohort, monkeypatch):
    real_frames = services.analysis_frames
    calls = []

    def flaky(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return real_frames(**kwargs)

    monkeypatch.setattr(services, "analysis_frames", flaky)
    claimed = services.snapshot_claim(site=None, trigger=Trigger.ON_DEMAND)
    # throw=False: as a worker does, catch the retry instead of propagating it to the caller.
    result = tasks.recompute_analytics.apply(kwargs={"snapshot_id": claimed.pk}, throw=False)
    pk = result.get()
    claimed.refresh_from_db()
    assert len(calls) == 2
    assert claimed.status == Status.FAILED and "OperationalError" in claimed.error
    assert Snapshot.objects.get(pk=pk).status == Status.COMPLETE
    assert Snapshot.objects.latest_complete().pk == pk


def test_recompute_now_claims_once_and_a_second_request_is_refused_not_queued(
    cohort, data_manager, monkeypatch
):
    queued = []
    monkeypatch.setattr(tasks.recompute_analytics, "delay", lambda **kw: queued.append(kw))
    site = Site.objects.get(code="AHP")
    first = services.recompute_request(user=data_manager, site=site)
    with pytest.raises(services.ComputationRunning, match="already running since"):
        services.recompute_request(user=data_manager, site=site)
    assert queued == [{"trigger": Trigger.ON_DEMAND, "snapshot_id": first.pk}]
    assert first.status == Status.RUNNING and first.stage == Stage.QUEUED


def test_a_broker_that_refuses_the_message_releases_the_claim(
    cohort, data_manager, monkeypatch, eager
):
    def refuse(**kwargs):
        raise BrokerOperationalError("Error 111 connecting to redis. Connection refused.")

    site = Site.objects.get(code="AHP")
    with monkeypatch.context() as broker_down:
        broker_down.setattr(tasks.recompute_analytics, "delay", refuse)
        refused = services.recompute_request(user=data_manager, site=site)
    assert refused.status == Status.FAILED and "Connection refused" in refused.error
    assert services.recompute_request(user=data_manager, site=site).status == Status.COMPLETE


def test_recompute_now_runs_in_process_when_celery_is_eager(cohort, data_manager, eager):
    snapshot = services.recompute_request(user=data_manager, site=Site.objects.get(code="AHP"))
    assert snapshot.status == Status.COMPLETE and snapshot.trigger == Trigger.ON_DEMAND


def test_the_tasks_retry_on_database_and_broker_errors():
    for task in (tasks.recompute_analytics, tasks.nightly_analytics):
        assert {OperationalError, BrokerOperationalError} <= set(task.autoretry_for)
        assert task.acks_late
    assert services.ComputationRunning in tasks.nightly_analytics.autoretry_for
