"""Analytics snapshots (SAP.md section 9): every computation, stored and never changed after.

A snapshot is `running` while it computes, then `complete` (with its output), `failed` (with the
error; a run whose lease ran out is marked interrupted by the next claim or the watchdog) or
`skipped` (a nightly run
whose input data and code equal the latest complete snapshot's). Once it has left `running`, it
cannot be saved, updated or deleted: the model and its queryset refuse.

The database allows one `running` snapshot at a time: the registry computes one thing at once.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from registry.models import Site
from registry.models.base import ChoiceLabels


class ImmutableSnapshot(Exception):
    """A finished snapshot was about to be changed or deleted."""


class Status(models.TextChoices):
    RUNNING = "running", _("Running")
    COMPLETE = "complete", _("Complete")
    FAILED = "failed", _("Failed")
    SKIPPED = "skipped", _("Skipped: data unchanged")


class Stage(models.TextChoices):
    QUEUED = "queued", _("Waiting for a worker")
    FRAMES = "frames", _("Reading the registry")
    STATISTICS = "statistics", _("Computing the statistics")
    SAVING = "saving", _("Saving")
    DONE = "done", _("Done")


class Trigger(models.TextChoices):
    NIGHTLY = "nightly", _("Nightly")
    ON_DEMAND = "on_demand", _("On demand")
    COMMAND = "command", _("Command line")
    MONTHLY = "monthly", _("Monthly")


class SnapshotQuerySet(models.QuerySet):
    def complete(self) -> SnapshotQuerySet:
        return self.filter(status=Status.COMPLETE)

    def for_scope(self, site: Site | int | None) -> SnapshotQuerySet:
        """The whole registry's snapshots (site None) or one site's."""
        return self.filter(site__isnull=True) if site is None else self.filter(site=site)

    def latest_complete(self, site: Site | int | None = None) -> Snapshot | None:
        """What pages, the API and reports show for this scope."""
        return self.complete().for_scope(site).order_by("-finished_at", "-pk").first()

    def update(self, **fields) -> int:
        if self.exclude(status=Status.RUNNING).exists():
            raise ImmutableSnapshot("a finished analytics snapshot cannot be changed")
        return super().update(**fields)

    def delete(self):
        if self.exclude(status=Status.RUNNING).exists():
            raise ImmutableSnapshot("a finished analytics snapshot cannot be deleted")
        return super().delete()


class Snapshot(ChoiceLabels):
    site = models.ForeignKey(
        Site,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("site"),
        help_text=_("Empty: the whole registry."),
    )
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.RUNNING
    )
    stage = models.CharField(_("stage"), max_length=12, choices=Stage.choices, default=Stage.QUEUED)
    trigger = models.CharField(_("trigger"), max_length=10, choices=Trigger.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("requested by"),
    )
    started_at = models.DateTimeField(_("started"))
    heartbeat_at = models.DateTimeField(_("last sign of life"))
    # The claim holds while its lease runs: the worker computing it renews it (services.Lease);
    # once it ran out the computation was interrupted, whatever host or process held it. A
    # snapshot made without one (not by snapshot_claim) is held by nobody.
    lease_expires_at = models.DateTimeField(_("lease expires"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    # host:pid of the process computing it: for information only (a restarted container may
    # have the same host name and reuse the PID; the lease decides whether it is alive).
    worker = models.CharField(_("worker"), max_length=200, blank=True)
    fingerprint = models.CharField(_("data fingerprint"), max_length=80, blank=True)
    code_version = models.CharField(_("code version"), max_length=100, blank=True)
    parameters = models.JSONField(_("parameters"), default=dict)
    timings = models.JSONField(_("timings (seconds)"), default=dict)
    row_counts = models.JSONField(_("row counts"), default=dict)
    output = models.JSONField(_("output"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True)
    same_as = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("same data as"),
    )

    objects = SnapshotQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-pk"]
        verbose_name = _("analytics snapshot")
        verbose_name_plural = _("analytics snapshots")
        constraints = [
            models.UniqueConstraint(
                fields=["status"],
                condition=Q(status="running"),
                name="one_analytics_computation_at_a_time",
            ),
        ]
        indexes = [models.Index(fields=["site", "status", "finished_at"])]

    def __str__(self) -> str:
        scope = self.site.code if self.site_id else _("whole registry")
        return f"{scope} {self.started_at:%Y-%m-%d %H:%M} ({self.get_status_display()})"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None and self._stored_as_finished():
            raise ImmutableSnapshot("a finished analytics snapshot cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        if self._stored_as_finished():
            raise ImmutableSnapshot("a finished analytics snapshot cannot be deleted")
        return super().delete(*args, **kwargs)

    def _stored_as_finished(self) -> bool:
        return (
            type(self).objects.filter(pk=self.pk).exclude(status=Status.RUNNING).exists()
            if self.pk is not None
            else False
        )

    @property
    def is_finished(self) -> bool:
        return self.status != Status.RUNNING

    @property
    def was_interrupted(self) -> bool:
        """Failed because its lease ran out (services.interruption), not by an error."""
        return self.status == Status.FAILED and self.error.startswith("interrupted:")

    @property
    def failure_reason(self) -> str:
        """Why it failed, in words for its readers; the technical detail (`error`, the log) may
        name servers and addresses, and is for the administrators only."""
        if self.status != Status.FAILED:
            return ""
        if self.was_interrupted:
            return _("The computation was interrupted before it finished (its worker stopped).")
        if not self.worker:  # no worker ever took it: the broker refused the task
            return _(
                "The computation could not be handed to a worker: the task queue is not "
                "answering. Please try again in a few minutes."
            )
        return _(
            "The computation failed because of an error in the registry; its administrators "
            "find the details in the log."
        )


class Report(ChoiceLabels):
    """A monthly PDF summary in the archive, with the snapshot every number in it came from."""

    site = models.ForeignKey(
        Site,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="reports",
        verbose_name=_("site"),
        help_text=_("Empty for the whole registry."),
    )
    month = models.DateField(_("month"), help_text=_("The first day of the month reported."))
    language = models.CharField(_("language"), max_length=10, choices=settings.LANGUAGES)
    snapshot = models.ForeignKey(
        Snapshot,
        on_delete=models.PROTECT,
        related_name="reports",
        verbose_name=_("analytics snapshot"),
    )
    pdf = models.FileField(_("PDF"), upload_to="reports/%Y/%m/")
    size_bytes = models.PositiveIntegerField(_("size (bytes)"))
    trigger = models.CharField(_("trigger"), max_length=10, choices=Trigger.choices)
    created_at = models.DateTimeField(_("rendered"), auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("rendered by"),
    )

    class Meta:
        ordering = ["-month", "site__code", "language", "-created_at"]
        verbose_name = _("monthly report")
        verbose_name_plural = _("monthly reports")
        indexes = [models.Index(fields=["site", "month"])]

    def __str__(self) -> str:
        scope = self.site.code if self.site_id else _("whole registry")
        return f"{scope} {self.month:%Y-%m} ({self.language})"

    @property
    def download_name(self) -> str:
        """The PDF's name for the reader: the scope, month and language (the archive adds the
        report's id to keep each name once)."""
        scope = self.site.code if self.site_id else "registry"
        return f"immunoreg-{scope}-{self.month:%Y-%m}-{self.language}.pdf"


