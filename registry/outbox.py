"""The transactional outbox: work a write asks for, handed to Celery only once the write committed,
and kept until the broker takes it.

- `enqueue` (inside the write's transaction) adds a row; `transaction.on_commit` then tries to
  dispatch it at once.
- `dispatch` sends pending rows to the broker; if the broker is down, the rows stay pending
  (with the error) and the beat task `dispatch_outbox` tries again every minute.
- The worker runs `run_outbox_message`, which performs the action and marks the row done.
- A message the broker took but that is not done IMMUNOREG_OUTBOX_RESEND_AFTER_SECONDS later
  (Redis without persistence restarted and lost it, a worker died with it) is sent again by
  the dispatcher, up to IMMUNOREG_OUTBOX_MAX_SENDS times; then it is left for an administrator
  and /healthz reports it ("given_up"), as it reports the ones overdue meanwhile.

A message may thus be delivered more than once (sent again, late acks, a dispatch retried after
a crash), and its effect still happens once: the worker performs the action and sets `done_at`
in one transaction, holding the row's lock, and a delivery that finds `done_at` set does
nothing. Every action is idempotent besides (refreshing a patient's queries from the committed
data gives the same queries however often it runs), so even two deliveries racing do no harm.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError, OperationalError, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from registry.models import OutboxMessage
from registry.models.outbox import overdue_condition

logger = logging.getLogger(__name__)

# Publishing retries once (a connection the broker dropped is re-opened), then gives up: the row
# stays pending, and a save never waits on a broker that is down.
PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5}
BATCH = 500


# --- the actions -----------------------------------------------------------------------------------


def refresh_patient_queries(*, patient_id: int) -> None:
    """Re-check the patient's data-quality queries after the write, with the data as committed."""
    from registry import quality
    from registry.clock import today
    from registry.models import Patient

    patient = Patient.objects.filter(pk=patient_id).first()
    if patient is not None:  # deleted since: nothing to refresh
        quality.refresh_patient(patient, today=today())


ACTIONS: dict[str, Callable[..., Any]] = {
    "refresh_patient_queries": refresh_patient_queries,
}


# --- the write side ------------------------------------------------------------------------------


def enqueue(action: str, *, key: str, **arguments: Any) -> None:
    """Note work to do after the current transaction commits (nothing if it rolls back)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown outbox action {action!r}")
    OutboxMessage.objects.bulk_create(
        [OutboxMessage(action=action, key=key, arguments=arguments)], ignore_conflicts=True
    )
    transaction.on_commit(lambda: dispatch(keys=[key]), robust=True)


def patient_changed(patient) -> None:
    """After any write to a patient's records: refresh their data-quality queries on a worker."""
    enqueue("refresh_patient_queries", key=f"patient:{patient.pk}", patient_id=patient.pk)


# --- the dispatcher --------------------------------------------------------------------------------


def resend_before(now: datetime | None = None) -> datetime:
    """Messages handed to the broker before this moment and not done are overdue."""
    seconds = settings.IMMUNOREG_OUTBOX_RESEND_AFTER_SECONDS
    return (now or timezone.now()) - timedelta(seconds=seconds)


def overdue(now: datetime | None = None) -> QuerySet[OutboxMessage]:
    """Taken by the broker, not done in time, to be sent again."""
    return OutboxMessage.objects.overdue(
        sent_before=resend_before(now), max_sends=settings.IMMUNOREG_OUTBOX_MAX_SENDS
    )


def given_up(now: datetime | None = None) -> QuerySet[OutboxMessage]:
    """Sent the most times allowed and still not done: no longer sent."""
    return OutboxMessage.objects.given_up(
        sent_before=resend_before(now), max_sends=settings.IMMUNOREG_OUTBOX_MAX_SENDS
    )


def dispatch(*, keys: Iterable[str] | None = None, limit: int = BATCH) -> int:
    """Hand pending messages to the broker, oldest first, and (unless only `keys` are asked
    for) send again the overdue ones; returns how many were sent. Stops at the first the
    broker refuses (it is down: the rest would fail too)."""
    sent = 0
    try:
        with transaction.atomic():
            due = Q(sent_at__isnull=True)
            if keys is None:
                due |= overdue_condition(
                    sent_before=resend_before(), max_sends=settings.IMMUNOREG_OUTBOX_MAX_SENDS
                )
            pending = (
                OutboxMessage.objects.filter(due).select_for_update(skip_locked=True).order_by("pk")
            )
            if keys is not None:
                pending = pending.filter(key__in=list(keys))
            for message in list(pending[:limit]):
                try:
                    run_outbox_message.apply_async(
                        args=[message.pk], retry=True, retry_policy=PUBLISH_RETRY
                    )
                # The broker is unreachable (or, run eagerly without one, the action failed).
                except Exception as error:
                    OutboxMessage.objects.filter(pk=message.pk).update(
                        attempts=F("attempts") + 1, last_error=f"{type(error).__name__}: {error}"
                    )
                    logger.warning(
                        "outbox: message %s not sent, it stays pending: %s",
                        message.pk,
                        type(error).__name__,
                    )
                    break
                OutboxMessage.objects.filter(pk=message.pk).update(
                    sent_at=timezone.now(),
                    attempts=F("attempts") + 1,
                    sends=F("sends") + 1,
                    last_error="",
                )
                if message.sent_at is not None:
                    logger.warning(
                        "outbox: message %s sent again (send %s of at most %s): not done %s s "
                        "after the broker took it",
                        message.pk,
                        message.sends + 1,
                        settings.IMMUNOREG_OUTBOX_MAX_SENDS,
                        settings.IMMUNOREG_OUTBOX_RESEND_AFTER_SECONDS,
                    )
                sent += 1
    except DatabaseError:
        logger.exception("outbox: dispatch could not read the outbox")
    return sent


def message_run(message_id: int) -> bool:
    """Perform one message's action (on the worker); False if it was done already. The action
    and `done_at` commit together under the row's lock: a second delivery finds it done."""
    try:
        with transaction.atomic():
            message = OutboxMessage.objects.select_for_update().filter(pk=message_id).first()
            if message is None or message.done_at is not None:
                return False
            ACTIONS[message.action](**message.arguments)
            message.done_at = timezone.now()
            message.done_by = f"{socket.gethostname()}:{os.getpid()}"
            message.save(update_fields=["done_at", "done_by"])
    except OperationalError:
        raise  # the database: the task is retried
    except Exception as error:
        # Kept on the row for whoever looks at a message that is never done.
        try:
            OutboxMessage.objects.filter(pk=message_id).update(
                last_error=f"the worker failed: {type(error).__name__}"
            )
        except DatabaseError:
            logger.warning("outbox: could not note message %s's failure", message_id)
        raise
    return True


# --- Celery entry points (registered through registry.tasks) ---------------------------------------


@shared_task(
    name="registry.tasks.run_outbox_message",
    acks_late=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=8,
)
def run_outbox_message(message_id: int) -> bool:
    return message_run(message_id)


@shared_task(name="registry.tasks.dispatch_outbox", acks_late=True)
def dispatch_outbox() -> int:
    """Every minute (django-celery-beat): send what could not be sent when it was written,
    and again what the broker took but was not done in time."""
    return dispatch()
