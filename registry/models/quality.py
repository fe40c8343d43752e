"""Data-quality queries: opened and closed by the registry itself as the data changes."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from .patients import Patient


class QueryKind(models.TextChoices):
    BASELINE_INCOMPLETE = "baseline_incomplete", _("Baseline incomplete")
    CRS_STATUS_UNKNOWN = "crs_status_unknown", _("CRS status unknown after day 30")
    RESPONSE_NOT_ASSESSED = "response_not_assessed", _("Response not assessed by day 60")
    FOLLOW_UP_OVERDUE = "follow_up_overdue", _("Follow-up overdue")
    LOST_TO_FOLLOW_UP = "lost_to_follow_up", _("Lost to follow-up")
    CONTACT_BEFORE_EVENT = "contact_before_event", _("Last contact earlier than latest event")
    GRADE_MISMATCH = "grade_mismatch", _("Derived ASTCT grade differs from recorded grade")


class DataQualityQuery(models.Model):
    patient = models.ForeignKey(
        Patient, on_delete=models.CASCADE, related_name="queries", verbose_name=_("patient")
    )
    kind = models.CharField(_("kind"), max_length=30, choices=QueryKind.choices)
    # Tells apart queries of one kind on one patient, e.g. the visit or the episode concerned.
    key = models.CharField(_("key"), max_length=60, blank=True, default="")
    message = models.CharField(_("message"), max_length=300)
    is_open = models.BooleanField(_("open"), default=True)
    opened_at = models.DateTimeField(_("opened"))
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True)
    # Null when the registry closed it because the data was fixed; a person otherwise.
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("closed by"),
    )
    close_reason = models.TextField(_("reason for closing"), blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-opened_at"]
        verbose_name = _("data-quality query")
        verbose_name_plural = _("data-quality queries")
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "kind", "key"], name="one_query_per_condition"
            ),
            models.CheckConstraint(
                condition=Q(is_open=True) | Q(closed_at__isnull=False),
                name="closed_query_has_closed_at",
            ),
        ]
        indexes = [models.Index(fields=["is_open", "kind"])]

    def __str__(self) -> str:
        return f"{self.patient}: {self.get_kind_display()}"
