"""A report asked for on the reports page is rendered by a worker: the page shows its progress
(polled), then the download; a scope never computed is computed first; a failure is told in
plain words (run eagerly here; test_integration.py renders one on a real worker)."""

from __future__ import annotations

import logging

import pytest
from django.urls import reverse
from kombu.exceptions import OperationalError as BrokerOperationalError

from analytics import queue, services
from analytics.models import (
    RenderingFailure,
    RenderingStatus,
    Report,
    ReportRendering,
    Snapshot,
    Trigger,
)
from analytics.report import services as report_services
from config.celery import app as celery_app
from registry import demo
from registry.domain.vocabulary import Role
from tests.disk import full_disk

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.IMMUNOREG_TODAY = "2024-10-31"


@pytest.fixture
def eager(monkeypatch):
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)


@pytest.fixture
def cohort(users):
    return demo.seed_scaled(20)


@pytest.fixture
def pi(client, users):
    client.force_login(users[Role.PI])
    return users[Role.PI]


def ask(client, scope: str, language: str = "en"):
    return client.post(reverse("analytics:report-render"), {"scope": scope, "language": language})


def progress(client, rendering: ReportRendering) -> str:
    url = f"{reverse('analytics:reports')}?rendering={rendering.pk}"
    return client.get(url, headers={"HX-Request": "true"}).content.decode()


def test_the_request_only_queues_the_rendering_and_the_page_polls_its_progress(
    client, pi, cohort, site, monkeypatch
):
    sent = []
    monkeypatch.setitem(queue._senders, "render-report", lambda **kwargs: sent.append(kwargs))
    response = ask(client, site.code)
    rendering = ReportRendering.objects.get()
    assert sent == [{"rendering_id": rendering.pk}] and not Report.objects.exists()
    assert response["Location"].endswith(f"?rendering={rendering.pk}")
    page = client.get(response["Location"]).content.decode()
    assert 'data-testid="report-progress"' in page and "Waiting for a worker" in page
    partial = progress(client, rendering)
    assert "hx-trigger" in partial and "<html" not in partial


def test_when_done_the_progress_offers_the_download_and_stops_polling(
    client, pi, cohort, site, eager
):
    services.snapshot_compute(site=site, trigger=Trigger.COMMAND)
    ask(client, site.code, "zh-hans")
    rendering = ReportRendering.objects.get()
    assert rendering.status == RenderingStatus.DONE and rendering.report.language == "zh-hans"
    partial = progress(client, rendering)
    assert reverse("analytics:report-download", args=[rendering.report.pk]) in partial
    assert "hx-trigger" not in partial


def test_a_scope_never_computed_is_computed_first_then_rendered(client, pi, cohort, site, eager):
    assert Snapshot.objects.latest_complete(site) is None
    ask(client, site.code)
    rendering = ReportRendering.objects.get()
    snapshot = Snapshot.objects.latest_complete(site)
    assert rendering.status == RenderingStatus.DONE
    assert snapshot is not None and rendering.report.snapshot == snapshot
    assert snapshot.requested_by == pi and snapshot.figures.exists()


def test_a_failed_rendering_is_told_in_plain_words_and_logged_in_full(
    client, pi, cohort, site, eager, monkeypatch, caplog
):
    services.snapshot_compute(site=site, trigger=Trigger.COMMAND)

    def broken(*args, **kwargs):
        raise ValueError("WeasyPrint: cannot lay out table 7")

    monkeypatch.setattr(report_services, "render_pdf", broken)
    with caplog.at_level(logging.ERROR, logger="analytics.report.services"):
        ask(client, site.code)
    rendering = ReportRendering.objects.get()
    assert (rendering.status, rendering.failure) == (RenderingStatus.FAILED, RenderingFailure.ERROR)
    partial = progress(client, rendering)
    assert "could not be laid out" in partial and "WeasyPrint" not in partial
    assert "cannot lay out table 7" in caplog.text
    assert not Report.objects.exists()


