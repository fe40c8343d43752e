"""Rendering the monthly report for one scope (whole registry or one site) and month."""

from __future__ import annotations

import logging
from datetime import date

from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import translation
from django.utils.translation import gettext as _

from analytics.models import Report, ReportDownload, Snapshot, Trigger
from analytics.report.context import Month, report_context
from analytics.report.render import render_pdf
from analytics.services import scope_label, scopes_visible_to
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
            _(
                "No complete analytics snapshot exists yet for %(scope)s; compute one "
                "first (compute_analytics)."
            )
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
        )
        pdf = render_pdf(context, language=language)
    return pdf, snapshot


def report_archive(
    *, site: Site | None, month: Month, language: str, trigger: str, user: User | None = None
) -> Report:
    """Render a report and keep it, PDF and snapshot together, in the archive."""
    pdf, snapshot = report_pdf(site=site, month=month, language=language)
    scope = site.code if site else "registry"
    report = Report(
        site=site,
        month=month.first,
        language=language,
        snapshot=snapshot,
        size_bytes=len(pdf),
        trigger=trigger,
        created_by=user,
    )
    with transaction.atomic():
        report.pdf.save(f"immunoreg-{scope}-{month}-{language}.pdf", ContentFile(pdf), save=False)
        report.save()
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
