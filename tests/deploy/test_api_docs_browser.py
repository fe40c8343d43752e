"""The API documentation (Swagger UI and ReDoc, served by the app itself) renders under the
Content-Security-Policy in a real browser (Debian's chromium) with no violation reported, while
the rest of the site keeps its strict policy (no inline script, no inline style)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from registry.domain.vocabulary import Role
from tests import factories
from tests.deploy.test_csp_browser import (  # noqa: F401  (fixtures)
    browser_page,
    sign_in,
    violations,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module", autouse=True)
def live_server_connections_closed(idle_database_sessions_ended_last):
    """The live server's idle sessions are ended once every test has run (tests/conftest.py)."""


@pytest.fixture
def signed_in(browser_page, live_server):  # noqa: F811  (the fixture imported above)
    page, console = browser_page
    site = factories.SiteFactory(code="AHP")
    factories.UserFactory(username="manager", role=Role.DATA_MANAGER, sites=[site])
    sign_in(page, live_server.url, "manager")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
    return page, console


def test_swagger_ui_shows_the_api_with_no_policy_violation(signed_in, live_server):
    page, console = signed_in
    response = page.goto(f"{live_server.url}/api/schema/swagger/")
    assert response.status == 200
    expect(page.locator(".swagger-ui .info .title")).to_contain_text(
        "ImmunoReg API", timeout=30_000
    )
    expect(page.locator(".opblock").first).to_be_visible()
    page.wait_for_load_state("networkidle")
    assert violations(page, console) == []
    assert [line for line in console if "Refused" in line or "error" in line.lower()] == []


def test_redoc_shows_the_api_with_no_policy_violation(signed_in, live_server):
    page, console = signed_in
    response = page.goto(f"{live_server.url}/api/schema/redoc/")
    assert response.status == 200
    expect(page.locator("h1").first).to_contain_text("ImmunoReg API", timeout=30_000)
    expect(page.get_by_text("/api/v1/patients/").first).to_be_attached()
    page.wait_for_load_state("networkidle")
    assert violations(page, console) == []
    assert [line for line in console if "Refused" in line or "error" in line.lower()] == []


def test_the_docs_exceptions_stay_on_the_docs_pages(signed_in, live_server):
    page, _ = signed_in
    docs = page.goto(f"{live_server.url}/api/schema/redoc/").headers["content-security-policy"]
    assert "'nonce-" in docs
    for path in ("/worklist/", "/admin/", "/api/v1/patients/"):
        policy = page.goto(f"{live_server.url}{path}").headers["content-security-policy"]
        directives = dict(
            (part.split()[0], part.split()[1:]) for part in policy.split(";") if part.strip()
        )
        assert directives["script-src"] == ["'self'"], path
        assert directives["style-src"] == ["'self'"], path


def test_swagger_ui_sends_the_schema_to_no_outside_validator(client):
    """Off localhost Swagger UI would show a badge from validator.swagger.io, sending it the
    schema's address: refused by the policy, and nothing to send out of a hospital anyway."""
    site = factories.SiteFactory(code="AHP")
    client.force_login(factories.UserFactory(role=Role.DATA_MANAGER, sites=[site]))
    script = client.get("/api/schema/swagger/", {"script": ""}).content.decode()
    assert '"validatorUrl": null' in script
