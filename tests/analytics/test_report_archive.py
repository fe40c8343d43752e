"""The report archive: monthly on the 1st, on demand, listed and downloaded by scope, logged."""

from __future__ import annotations

from datetime import date

import pytest
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from analytics import services
from analytics.models import Report, ReportDownload, Trigger
from analytics.report.context import Month
from analytics.report.services import monthly_archive, report_archive
from analytics.tasks import monthly_reports
from config.celery import app as celery_app
from registry import demo
from registry.domain.vocabulary import Role

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


@pytest.fixture
def eager(monkeypatch):
    """Run tasks in this process even where CI configures a broker."""
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)


@pytest.fixture
def snapshots(users, site, other_site):
    demo.seed_scaled(30)
    return [
        services.snapshot_compute(site=scope, trigger=Trigger.COMMAND)
        for scope in (None, site, other_site)
    ]


@pytest.fixture
def archived(snapshots, site, other_site):
    month = Month.parse("2024-10")
    return {
        scope: report_archive(site=scope, month=month, language="en", trigger=Trigger.MONTHLY)
        for scope in (None, site, other_site)
    }


def test_the_monthly_run_archives_last_month_for_every_scope_in_both_languages(snapshots, settings):
    settings.IMMUNOREG_TODAY = "2024-11-01"
    first = monthly_reports.apply().get()
    reports = Report.objects.filter(pk__in=first)
    scopes_with_snapshot = {None, *[s.site_id for s in snapshots if s.site_id]}
    assert {r.site_id for r in reports} == scopes_with_snapshot
    assert {r.language for r in reports} == {"en", "zh-hans"}
    assert {r.month for r in reports} == {date(2024, 10, 1)}
    assert all(r.pdf.read(5) == b"%PDF-" for r in reports)
    assert all(r.snapshot.site_id == r.site_id for r in reports)
    again = monthly_reports.apply().get()
    assert sorted(again) == sorted(first)  # a repeated run archives nothing twice


def test_a_scope_without_a_snapshot_is_skipped_not_an_error(users, site):
    assert monthly_archive(today=date(2024, 11, 1)) == []


def test_the_monthly_run_is_scheduled_on_the_first_in_the_database():
    task = PeriodicTask.objects.get(task="analytics.tasks.monthly_reports")
    assert task.enabled and task.crontab.day_of_month == "1"


def test_a_pi_lists_only_the_reports_of_their_own_site(client, users, archived, site):
    client.force_login(users[Role.PI])
    page = client.get(reverse("analytics:reports")).content.decode()
    assert reverse("analytics:report-download", args=[archived[site].pk]) in page
    for other in (None, *[s for s in archived if s not in (None, site)]):
        assert reverse("analytics:report-download", args=[archived[other].pk]) not in page


def test_a_pi_cannot_download_another_sites_or_the_whole_registrys_report(
    client, users, archived, site
):
    client.force_login(users[Role.PI])
    for scope, report in archived.items():
        response = client.get(reverse("analytics:report-download", args=[report.pk]))
        assert response.status_code == (200 if scope == site else 404)
    assert ReportDownload.objects.count() == 1


def test_each_download_is_logged_with_who_and_when(client, users, archived, site):
    pi = users[Role.PI]
    client.force_login(pi)
    response = client.get(reverse("analytics:report-download", args=[archived[site].pk]))
    assert response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    logged = ReportDownload.objects.get()
    assert (logged.user, logged.report) == (pi, archived[site])
    assert logged.at is not None


def test_nurses_have_no_reports(client, users, archived, site):
    client.force_login(users[Role.NURSE])
    assert client.get(reverse("analytics:reports")).status_code == 403
    response = client.get(reverse("analytics:report-download", args=[archived[site].pk]))
    assert response.status_code == 404


def test_a_data_manager_renders_the_current_month_now(
    client, data_manager, snapshots, site, settings, eager
):
    settings.IMMUNOREG_TODAY = "2024-10-31"
    client.force_login(data_manager)
    response = client.post(
        reverse("analytics:report-render"), {"scope": site.code, "language": "zh-hans"}
    )
    assert response.status_code == 302
    report = Report.objects.get()
    assert (report.site, report.month, report.language, report.trigger, report.created_by) == (
        site,
        date(2024, 10, 1),
        "zh-hans",
        Trigger.ON_DEMAND,
        data_manager,
    )


def test_rendering_the_whole_registry_needs_every_site(client, data_manager, snapshots):
    client.force_login(data_manager)
    response = client.post(reverse("analytics:report-render"), {"scope": "registry"})
    assert response.status_code == 403
    assert not Report.objects.exists()
