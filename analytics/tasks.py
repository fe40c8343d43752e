"""Celery entry points of the analytics: thin, each calls analytics.services."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError
from kombu.exceptions import OperationalError as BrokerOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from analytics import services
from analytics.models import Trigger
from analytics.report.services import monthly_archive
from registry.clock import today

# Transient failures of the database or the broker: worth another try a little later.
TRANSIENT = (OperationalError, BrokerOperationalError, RedisConnectionError, RedisTimeoutError)


@shared_task(
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=5,
    acks_late=True,
)
def recompute_analytics(
    trigger: str = Trigger.ON_DEMAND,
    site_code: str | None = None,
    user_id: int | None = None,
    snapshot_id: int | None = None,
) -> int:
    """One scope now: the snapshot claimed by "recompute now", or a new one."""
    return services.snapshot_recompute(
        trigger=trigger, site_code=site_code, user_id=user_id, snapshot_id=snapshot_id
    ).pk


@shared_task(
    autoretry_for=(*TRANSIENT, services.ComputationRunning),
    retry_backoff=60,
    retry_backoff_max=1800,
    max_retries=8,
    acks_late=True,
)
def nightly_analytics() -> list[int]:
    """Nightly at 02:00 (django-celery-beat): the whole registry and every site, skipping the
    scopes whose data did not change; waits its turn if a computation is running."""
    return [snapshot.pk for snapshot in services.snapshots_refresh_all(trigger=Trigger.NIGHTLY)]


@shared_task(autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5, acks_late=True)
def monthly_reports() -> list[int]:
    """On the 1st of each month: archive last month's reports for every scope."""
    return [report.pk for report in monthly_archive(today=today())]
