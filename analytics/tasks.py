"""Celery entry points of the analytics: thin, each calls a service. At import they register
in analytics.queue how the services send them work (the services never import this module)."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.db import OperationalError
from kombu.exceptions import OperationalError as BrokerOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from analytics import queue, services
from analytics.models import RenderingFailure, Trigger
from analytics.report import services as report_services
from registry.clock import today

# Transient failures of the database or the broker: worth another try a little later.
TRANSIENT = (OperationalError, BrokerOperationalError, RedisConnectionError, RedisTimeoutError)
# While another computation runs, a queued one tries again every WAIT_SECONDS, this many times.
WAIT_SECONDS = 30
WAIT_TRIES = 40


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


@shared_task(bind=True, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5, acks_late=True)
def compute_missing_scope(self, site_code: str | None = None, user_id: int | None = None):
    """A scope someone opened before it was ever computed, as soon as no other computation
    runs (the nightly run computes it at the latest)."""
    try:
        snapshot = services.scope_compute_if_missing(site_code=site_code, user_id=user_id)
    except services.ComputationRunning as running:
        if self.request.is_eager:
            return None  # nothing to wait in: the nightly run computes it
        raise self.retry(exc=running, countdown=WAIT_SECONDS, max_retries=WAIT_TRIES) from None
    return snapshot.pk if snapshot else None


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


@shared_task(
    autoretry_for=(*TRANSIENT, OSError),
    retry_backoff=300,
    retry_backoff_max=6 * 3600,
    max_retries=8,
    acks_late=True,
)
def monthly_reports() -> list[int]:
    """On the 1st of each month: archive last month's reports for every scope. A full archive
    disk (OSError) is tried again up to 8 times, within 5 minutes at first, then less and less
    often (17 hours at most in all): the reports archived are kept, the others follow once
    there is room."""
    return [report.pk for report in report_services.monthly_archive(today=today())]


@shared_task(bind=True, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5, acks_late=True)
def render_report(self, rendering_id: int) -> int | None:
    """A report asked for on the reports page; waits while another computation runs."""
    try:
        return report_services.rendering_run(rendering_id)
    except services.ComputationRunning as running:
        if self.request.is_eager or self.request.retries >= WAIT_TRIES:
            report_services.rendering_failed(rendering_id, failure=RenderingFailure.BUSY)
            return None
        report_services.rendering_waiting(rendering_id, retry_in=timedelta(seconds=WAIT_SECONDS))
        raise self.retry(exc=running, countdown=WAIT_SECONDS, max_retries=WAIT_TRIES) from None


# Not acknowledged late, and dropped if not started within two minutes: a watchdog lost with
# its worker, or queued behind a long computation, is replaced by the next minute's.
@shared_task(acks_late=False, expires=120)
def watch_computations() -> list[int]:
    """Every minute (django-celery-beat): queue again the report renderings whose worker died
    (report_services.rendering_watch), close the computations whose claim expired (their
    worker died) and compute their scope again (services.computations_watch says why)."""
    report_services.rendering_watch()
    return [snapshot.pk for snapshot in services.computations_watch()]


# Looked up when sent, not now, so that a test may stand in for a task's delay().
queue.register("recompute", lambda **kwargs: recompute_analytics.delay(**kwargs))
queue.register("compute-missing", lambda **kwargs: compute_missing_scope.delay(**kwargs))
queue.register("render-report", lambda **kwargs: render_report.delay(**kwargs))
