"""What a keyboard or screen-reader user meets on the forms: after a failed save the focus is on
the first field in error, whose description is its message; a link to a field (#id_<field>)
lands on that field; and axe-core finds no serious or critical violation on the pages, with
errors shown, in English and Chinese."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect

from registry.clock import today
from registry.domain.vocabulary import Role
from tests import factories
from tests.browser import walk
from tests.browser.axe import assert_no_serious_violations

pytestmark = pytest.mark.django_db(transaction=True)

FOCUSED = "() => document.activeElement && document.activeElement.id"
# The ids that the focused field's aria-describedby names, and whether each exists.
DESCRIPTIONS = """() => (document.activeElement.getAttribute("aria-describedby") || "")
  .split(/\\s+/).filter(Boolean)
  .map(id => [id, document.getElementById(id) ? document.getElementById(id).innerText : null])"""


@pytest.fixture
def ward(db):
    site = factories.SiteFactory(code="AHP", name="Anhui Provincial Hospital")
    users = {
        role: factories.UserFactory(username=str(role), role=role, sites=[site]) for role in Role
    }
    start = today() - timedelta(days=200)
    patient = factories.patient(
        user=users[Role.NURSE], site=site, study_id="AHP-C001", diagnosis_date=start
    )
    treatment = factories.treatment(
        user=users[Role.NURSE], patient=patient, day0=start + timedelta(days=30)
    )
    return {"users": users, "patient": patient, "treatment": treatment}


def sign_in(page, live_server, username: str) -> None:
    page.set_default_timeout(30_000)  # a loaded CI machine
    walk.sign_in(page, live_server.url, username)
    expect(page.get_by_test_id("who")).to_be_visible()


def test_after_a_failed_save_the_focus_is_on_the_first_field_in_error(
    page, live_server, ward, screenshot
):
    sign_in(page, live_server, "nurse")
    treatment = ward["treatment"]
    page.goto(f"{live_server.url}/records/{treatment.pk}/crs/new/")
    page.get_by_label("Onset").fill((treatment.day0 - timedelta(days=3)).isoformat())
    page.get_by_label("Maximum temperature (°C)").fill("-3")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".errorlist").first).to_be_visible()
    screenshot("crs-form-errors-focused")
    assert page.evaluate(FOCUSED) == "id_onset"
    descriptions = page.evaluate(DESCRIPTIONS)
    assert descriptions and all(text for _id, text in descriptions), descriptions
    assert page.locator("#id_onset").get_attribute("aria-invalid") == "true"
    assert_no_serious_violations(page)


def test_a_link_to_a_field_lands_the_keyboard_on_that_field(page, live_server, ward):
    sign_in(page, live_server, "nurse")
    page.goto(f"{live_server.url}/records/treatment/{ward['treatment'].pk}/#id_crs_status")
    expect(page.locator("#id_crs_status")).to_be_focused()


@pytest.mark.parametrize("language", ["en", "zh-hans"])
@pytest.mark.parametrize("role", [Role.NURSE, Role.DATA_MANAGER, Role.PI, Role.ADMINISTRATOR])
def test_the_pages_of_each_roles_home_and_forms_pass_axe(page, live_server, ward, role, language):
    user = ward["users"][role]
    user.language = language
    user.save(update_fields=["language"])
    sign_in(page, live_server, str(role))
    assert_no_serious_violations(page)  # the home
    pages = ["/patients/", f"/patients/{ward['patient'].pk}/"]
    if role in (Role.NURSE, Role.DATA_MANAGER, Role.ADMINISTRATOR):
        pages += [f"/records/{ward['treatment'].pk}/{kind}/new/" for kind in ("icans", "iec_hs")]
    for path in pages:
        page.goto(f"{live_server.url}{path}")
        assert_no_serious_violations(page)


def test_the_sign_in_page_passes_axe(page, live_server):
    page.goto(f"{live_server.url}/accounts/login/")
    assert_no_serious_violations(page)
    page.get_by_label("Username").fill("nobody")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    assert_no_serious_violations(page)
