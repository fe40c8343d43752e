"""Rendering the monthly report for one scope (whole registry or one site) and month."""

from __future__ import annotations

from django.utils.translation import gettext as _

from analytics.models import Snapshot
from analytics.report.context import Month, report_context
from analytics.report.render import render_pdf
from registry.models import Site
from registry.selectors import monthly_activity

LANGUAGES = ("en", "zh-hans")


class NoSnapshot(Exception):
    """There is no complete analytics snapshot for this scope yet."""


def scope_label(site: Site | None) -> str:
    return _("Whole registry") if site is None else f"{site.code} · {site.name}"


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
    return render_pdf(context, language=language), snapshot
