"""The transactional outbox: work a write asks for, handed to Celery only once the write committed,
and kept until the broker takes it.

- `enqueue` (inside the write's transaction) adds a row; `transaction.on_commit` then tries to
  dispatch it at once.
- `dispatch` sends pending rows to the broker; if the broker is down, the rows stay pending
  (with the error) and the beat task `dispatch_outbox` tries again every minute.
- The worker runs `run_outbox_message`, which performs the action and marks the row done. A
  message may be delivered more than once (late acks, a dispatch retried after a crash): every
  action is idempotent.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterable
from typing import Any

from celery import shared_task
from django.db import DatabaseError, OperationalError, transaction
from django.db.models import F
from django.utils import timezone

from registry.models import OutboxMessage

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


def dispatch(*, keys: Iterable[str] | None = None, limit: int = BATCH) -> int:
    """Hand pending messages to the broker, oldest first; returns how many were sent. Stops at
    the first the broker refuses (it is down: the rest would fail too)."""
    sent = 0
    try:
        with transaction.atomic():
            pending = (
                OutboxMessage.objects.pending().select_for_update(skip_locked=True).order_by("pk")
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
                    sent_at=timezone.now(), attempts=F("attempts") + 1, last_error=""
                )
                sent += 1
    except DatabaseError:
        logger.exception("outbox: dispatch could not read the outbox")
    return sent


def message_run(message_id: int) -> bool:
    """Perform one message's action (on the worker); False if it was done already."""
    with transaction.atomic():
        message = OutboxMessage.objects.select_for_update().filter(pk=message_id).first()
        if message is None or message.done_at is not None:
            return False
        ACTIONS[message.action](**message.arguments)
        message.done_at = timezone.now()
        message.done_by = f"{socket.gethostname()}:{os.getpid()}"
        message.save(update_fields=["done_at", "done_by"])
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
    """Every minute (django-celery-beat): send what could not be sent when it was written."""
    return dispatch()
