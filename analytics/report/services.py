"""Rendering the monthly report for one scope (whole registry or one site) and month."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.files.base import ContentFile
from django.db import OperationalError, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from analytics import queue
from analytics.figures import drawable
from analytics.models import (
    RENDERING_TAKEN_UP,
    RenderingFailure,
    RenderingStatus,
    Report,
    ReportDownload,
    ReportRendering,
    Snapshot,
    Trigger,
)
from analytics.report.context import REPORT_FIGURES, Month, report_context
from analytics.report.render import render_pdf
from analytics.services import (
    ComputationRunning,
    Lease,
    lease_length,
    queued_lease_length,
    scope_label,
    scopes_visible_to,
    snapshot_compute,
)
from analytics.snapshot_figures import figure_svg, figures_draw
from registry.files import disk_full
from registry.models import Site, User
from registry.selectors import monthly_activity

log = logging.getLogger(__name__)

LANGUAGES = ("en", "zh-hans")


class NoSnapshot(Exception):
    """There is no complete analytics snapshot for this scope yet."""


def report_pdf(*, site: Site | None, month: Month, language: str = "en") -> tuple[bytes, Snapshot]:
    """The PDF of the latest complete snapshot of this scope, and that snapshot."""
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)}")
    snapshot = Snapshot.objects.latest_complete(site)
    if snapshot is None:
        raise NoSnapshot(
            _("The analytics of %(scope)s have not been computed yet.")
            % {"scope": scope_label(site)}
        )
    # Everything in the report, figures and labels included, in the report's language,
    # whatever language the calling request or task has active.
    with translation.override(language):
        sites = [site.code] if site else list(Site.objects.values_list("code", flat=True))
        activity = monthly_activity(
            site_ids=None if site is None else {site.pk}, first=month.first, last=month.last
        )
        context = report_context(
            snapshot=snapshot,
            month=month,
            scope_label=scope_label(site),
            sites=sites,
            activity=activity,
            figures=report_figures(snapshot, language),
        )
        pdf = render_pdf(context, language=language)
    return pdf, snapshot


def report_figures(snapshot: Snapshot, language: str) -> dict[str, str]:
    """The report's figures, kept with the snapshot (drawn now only if they were not)."""
    figures = {
        key: figure_svg(snapshot, name, language)
        for key, name in REPORT_FIGURES.items()
        if key != "simon_makuch" and drawable(name, snapshot.output)
    }
    if snapshot.output["transplant"]["ucbt"].get("pooled", {}).get("simon_makuch"):
        figures["simon_makuch"] = figure_svg(snapshot, REPORT_FIGURES["simon_makuch"], language)
    return figures


def report_archive(
    *, site: Site | None, month: Month, language: str, trigger: str, user: User | None = None
) -> Report:
    """Render a report and keep it, PDF and snapshot together, in the archive: both or neither.

    The PDF is named after its report (reports/<year>/<month>/immunoreg-<scope>-<month>-
    <language>-<id>.pdf), so a name is never taken twice, and written whole (registry.files):
    an OSError such as a full disk leaves no row and no file."""
    pdf, snapshot = report_pdf(site=site, month=month, language=language)
    report = Report(
        site=site,
        month=month.first,
        language=language,
        snapshot=snapshot,
        size_bytes=len(pdf),
        trigger=trigger,
        created_by=user,
    )
    try:
        with transaction.atomic():
            report.save()
            stem = Path(report.download_name).stem
            report.pdf.save(f"{stem}-{report.pk}.pdf", ContentFile(pdf), save=False)
            report.save(update_fields=["pdf"])
    except BaseException:
        if report.pdf.name:  # written, but its row was not kept
            report.pdf.storage.delete(report.pdf.name)
        raise
    return report


def monthly_archive(*, today: date) -> list[Report]:
    """On the 1st: last month's report for the whole registry and each site, in each language.
    A scope with no complete snapshot yet is skipped and logged, never an error for the rest."""
    month = Month.containing(today).previous()
    reports = []
    for site in [None, *Site.objects.order_by("code")]:
        for language in LANGUAGES:
            done = Report.objects.filter(
                site=site, month=month.first, language=language, trigger=Trigger.MONTHLY
            ).first()
            if done is not None:  # a retried or repeated run archives nothing twice
                reports.append(done)
                continue
            try:
                reports.append(
                    report_archive(
                        site=site, month=month, language=language, trigger=Trigger.MONTHLY
                    )
                )
            except NoSnapshot:
                log.warning("No snapshot for %s: no %s report", scope_label(site), month)
                break
    return reports


