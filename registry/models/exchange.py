"""Logs of the cohort file's imports and exports (INTERFACES.md section 6: who, when, what)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from .base import ChoiceLabels


class ImportRun(ChoiceLabels):
    """One run of the cohort import, kept whatever its outcome (nothing is saved on a rejection).

    Each imported record's history names the run ("import of cohort.csv (run 12) by ...").
    """

    class Outcome(models.TextChoices):
        RUNNING = "running", _("Running")
        IMPORTED = "imported", _("Imported")
        REJECTED = "rejected", _("Rejected (nothing saved)")
        VALIDATED = "validated", _("Dry run: would import")
        UNREADABLE = "unreadable", _("Unreadable file")
        FAILED = "failed", _("Failed (nothing saved)")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("user"),
    )
    started_at = models.DateTimeField(_("started"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    file_name = models.CharField(_("file name"), max_length=255)
    file_sha256 = models.CharField(_("SHA-256 of the file"), max_length=64, blank=True)
    dry_run = models.BooleanField(_("dry run"), default=False)
    create_sites = models.BooleanField(_("create missing sites"), default=False)
    via = models.CharField(_("via"), max_length=20, default="command")
    outcome = models.CharField(
        _("outcome"), max_length=12, choices=Outcome.choices, default=Outcome.RUNNING
    )
    rows = models.PositiveIntegerField(_("patient rows"), default=0)
    patients_created = models.PositiveIntegerField(_("patients created"), default=0)
    problem_count = models.PositiveIntegerField(_("problems"), default=0)
    # The first problems as printed (`row R, column C: message`), for the admin's list.
    problems = models.TextField(_("problems (first 200)"), blank=True)

    class Meta:
        ordering = ["-started_at"]
        verbose_name = _("cohort import")
        verbose_name_plural = _("cohort imports")

    def __str__(self) -> str:
        return f"{self.file_name} (run {self.pk}, {self.get_outcome_display()})"


class ExportLog(models.Model):
    """One export of the analysis set, identified or de-identified (written once, never edited)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("user"),
    )
    created_at = models.DateTimeField(_("when"), auto_now_add=True)
    format = models.CharField(_("format"), max_length=8)
    identified = models.BooleanField(_("identified"))
    # The sites the export covered (codes, comma-separated; "all" for the whole registry).
    scope = models.CharField(_("sites"), max_length=500)
    rows = models.PositiveIntegerField(_("patient rows"), default=0)
    file_name = models.CharField(_("file name"), max_length=255, blank=True)
    via = models.CharField(_("via"), max_length=20, default="command")

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("cohort export")
        verbose_name_plural = _("cohort exports")

    def __str__(self) -> str:
        kind = _("identified") if self.identified else _("de-identified")
        return f"{self.format} {kind} ({self.created_at:%Y-%m-%d %H:%M})"
