"""A real browser: Playwright driving Debian's chromium (never a downloaded one)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


@pytest.fixture(scope="module")
def browser():
    # Playwright's sync API keeps an event loop running in this thread while the browser is
    # open; the tests' own ORM calls (and the database flush after each) are synchronous and
    # safe, so Django's async guard is lifted for as long as the browser runs.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


@pytest.fixture
def screenshot(page):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(name: str) -> None:
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    return take


@pytest.fixture(scope="module")
def clinic(django_db_setup, django_db_blocker, idle_database_sessions_ended_last):
    """Two sites, a user of each role, patients in every state of follow-up, and the analytics
    of every scope (tests/browser/clinic.py), served by a live server of the module's own.

    Built once for a whole module (building it takes longer than most walks): the module's tests
    are marked `django_db` without transaction, so nothing is flushed between them, and each
    keeps to its own patients where it writes through the pages. The database is emptied when
    the module ends. (On PostgreSQL the live server writes with its own connections, committed;
    on SQLite in memory it shares the test's, and a test's writes are undone after it.) Celery
    runs its tasks in-process, as in `make demo`, so a report rendered from the page is there to
    download."""
    from django.core.management import call_command
    from pytest_django.live_server_helper import LiveServer

    from config.celery import app as celery_app
    from tests.browser.clinic import build_clinic

    with django_db_blocker.unblock(), pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        patch.setitem(celery_app.conf, "task_always_eager", True)
        try:
            clinic = build_clinic()
            server = LiveServer("localhost")
            server._live_server_modified_settings.enable()
            try:
                clinic.url = server.url
                yield clinic
            finally:
                server._live_server_modified_settings.disable()
                server.stop()
        finally:
            call_command("flush", interactive=False, verbosity=0)
