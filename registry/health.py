"""`/healthz`: is the database reachable, is the broker, how old is the latest analytics snapshot,
and is work waiting in the outbox. Counts and ages only: never anything about a patient.

HTTP 200 while the database answers (the app can serve: with the broker down, work waits in the
outbox and the status says "degraded"); 503 when it does not. Work the broker took but that was
not done in time (Redis lost it) is "overdue" until the dispatcher's next send gets it done, and
"given_up" once it was sent the most times allowed: either makes the status "degraded".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

logger = logging.getLogger(__name__)

OK, UNAVAILABLE, EAGER = "ok", "unavailable", "eager"
BROKER_TIMEOUT_SECONDS = 2
# The nightly run refreshes every scope; older than this, someone should look.
SNAPSHOT_STALE_AFTER = timedelta(hours=36)


@dataclass(frozen=True)
class Health:
    database: str
    broker: str
    latest_snapshot_at: datetime | None
    outbox_pending: int | None
    outbox_oldest_at: datetime | None
    now: datetime
    outbox_overdue: int | None = None
    outbox_given_up: int | None = None

    @property
    def http_status(self) -> int:
        return 200 if self.database == OK else 503

    @property
    def status(self) -> str:
        if self.database != OK:
            return UNAVAILABLE
        if self.broker not in (OK, EAGER) or self.outbox_overdue or self.outbox_given_up:
            return "degraded"
        return OK

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "database": self.database,
            "broker": self.broker,
            "latest_snapshot": _age(self.latest_snapshot_at, self.now)
            | (
                {"stale": self.now - self.latest_snapshot_at > SNAPSHOT_STALE_AFTER}
                if self.latest_snapshot_at
                else {}
            ),
            "outbox": {"pending": self.outbox_pending}
            | _age(self.outbox_oldest_at, self.now, prefix="oldest_")
            | {"overdue": self.outbox_overdue, "given_up": self.outbox_given_up},
        }


def _age(moment: datetime | None, now: datetime, *, prefix: str = "") -> dict[str, Any]:
    if moment is None:
        return {f"{prefix}at": None, f"{prefix}age_seconds": None}
    return {
        f"{prefix}at": moment.isoformat(),
        f"{prefix}age_seconds": int((now - moment).total_seconds()),
    }


def check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return OK
    except Exception:  # any failure means "not ok"; the detail goes to the log, not the client
        logger.warning("health: database unavailable", exc_info=True)
        return UNAVAILABLE


def check_broker() -> str:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return EAGER  # no broker: tasks run in the web process (the local demo)
    from kombu import Connection

    try:
        with Connection(
            settings.CELERY_BROKER_URL,
            connect_timeout=BROKER_TIMEOUT_SECONDS,
            transport_options={"socket_connect_timeout": BROKER_TIMEOUT_SECONDS},
        ) as broker:
            broker.ensure_connection(
                max_retries=1, interval_start=0, timeout=BROKER_TIMEOUT_SECONDS
            )
        return OK
    except Exception:
        logger.warning("health: broker unavailable", exc_info=True)
        return UNAVAILABLE


def latest_snapshot_at() -> datetime | None:
    from analytics.models import Snapshot  # the analytics app builds on the registry

    return (
        Snapshot.objects.complete()
        .order_by("-finished_at")
        .values_list("finished_at", flat=True)
        .first()
    )


@dataclass(frozen=True)
class Backlog:
    pending: int
    oldest_at: datetime | None
    overdue: int
    given_up: int


def outbox_backlog() -> Backlog:
    from registry import outbox
    from registry.models import OutboxMessage

    pending = OutboxMessage.objects.pending()
    oldest = pending.order_by("created_at").values_list("created_at", flat=True).first()
    return Backlog(
        pending=pending.count(),
        oldest_at=oldest,
        overdue=outbox.overdue().count(),
        given_up=outbox.given_up().count(),
    )


def health() -> Health:
    database = check_database()
    snapshot_at, backlog = None, None
    if database == OK:
        try:
            snapshot_at = latest_snapshot_at()
            backlog = outbox_backlog()
        except Exception:
            logger.warning("health: could not read the snapshots or the outbox", exc_info=True)
            database = UNAVAILABLE
    return Health(
        database=database,
        broker=check_broker(),
        latest_snapshot_at=snapshot_at,
        outbox_pending=backlog.pending if backlog else None,
        outbox_oldest_at=backlog.oldest_at if backlog else None,
        outbox_overdue=backlog.overdue if backlog else None,
        outbox_given_up=backlog.given_up if backlog else None,
        now=timezone.now(),
    )