def reports_visible_to(user: User) -> QuerySet[Report]:
    """The archived reports of the scopes whose sites are all the user's."""
    scopes = scopes_visible_to(user)
    visible = Q(site__in=[s for s in scopes if s is not None])
    if None in scopes:
        visible |= Q(site__isnull=True)
    if not scopes:
        return Report.objects.none()
    return Report.objects.filter(visible).select_related("site", "snapshot", "created_by")


def report_download(report: Report, *, user: User) -> bytes:
    """The PDF, with the download logged (who, when)."""
    ReportDownload.objects.create(report=report, user=user)
    with report.pdf.open("rb") as pdf:
        return pdf.read()


# --- a report asked for on the reports page, rendered by a worker ---------------------------


class RenderingLimit(Exception):
    """The user asked for as many reports as a day allows (IMMUNOREG_REPORT_RENDERINGS_PER_DAY)."""


# A rendering asked for this recently and not finished is on its way: asking again gives it.
ON_ITS_WAY = timedelta(hours=1)


def rendering_request(
    *, user: User, site: Site | None, month: Month, language: str
) -> ReportRendering:
    """Queue the rendering of a report of one of the user's scopes; the page follows its
    progress (ReportRendering) and offers the download when it is done.

    On-demand reports are kept in the archive like the monthly ones, so their number is kept
    within a limit where they are asked for: the same report asked for again while it is on
    its way is that rendering, not a second one, and a user may ask for at most
    IMMUNOREG_REPORT_RENDERINGS_PER_DAY in 24 hours (RenderingLimit beyond)."""
    if site not in scopes_visible_to(user):
        raise PermissionDenied(_("You may not see the analytics of this scope."))
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)}")
    now = timezone.now()
    with transaction.atomic():
        # The user's row is locked: two clicks at once are counted one after the other.
        User.objects.select_for_update().filter(pk=user.pk).exists()
        mine = ReportRendering.objects.filter(requested_by=user)
        on_its_way = (
            mine.filter(site=site, month=month.first, language=language)
            .filter(requested_at__gte=now - ON_ITS_WAY)
            .exclude(status__in=(RenderingStatus.DONE, RenderingStatus.FAILED))
            .first()
        )
        if on_its_way is not None:
            return on_its_way
        limit = settings.IMMUNOREG_REPORT_RENDERINGS_PER_DAY
        if mine.filter(requested_at__gte=now - timedelta(days=1)).count() >= limit:
            raise RenderingLimit(
                _(
                    "You have asked for %(count)d reports in the last 24 hours, the most a day "
                    "allows: the reports already made are in the archive below."
                )
                % {"count": limit}
            )
        rendering = ReportRendering.objects.create(
            site=site, month=month.first, language=language, requested_by=user
        )
    try:
        queue.send("render-report", rendering_id=rendering.pk)
    except Exception:
        log.exception("the rendering of report %s could not be queued", rendering.pk)
        # Still queued: the broker refused it (a task run eagerly here got further).
        queued = ReportRendering.objects.filter(pk=rendering.pk, status=RenderingStatus.QUEUED)
        failure = RenderingFailure.QUEUE if queued.exists() else RenderingFailure.ERROR
        rendering_failed(rendering.pk, failure=failure)
    rendering.refresh_from_db()
    return rendering


# A rendering whose worker stopped is queued again this many times in all, then given up.
RENDERING_ATTEMPTS = 3


class RenderingLease(Lease):
    """Holds a report rendering while a worker lays it out (analytics.services.Lease): a worker
    killed meanwhile stops renewing it, and the watchdog (rendering_watch) queues the rendering
    again within a lease and a minute, not when the broker hands the lost task out again two
    hours later."""

    label = "report rendering"

    def held(self) -> QuerySet:
        return ReportRendering.objects.filter(pk=self.pk, status__in=RENDERING_TAKEN_UP)

    def renewal(self, now) -> dict:
        return {"lease_expires_at": now + self.length}


def rendering_take_up(rendering_id: int) -> bool:
    """Take a rendering up for this worker, in one UPDATE: one queued or waiting, or one whose
    worker's lease ran out (a task delivered again after its worker died). False if it is
    finished, or another worker holds it: a task delivered twice renders it once."""
    now = timezone.now()
    lost = Q(status__in=RENDERING_TAKEN_UP, lease_expires_at__lt=now)
    free = Q(status__in=(RenderingStatus.QUEUED, RenderingStatus.WAITING))
    return bool(
        ReportRendering.objects.filter(free | lost, pk=rendering_id).update(
            status=RenderingStatus.RENDERING,
            lease_expires_at=now + lease_length(),
            attempts=F("attempts") + 1,
        )
    )