def test_a_rendering_waiting_for_another_computation_gives_up_in_plain_words_when_eager(
    client, pi, cohort, site, eager
):
    services.snapshot_claim(site=None, trigger=Trigger.NIGHTLY)  # runs elsewhere, and goes on
    ask(client, site.code)
    rendering = ReportRendering.objects.get()
    assert (rendering.status, rendering.failure) == (RenderingStatus.FAILED, RenderingFailure.BUSY)
    assert "try again in a few minutes" in progress(client, rendering)


def test_nobody_follows_another_users_rendering(client, users, cohort, site, monkeypatch):
    monkeypatch.setitem(queue._senders, "render-report", lambda **kwargs: None)
    client.force_login(users[Role.DATA_MANAGER])
    ask(client, site.code)
    rendering = ReportRendering.objects.get()
    client.force_login(users[Role.PI])
    page = client.get(f"{reverse('analytics:reports')}?rendering={rendering.pk}").content.decode()
    assert 'data-testid="report-progress"' not in page


def test_a_rendering_delivered_twice_renders_once(users, cohort, site, eager):
    services.snapshot_compute(site=site, trigger=Trigger.COMMAND)
    rendering = ReportRendering.objects.create(
        site=site, month="2024-10-01", language="en", requested_by=users[Role.PI]
    )
    first = report_services.rendering_run(rendering.pk)
    assert report_services.rendering_run(rendering.pk) == first
    assert Report.objects.count() == 1


def test_a_rendering_on_a_full_archive_disk_says_so_and_leaves_nothing(
    client, pi, cohort, site, eager, tmp_path, caplog
):
    services.snapshot_compute(site=site, trigger=Trigger.COMMAND)
    with full_disk(tmp_path) as disk, caplog.at_level(logging.ERROR):
        ask(client, site.code)
        assert disk.files() == []
    rendering = ReportRendering.objects.get()
    assert (rendering.status, rendering.failure) == (
        RenderingStatus.FAILED,
        RenderingFailure.DISK_FULL,
    )
    assert "disk is full" in progress(client, rendering)
    assert "No space left on device" in caplog.text  # the detail, for the administrators
    assert not Report.objects.exists()


def test_a_rendering_the_broker_refuses_is_told_in_plain_words_without_the_brokers_address(
    client, pi, cohort, site, monkeypatch
):
    def refuse(**kwargs):
        raise BrokerOperationalError("Error 111 connecting to 10.1.2.3:6379. Connection refused.")

    monkeypatch.setitem(queue._senders, "render-report", refuse)
    ask(client, site.code)
    rendering = ReportRendering.objects.get()
    assert (rendering.status, rendering.failure) == (RenderingStatus.FAILED, RenderingFailure.QUEUE)
    partial = progress(client, rendering)
    assert "the task queue is not answering" in partial
    assert "10.1.2.3" not in partial and "6379" not in partial


# --- on-demand reports are kept within a limit ------------------------------------------------


def test_the_same_report_asked_for_again_while_on_its_way_is_not_rendered_twice(
    client, pi, cohort, site, monkeypatch
):
    sent = []
    monkeypatch.setitem(queue._senders, "render-report", lambda **kwargs: sent.append(kwargs))

    first, again = ask(client, site.code), ask(client, site.code)

    rendering = ReportRendering.objects.get()
    assert first["Location"] == again["Location"]
    assert sent == [{"rendering_id": rendering.pk}]


def test_a_user_may_ask_for_only_so_many_reports_a_day(
    client, pi, cohort, site, settings, monkeypatch
):
    settings.IMMUNOREG_REPORT_RENDERINGS_PER_DAY = 2
    monkeypatch.setitem(queue._senders, "render-report", lambda **kwargs: None)
    assert ask(client, site.code, "en")["Location"].endswith(
        f"?rendering={ReportRendering.objects.get().pk}"
    )
    ask(client, site.code, "zh-hans")

    ReportRendering.objects.update(status=RenderingStatus.DONE)

    refused = ask(client, site.code, "en")  # a third one today

    assert ReportRendering.objects.count() == 2
    assert refused["Location"] == reverse("analytics:reports")
    page = client.get(refused["Location"]).content.decode()
    assert "the most a day allows" in page