class ReportDownload(models.Model):
    """Who downloaded which report, and when (INTERFACES.md section 6)."""

    report = models.ForeignKey(
        Report, on_delete=models.PROTECT, related_name="downloads", verbose_name=_("report")
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("user")
    )
    at = models.DateTimeField(_("downloaded"), auto_now_add=True)

    class Meta:
        ordering = ["-at"]
        verbose_name = _("report download")
        verbose_name_plural = _("report downloads")

    def __str__(self) -> str:
        return f"{self.user} {self.report} {self.at:%Y-%m-%d %H:%M}"


class ImmutableFigure(Exception):
    """A stored figure was about to be changed or deleted."""


class SnapshotFigureQuerySet(models.QuerySet):
    def update(self, **fields) -> int:
        raise ImmutableFigure("a snapshot's figure cannot be changed")

    def delete(self):
        raise ImmutableFigure("a snapshot's figure cannot be deleted")


class SnapshotFigure(ChoiceLabels):
    """One figure of a complete snapshot in one language, as SVG: drawn once, kept with its
    snapshot and, like it, never changed (analytics.snapshot_figures)."""

    snapshot = models.ForeignKey(
        Snapshot,
        on_delete=models.PROTECT,
        related_name="figures",
        verbose_name=_("analytics snapshot"),
    )
    name = models.CharField(_("figure"), max_length=40)
    language = models.CharField(_("language"), max_length=10, choices=settings.LANGUAGES)
    svg = models.TextField(_("SVG"))
    created_at = models.DateTimeField(_("drawn"), auto_now_add=True)

    objects = SnapshotFigureQuerySet.as_manager()

    class Meta:
        verbose_name = _("snapshot figure")
        verbose_name_plural = _("snapshot figures")
        constraints = [
            models.UniqueConstraint(
                fields=["snapshot", "name", "language"], name="one_figure_per_snapshot_language"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.snapshot_id} {self.name} ({self.language})"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise ImmutableFigure("a snapshot's figure cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableFigure("a snapshot's figure cannot be deleted")


class RenderingStatus(models.TextChoices):
    QUEUED = "queued", _("Waiting for a worker")
    WAITING = "waiting", _("Waiting for the analytics computation running now")
    ANALYTICS = "analytics", _("Computing the analytics first")
    RENDERING = "rendering", _("Laying out the PDF")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")


class RenderingFailure(models.TextChoices):
    """Why a rendering failed, in words a reader understands (details are in the log)."""

    BUSY = (
        "busy",
        _(
            "Another analytics computation kept running; the report could not wait for it. "
            "Please try again in a few minutes."
        ),
    )
    ANALYTICS = (
        "analytics",
        _(
            "The analytics of this scope could not be computed, so there is nothing to report yet. "
            "The registry's administrators have been told in the log."
        ),
    )
    ERROR = (
        "error",
        _(
            "The report could not be laid out because of an error in the registry. The "
            "administrators have been told in the log; please try again later."
        ),
    )
    DISK_FULL = (
        "disk_full",
        _(
            "The report could not be kept: the archive's disk is full. The administrators have "
            "been told in the log; please try again once they have made room."
        ),
    )
    QUEUE = (
        "queue",
        _(
            "The report could not be handed to a worker: the task queue is not answering. "
            "Please try again in a few minutes."
        ),
    )
    INTERRUPTED = (
        "interrupted",
        _(
            "The workers laying out the report stopped before it was done, again and again. "
            "The administrators have been told in the log; please try again later."
        ),
    )


class ReportRendering(ChoiceLabels):
    """A report asked for on the reports page, rendered by a worker (analytics.tasks): its
    progress while it runs, the archived report when done, or why it failed."""

    site = models.ForeignKey(
        Site,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("site"),
        help_text=_("Empty for the whole registry."),
    )
    month = models.DateField(_("month"))
    language = models.CharField(_("language"), max_length=10, choices=settings.LANGUAGES)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("requested by"),
    )
    status = models.CharField(
        _("status"), max_length=10, choices=RenderingStatus.choices, default=RenderingStatus.QUEUED
    )
    failure = models.CharField(
        _("failure"), max_length=20, choices=RenderingFailure.choices, blank=True
    )
    report = models.ForeignKey(
        Report,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("report"),
    )
    requested_at = models.DateTimeField(_("requested"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    # While a worker renders it, the worker renews this lease (analytics.report.services.
    # RenderingLease); a rendering whose lease ran out lost its worker and is queued again by
    # the watchdog (rendering_watch), at most RENDERING_ATTEMPTS times in all.
    lease_expires_at = models.DateTimeField(_("lease expires"), null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)

    class Meta:
        ordering = ["-requested_at", "-pk"]
        verbose_name = _("report rendering")
        verbose_name_plural = _("report renderings")

    def __str__(self) -> str:
        scope = self.site.code if self.site_id else _("whole registry")
        return f"{scope} {self.month:%Y-%m} ({self.language}): {self.get_status_display()}"

    @property
    def is_finished(self) -> bool:
        return self.status in (RenderingStatus.DONE, RenderingStatus.FAILED)


# The states of a rendering a worker has taken up (and holds by its lease).
RENDERING_TAKEN_UP = (RenderingStatus.WAITING, RenderingStatus.ANALYTICS, RenderingStatus.RENDERING)
