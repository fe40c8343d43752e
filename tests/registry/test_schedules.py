"""The periodic work survives an emptied database (CI failed when a test's flush removed it)."""

import pytest
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from registry.schedules import SCHEDULES, ensure_schedules


def scheduled_tasks() -> set[str]:
    return set(PeriodicTask.objects.filter(enabled=True).values_list("task", flat=True))


@pytest.mark.django_db(transaction=True)
def test_every_schedule_is_back_after_the_database_is_flushed():
    call_command("flush", interactive=False, verbosity=0)
    assert scheduled_tasks() == {schedule.task for schedule in SCHEDULES}


@pytest.mark.django_db
def test_the_schedules_the_migrations_made_are_the_declared_ones_with_their_times():
    nightly = PeriodicTask.objects.get(task="registry.tasks.refresh_quality_queries")
    assert (nightly.crontab.hour, nightly.crontab.minute) == ("1", "30")
    outbox = PeriodicTask.objects.get(task="registry.tasks.dispatch_outbox")
    assert (outbox.interval.every, outbox.interval.period) == (1, "minutes")
    assert PeriodicTask.objects.count() == len(SCHEDULES)


@pytest.mark.django_db
def test_a_schedule_an_administrator_disabled_stays_disabled_and_a_deleted_one_comes_back():
    PeriodicTask.objects.filter(task="analytics.tasks.nightly_analytics").update(enabled=False)
    PeriodicTask.objects.filter(task="analytics.tasks.monthly_reports").delete()
    ensure_schedules()
    assert not PeriodicTask.objects.get(task="analytics.tasks.nightly_analytics").enabled
    monthly = PeriodicTask.objects.get(task="analytics.tasks.monthly_reports")
    assert (monthly.crontab.day_of_month, monthly.crontab.hour) == ("1", "3")
    assert PeriodicTask.objects.count() == len(SCHEDULES)