# --- a worker lost in the middle of a rendering (its lease, the watchdog) ----------------------


def _taken_up(rendering: ReportRendering, *, expired: bool) -> None:
    """The state a worker killed while laying out the PDF leaves: taken up, lease running or
    run out."""
    from datetime import timedelta

    from django.utils import timezone

    shift = -timedelta(seconds=1) if expired else timedelta(minutes=3)
    ReportRendering.objects.filter(pk=rendering.pk).update(
        status=RenderingStatus.RENDERING, lease_expires_at=timezone.now() + shift, attempts=1
    )


@pytest.fixture
def rendering(users, site):
    return ReportRendering.objects.create(
        site=site, month="2024-10-01", language="en", requested_by=users[Role.PI]
    )


def test_a_rendering_whose_worker_died_is_queued_again_and_rendered(
    rendering, cohort, site, monkeypatch
):
    services.snapshot_compute(site=site, trigger=Trigger.COMMAND)
    sent = []
    monkeypatch.setattr(queue, "send", lambda name, **kwargs: sent.append((name, kwargs)))
    _taken_up(rendering, expired=True)
    assert report_services.rendering_watch() == [rendering.pk]
    assert sent == [("render-report", {"rendering_id": rendering.pk})]
    rendering.refresh_from_db()
    assert (rendering.status, rendering.lease_expires_at) == (RenderingStatus.QUEUED, None)
    report_id = report_services.rendering_run(rendering.pk)  # the task sent again
    rendering.refresh_from_db()
    assert rendering.status == RenderingStatus.DONE and rendering.report_id == report_id
    assert rendering.attempts == 2 and Report.objects.count() == 1


def test_a_rendering_whose_lease_holds_is_left_to_its_worker(rendering, monkeypatch):
    monkeypatch.setattr(queue, "send", lambda name, **kwargs: pytest.fail("sent again"))
    _taken_up(rendering, expired=False)
    assert report_services.rendering_watch() == []
    # The lost task delivered again meanwhile does not render it a second time.
    assert report_services.rendering_run(rendering.pk) is None
    rendering.refresh_from_db()
    assert rendering.status == RenderingStatus.RENDERING and rendering.attempts == 1


def test_a_rendering_that_keeps_losing_its_worker_is_given_up_in_plain_words(
    client, pi, rendering, monkeypatch, caplog
):
    monkeypatch.setattr(queue, "send", lambda name, **kwargs: pytest.fail("sent again"))
    _taken_up(rendering, expired=True)
    ReportRendering.objects.filter(pk=rendering.pk).update(
        attempts=report_services.RENDERING_ATTEMPTS
    )
    with caplog.at_level(logging.ERROR):
        assert report_services.rendering_watch() == []
    rendering.refresh_from_db()
    assert (rendering.status, rendering.failure) == (
        RenderingStatus.FAILED,
        RenderingFailure.INTERRUPTED,
    )
    assert "lost its worker" in caplog.text
    assert "stopped before it was done" in progress(client, rendering)


def test_the_worker_renews_the_lease_while_it_renders(rendering):
    lease = report_services.RenderingLease(rendering.pk)
    assert not lease.renew()  # queued: nobody's to renew
    assert report_services.rendering_take_up(rendering.pk)
    before = ReportRendering.objects.get(pk=rendering.pk).lease_expires_at
    assert lease.renew()
    assert ReportRendering.objects.get(pk=rendering.pk).lease_expires_at >= before


def test_a_waiting_rendering_is_nobodys_until_its_task_comes_back(rendering):
    from datetime import timedelta

    report_services.rendering_waiting(rendering.pk, retry_in=timedelta(seconds=30))
    assert report_services.rendering_watch() == []  # its lease covers the wait
    assert report_services.rendering_take_up(rendering.pk)  # the task, back