def rendering_run(rendering_id: int) -> int | None:
    """Render a queued report: compute the scope's analytics first if it has none, then the
    PDF into the archive. Returns the report's id, or None when it failed (the reason is kept
    in words for the page; the technical detail goes to the log). Raises ComputationRunning
    while another computation runs, and transient database errors, for the task to retry.
    The worker holds the rendering by a lease while it works (RenderingLease)."""
    if not rendering_take_up(rendering_id):  # finished, or another worker's
        return ReportRendering.objects.get(pk=rendering_id).report_id
    rendering = ReportRendering.objects.select_related("site", "requested_by").get(pk=rendering_id)
    with RenderingLease(rendering.pk):
        return _render(rendering)


def _render(rendering: ReportRendering) -> int | None:
    site, user = rendering.site, rendering.requested_by
    if Snapshot.objects.latest_complete(site) is None:
        _rendering_status(rendering, RenderingStatus.ANALYTICS)
        try:
            figures_draw(snapshot_compute(site=site, trigger=Trigger.ON_DEMAND, user=user))
        except (ComputationRunning, OperationalError):
            raise
        except Exception:
            log.exception("analytics for report rendering %s failed", rendering.pk)
            rendering_failed(rendering.pk, failure=RenderingFailure.ANALYTICS)
            return None
    _rendering_status(rendering, RenderingStatus.RENDERING)
    try:
        report = report_archive(
            site=site,
            month=Month.containing(rendering.month),
            language=rendering.language,
            trigger=Trigger.ON_DEMAND,
            user=user,
        )
    except OperationalError:
        raise
    except Exception as error:
        log.exception("report rendering %s failed", rendering.pk)
        failure = RenderingFailure.DISK_FULL if disk_full(error) else RenderingFailure.ERROR
        rendering_failed(rendering.pk, failure=failure)
        return None
    ReportRendering.objects.filter(pk=rendering.pk).update(
        status=RenderingStatus.DONE, report=report, finished_at=timezone.now()
    )
    return report.pk


def _rendering_status(rendering: ReportRendering, status: str) -> None:
    ReportRendering.objects.filter(pk=rendering.pk).update(status=status)
    rendering.status = status


def rendering_waiting(rendering_id: int, *, retry_in: timedelta) -> None:
    """Waiting for the computation running now: the task comes back in `retry_in`; until
    then (and a queued task's lease beyond) nobody holds the rendering."""
    ReportRendering.objects.filter(pk=rendering_id).update(
        status=RenderingStatus.WAITING,
        lease_expires_at=timezone.now() + retry_in + queued_lease_length(),
    )


def rendering_watch(*, now=None) -> list[int]:
    """Every minute (analytics.tasks.watch_computations): the renderings whose worker stopped
    (their lease ran out) are queued again, or, after RENDERING_ATTEMPTS, given up with a
    reason the reader understands. Each is changed by one UPDATE that checks the lease again
    (a renewal in between wins). Returns the renderings queued again."""
    now = now or timezone.now()
    lost = ReportRendering.objects.filter(
        status__in=RENDERING_TAKEN_UP, lease_expires_at__lt=now
    ).values_list("pk", "attempts")
    queued = []
    for pk, attempts in lost:
        still_lost = ReportRendering.objects.filter(
            pk=pk, status__in=RENDERING_TAKEN_UP, lease_expires_at__lt=now
        )
        if attempts >= RENDERING_ATTEMPTS:
            if still_lost.update(
                status=RenderingStatus.FAILED,
                failure=RenderingFailure.INTERRUPTED,
                finished_at=now,
            ):
                log.error("report rendering %s lost its worker %s times: given up", pk, attempts)
            continue
        if not still_lost.update(status=RenderingStatus.QUEUED, lease_expires_at=None):
            continue
        log.warning("report rendering %s lost its worker: queued again", pk)
        try:
            queue.send("render-report", rendering_id=pk)
        except Exception:
            log.exception("report rendering %s could not be queued again", pk)
            rendering_failed(pk, failure=RenderingFailure.QUEUE)
            continue
        queued.append(pk)
    return queued


def rendering_failed(rendering_id: int, *, failure: str) -> None:
    ReportRendering.objects.filter(pk=rendering_id).update(
        status=RenderingStatus.FAILED, failure=failure, finished_at=timezone.now()
    )


def renderings_visible_to(user: User) -> QuerySet[ReportRendering]:
    """The renderings a user asked for, of scopes they still may see."""
    scopes = scopes_visible_to(user)
    if not scopes:
        return ReportRendering.objects.none()
    visible = Q(site__in=[s for s in scopes if s is not None])
    if None in scopes:
        visible |= Q(site__isnull=True)
    return ReportRendering.objects.filter(visible, requested_by=user).select_related(
        "site", "report"
    )
