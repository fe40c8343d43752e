"""The outbox's dispatcher: work the broker took but never did is sent again, a bounded number of
times, and a message delivered twice has its effect once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from registry import outbox
from registry.models import OutboxMessage

RESEND_AFTER = 600
MAX_SENDS = 3


@pytest.fixture
def broker(monkeypatch) -> list[int]:
    """A broker that takes every message and then loses it (Redis restarted without
    persistence): the ids handed to it, in order."""
    taken: list[int] = []

    def take(*, args, **options) -> None:
        taken.append(args[0])

    monkeypatch.setattr(outbox.run_outbox_message, "apply_async", take)
    return taken


def message_sent(patient, *, minutes_ago: float, sends: int = 1, done: bool = False):
    sent_at = timezone.now() - timedelta(minutes=minutes_ago)
    return OutboxMessage.objects.create(
        action="refresh_patient_queries",
        key=f"patient:{patient.pk}",
        arguments={"patient_id": patient.pk},
        sent_at=sent_at,
        attempts=sends,
        sends=sends,
        done_at=sent_at if done else None,
    )


@override_settings(
    IMMUNOREG_OUTBOX_RESEND_AFTER_SECONDS=RESEND_AFTER, IMMUNOREG_OUTBOX_MAX_SENDS=MAX_SENDS
)
def test_a_message_the_broker_took_but_did_not_do_in_time_is_sent_again(patient, broker):
    OutboxMessage.objects.all().delete()
    lost = message_sent(patient, minutes_ago=11)

    assert outbox.dispatch() == 1

    lost.refresh_from_db()
    assert broker == [lost.pk]
    assert (lost.sends, lost.attempts, lost.done_at) == (2, 2, None)
    assert timezone.now() - lost.sent_at < timedelta(seconds=30)
    assert outbox.dispatch() == 0  # its new deadline runs from this send


@override_settings(
    IMMUNOREG_OUTBOX_RESEND_AFTER_SECONDS=RESEND_AFTER, IMMUNOREG_OUTBOX_MAX_SENDS=MAX_SENDS
)
def test_a_message_still_within_its_deadline_or_done_is_not_sent_again(patient, broker):
    OutboxMessage.objects.all().delete()
    message_sent(patient, minutes_ago=9)
    message_sent(patient, minutes_ago=60, done=True)

    assert outbox.dispatch() == 0
    assert broker == []


@override_settings(
    IMMUNOREG_OUTBOX_RESEND_AFTER_SECONDS=RESEND_AFTER, IMMUNOREG_OUTBOX_MAX_SENDS=MAX_SENDS
)
def test_a_message_sent_the_most_times_allowed_is_given_up_not_sent_for_ever(patient, broker):
    OutboxMessage.objects.all().delete()
    lost = message_sent(patient, minutes_ago=11, sends=MAX_SENDS - 1)

    assert outbox.dispatch() == 1  # the last send
    OutboxMessage.objects.filter(pk=lost.pk).update(sent_at=timezone.now() - timedelta(minutes=11))
    assert outbox.dispatch() == 0

    assert broker == [lost.pk]
    assert list(outbox.given_up()) == [lost] and not outbox.overdue().exists()


def test_a_write_dispatches_only_its_own_pending_message_not_the_overdue_ones(patient, broker):
    OutboxMessage.objects.all().delete()
    message_sent(patient, minutes_ago=60)
    outbox.patient_changed(patient)  # a new pending message for the same patient
    fresh = OutboxMessage.objects.get(sent_at__isnull=True)

    assert outbox.dispatch(keys=[fresh.key]) == 1
    assert broker == [fresh.pk]


def test_a_message_delivered_twice_has_its_effect_once(patient, monkeypatch):
    OutboxMessage.objects.all().delete()
    message = message_sent(patient, minutes_ago=11)
    refreshed: list[int] = []
    monkeypatch.setitem(
        outbox.ACTIONS,
        "refresh_patient_queries",
        lambda *, patient_id: refreshed.append(patient_id),
    )

    assert outbox.message_run(message.pk) is True
    assert outbox.message_run(message.pk) is False  # the resent copy arrives after all

    message.refresh_from_db()
    assert refreshed == [patient.pk] and message.done_at is not None


def test_a_worker_that_fails_a_message_leaves_it_not_done_with_the_reason(patient, monkeypatch):
    OutboxMessage.objects.all().delete()
    message = message_sent(patient, minutes_ago=1)

    def broken(*, patient_id: int) -> None:
        raise ValueError("a bug")

    monkeypatch.setitem(outbox.ACTIONS, "refresh_patient_queries", broken)

    with pytest.raises(ValueError):
        outbox.message_run(message.pk)

    message.refresh_from_db()
    assert message.done_at is None and message.last_error == "the worker failed: ValueError"
