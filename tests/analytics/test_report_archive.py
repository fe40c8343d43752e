"""The report archive: monthly on the 1st, on demand, listed and downloaded by scope, logged."""

from __future__ import annotations

import errno
from datetime import date

import pytest
from celery.signals import task_retry
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
from tests.disk import full_disk

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


# --- a full archive disk (a real one: tests/disk.py) -------------------------------------------


@pytest.fixture
def one_snapshot(users, site):
    demo.seed_scaled(20)
    return services.snapshot_compute(site=site, trigger=Trigger.COMMAND)


def test_a_report_archived_on_a_full_disk_leaves_no_file_and_no_row(one_snapshot, site, tmp_path):
    with full_disk(tmp_path) as disk:
        with pytest.raises(OSError) as raised:
            report_archive(
                site=site, month=Month.parse("2024-10"), language="en", trigger="monthly"
            )
        assert raised.value.errno == errno.ENOSPC
        assert disk.files() == []  # no truncated PDF under the report's name, no temporary file
    assert not Report.objects.exists()


def test_once_there_is_room_the_report_is_archived_once_under_its_own_name(
    one_snapshot, site, tmp_path
):
    month = Month.parse("2024-10")
    with full_disk(tmp_path) as disk:
        with pytest.raises(OSError):
            report_archive(site=site, month=month, language="en", trigger=Trigger.MONTHLY)
        disk.make_room()
        report = report_archive(site=site, month=month, language="en", trigger=Trigger.MONTHLY)
        [archived] = disk.files()  # one file: no leftover, no copy with a random suffix
        assert archived == tmp_path / report.pdf.name
        assert archived.name == f"immunoreg-AHP-2024-10-en-{report.pk}.pdf"
        assert archived.stat().st_size == report.size_bytes
        assert archived.read_bytes().startswith(b"%PDF-")
    assert report.download_name == "immunoreg-AHP-2024-10-en.pdf"


def test_the_monthly_run_on_a_full_disk_is_tried_again_and_completes_once_there_is_room(
    one_snapshot, tmp_path, settings, eager
):
    settings.IMMUNOREG_TODAY = "2024-11-01"
    retried = []

    def room_made(request=None, reason=None, **kwargs) -> None:
        retried.append(reason)
        disk.make_room()

    assert monthly_reports.retry_backoff and monthly_reports.max_retries <= 10  # bounded
    with full_disk(tmp_path) as disk:
        task_retry.connect(room_made, sender=monthly_reports)
        try:
            # Eager, the retry runs at once (a worker waits `retry_backoff`, 5 minutes at first).
            result = monthly_reports.apply(throw=False)
        finally:
            task_retry.disconnect(room_made, sender=monthly_reports)
        reports = Report.objects.filter(pk__in=result.get())
        assert len(retried) == 1 and "No space left on device" in str(retried[0])
        assert {(r.site_id, r.language) for r in reports} == {
            (one_snapshot.site_id, "en"),
            (one_snapshot.site_id, "zh-hans"),
        }
        assert disk.files() == sorted(tmp_path / r.pdf.name for r in reports)
