"""The pages work under the Content-Security-Policy, in a real browser (Debian's chromium): the
CRS form's live ASTCT grade (htmx) appears as findings are typed, and the browser reports no
violation of the policy on the nurses' pages, the analytics pages or the admin."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from playwright.sync_api import expect, sync_playwright

from analytics import services as analytics
from registry.domain.vocabulary import Role
from tests import factories
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "correct-horse-battery"
# Pages report violations to the console and as `securitypolicyviolation` events.
WATCH = """
window.__violations = [];
document.addEventListener("securitypolicyviolation",
  (event) => window.__violations.push(event.violatedDirective + " " + event.blockedURI));
"""


@pytest.fixture(scope="module", autouse=True)
def live_server_connections_closed(idle_database_sessions_ended_last):
    """The live server's idle sessions are ended once every test has run (tests/conftest.py)."""


@pytest.fixture
def browser_page(monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(10_000)
        page.add_init_script(WATCH)
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        yield page, console
        browser.close()


def violations(page, console: list[str]) -> list[str]:
    reported = page.evaluate("window.__violations")
    return reported + [line for line in console if "Content Security Policy" in line]


def sign_in(page, url: str, username: str) -> None:
    page.goto(f"{url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_the_live_crs_grade_works_under_the_policy_with_no_violation(browser_page, live_server):
    page, console = browser_page
    site = factories.SiteFactory(code="AHP")
    nurse = factories.UserFactory(username="nurse", role=Role.NURSE, sites=[site])
    factories.UserFactory(username="manager", role=Role.DATA_MANAGER, sites=[site])
    patient = factories.patient(user=nurse, site=site, study_id="AHP-C001")
    treatment = factories.treatment(user=nurse, patient=patient, day0=date(2024, 3, 1))
    analytics.snapshot_compute(site=site, trigger="command")

    sign_in(page, live_server.url, "nurse")
    assert (
        "script-src 'self'"
        in page.goto(f"{live_server.url}/worklist/").headers["content-security-policy"]
    )
    page.goto(f"{live_server.url}/records/{treatment.pk}/crs/new/")
    page.get_by_label("Onset").fill((date(2024, 3, 1) + timedelta(days=2)).isoformat())
    page.get_by_label("Maximum temperature (°C)").fill("39.4")
    page.get_by_label("Hypotension").select_option(label="Yes")
    page.get_by_label("Vasopressors (excluding vasopressin)").fill("1")
    page.get_by_label("Oxygen support").select_option("low_flow")
    page.get_by_label("O₂ flow (L/min)").fill("4")
    expect(page.get_by_test_id("astct-grade")).to_contain_text("Grade 3")
    for path in ("/patients/", f"/patients/{patient.pk}/"):
        page.goto(f"{live_server.url}{path}")
    assert violations(page, console) == []

    page.context.clear_cookies()
    sign_in(page, live_server.url, "manager")
    for path in ("/analytics/", "/analytics/scopes/AHP/", "/admin/", "/admin/registry/patient/"):
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("networkidle")
        assert violations(page, console) == [], path
