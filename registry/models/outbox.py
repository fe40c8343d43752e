"""Work for a Celery worker, written in the same transaction as the data it follows from.

A write notes what must happen after it (registry.outbox.enqueue); the row commits or rolls back
with the write. Once committed, the dispatcher hands it to the broker; while the broker is down
the row waits, and the dispatcher (after each commit, and every minute from Celery beat) tries
again. A message the broker took but that is not done in time (the broker lost it) is sent
again. Nothing is lost and nothing runs for a write that rolled back.
"""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


def overdue_condition(*, sent_before: datetime, max_sends: int) -> Q:
    """Handed to the broker before `sent_before`, not done, sent fewer than `max_sends` times."""
    return Q(done_at__isnull=True, sent_at__lt=sent_before, sends__lt=max_sends)


class OutboxQuerySet(models.QuerySet):
    def pending(self) -> OutboxQuerySet:
        """Not yet handed to the broker."""
        return self.filter(sent_at__isnull=True)

    def overdue(self, *, sent_before: datetime, max_sends: int) -> OutboxQuerySet:
        """Handed to the broker before `sent_before` and not done (the broker may have lost
        it): to send again, while it has been sent fewer than `max_sends` times."""
        return self.filter(overdue_condition(sent_before=sent_before, max_sends=max_sends))

    def given_up(self, *, sent_before: datetime, max_sends: int) -> OutboxQuerySet:
        """Sent `max_sends` times and still not done: no longer sent, for an administrator."""
        return self.filter(done_at__isnull=True, sent_at__lt=sent_before, sends__gte=max_sends)


class OutboxMessage(models.Model):
    action = models.CharField(_("action"), max_length=60)
    arguments = models.JSONField(_("arguments"), default=dict)
    # Writes that ask for the same work while it waits share one message (a patient edited
    # five times while the broker is down is refreshed once).
    key = models.CharField(_("key"), max_length=120)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    sent_at = models.DateTimeField(_("handed to the broker"), null=True, blank=True)
    attempts = models.PositiveIntegerField(_("attempts to send"), default=0)
    # Of those attempts, how many the broker took (more than one: sent again, not done in time).
    sends = models.PositiveIntegerField(_("times handed to the broker"), default=0)
    last_error = models.TextField(_("last error"), blank=True)
    done_at = models.DateTimeField(_("done"), null=True, blank=True)
    done_by = models.CharField(_("done by (host:pid)"), max_length=200, blank=True)

    objects = OutboxQuerySet.as_manager()

    class Meta:
        ordering = ["pk"]
        verbose_name = _("outbox message")
        verbose_name_plural = _("outbox messages")
        constraints = [
            models.UniqueConstraint(
                fields=["key"],
                condition=Q(sent_at__isnull=True),
                name="one_pending_outbox_message_per_key",
            ),
        ]
        indexes = [models.Index(fields=["sent_at", "created_at"])]

    def __str__(self) -> str:
        return f"{self.action} {self.key} ({'sent' if self.sent_at else 'pending'})"
