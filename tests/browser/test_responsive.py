"""Every research nurse's page at the bedside: on a 390x844 phone, a 768x1024 tablet and a
1280x900 desktop nothing leaves the screen sideways, the patient search stays readable, and the
live ASTCT grade sits above Save, in sight while the findings are typed. Screenshots of each
page at each size go to var/screenshots/responsive-*.png for people to look at."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect

from registry import services
from registry.clock import today
from registry.domain.vocabulary import Role
from registry.models import CrsEpisode
from tests import factories
from tests.browser.axe import assert_no_serious_violations
from tests.browser.conftest import SCREENSHOTS

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "correct-horse-battery"
VIEWPORTS = {
    "phone": {"width": 390, "height": 844},
    "tablet": {"width": 768, "height": 1024},
    "desktop": {"width": 1280, "height": 900},
}

# Everything on the page that sticks out of the viewport sideways. An element inside a box that
# scrolls sideways (a wide table) is judged by that box; what a closed <details> hides, by its
# absence.
OVERFLOW = """() => {
  const width = window.innerWidth;
  const problems = [];
  if (document.documentElement.scrollWidth > width) {
    problems.push(`the page is ${document.documentElement.scrollWidth} px wide`);
  }
  const scrolls = (element) => {
    for (let up = element.parentElement; up && up !== document.body; up = up.parentElement) {
      const overflow = getComputedStyle(up).overflowX;
      if (overflow === "auto" || overflow === "scroll") return true;
    }
    return false;
  };
  const name = (element) => element.tagName.toLowerCase()
    + (element.id ? "#" + element.id : "")
    + (element.className && typeof element.className === "string"
       ? "." + element.className.trim().split(/\\s+/).join(".") : "");
  for (const element of document.body.querySelectorAll("*")) {
    const box = element.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;
    if (getComputedStyle(element).visibility === "hidden") continue;
    if (scrolls(element)) continue;
    if (box.left < -1 || box.right > width + 1) {
      problems.push(`${name(element)} spans ${Math.round(box.left)}-${Math.round(box.right)}`
        + ` px: "${(element.innerText || "").trim().slice(0, 40)}"`);
    }
  }
  return problems;
}"""

# Form controls too narrow to read what is chosen in them (the patient search's "A").
NARROW_CONTROLS = """() => [...document.querySelectorAll(
    "main input:not([type=checkbox]):not([type=radio]):not([type=hidden]), main select"
  )].filter(control => control.getBoundingClientRect().width > 0
    && control.getBoundingClientRect().width < 120)
   .map(control => `${control.name}: ${Math.round(control.getBoundingClientRect().width)} px`)"""


@pytest.fixture
def ward(db):
    """A nurse's site with a CAR-T patient who has had CRS, ICANS and a response, a patient
    with a day-100 visit due, and one who died."""
    site = factories.SiteFactory(code="AHP", name="Anhui Provincial Hospital")
    nurse = factories.UserFactory(
        username="nurse", first_name="Li", last_name="Na", role=Role.NURSE, sites=[site]
    )
    start = today() - timedelta(days=400)
    patient = factories.patient(user=nurse, site=site, study_id="AHP-C001", diagnosis_date=start)
    car_t = factories.treatment(user=nurse, patient=patient, day0=start + timedelta(days=30))
    crs = services.record_create(
        CrsEpisode,
        user=nurse,
        treatment=car_t,
        onset=car_t.day0 + timedelta(days=2),
        max_temperature_c=39.4,
        hypotension=True,
        vasopressors=1,
        oxygen="low_flow",
        o2_flow_l_min=4,
    )
    recent = factories.patient(user=nurse, site=site, study_id="AHP-B021", diagnosis_date=start)
    due = factories.treatment(
        user=nurse,
        patient=recent,
        arm="blinatumomab",
        day0=today() - timedelta(days=100),
        disease_burden="mrd_only",
        bm_blast_pct=1,
    )
    deceased = factories.patient(user=nurse, site=site, study_id="AHP-C002", diagnosis_date=start)
    factories.treatment(user=nurse, patient=deceased, day0=start + timedelta(days=30))
    services.death_record(
        patient=deceased, user=nurse, date=start + timedelta(days=200), cause="disease"
    )
    return {"nurse": nurse, "patient": patient, "car_t": car_t, "crs": crs, "due": due}


def nurse_pages(ward) -> dict[str, str]:
    """Every page of a research nurse's day, by name."""
    patient, car_t = ward["patient"], ward["car_t"]
    pages = {
        "worklist": "/worklist/",
        "patients": "/patients/",
        "patient": f"/patients/{patient.pk}/",
        "new-patient": "/patients/new/",
        "edit-patient": f"/records/patient/{patient.pk}/",
        "edit-treatment": f"/records/treatment/{car_t.pk}/",
        "new-treatment": f"/records/{patient.pk}/treatment/new/",
    }
    for kind in (
        "crs",
        "icans",
        "response",
        "transplant",
        "relapse",
        "contact",
        *("infection", "iec_hs", "ivig", "persistence", "second_cancer"),
    ):
        pages[f"new-{kind}"] = f"/records/{car_t.pk}/{kind}/new/"
    pages["edit-crs"] = f"/records/crs/{ward['crs'].pk}/"
    pages["record-death"] = f"/records/{patient.pk}/death/new/"
    return pages


@pytest.fixture
def signed_in(browser, live_server, ward):
    """A signed-in nurse's browser context at each size in turn."""
    contexts = []

    def at(size: str):
        context = browser.new_context(viewport=VIEWPORTS[size], locale="en-GB")
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)  # a loaded CI machine
        page.goto(f"{live_server.url}/accounts/login/")
        page.get_by_label("Username").fill("nurse")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(f"{live_server.url}/worklist/")
        return page

    yield at
    for context in contexts:
        context.close()


@pytest.mark.parametrize("size", VIEWPORTS)
def test_every_nurse_page_fits_the_screen_and_its_grade_is_above_save(
    size, signed_in, live_server, ward
):
    page = signed_in(size)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, path in nurse_pages(ward).items():
        page.goto(f"{live_server.url}{path}")
        expect(page.locator("main h1")).to_be_visible()
        # Every section open, as a nurse working through the lost and the queries has it.
        page.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")
        page.screenshot(path=str(SCREENSHOTS / f"responsive-{size}-{name}.png"), full_page=True)
        assert page.evaluate(OVERFLOW) == [], f"{name} at {size}"
        assert page.evaluate(NARROW_CONTROLS) == [], f"{name} at {size}"
        # The header's controls are on the screen, not pushed off it.
        for control in (
            page.get_by_test_id("language"),
            page.get_by_role("button", name="Sign out"),
        ):
            expect(control).to_be_in_viewport()
        if name in ("new-crs", "new-icans", "edit-crs"):
            grade, save = (
                page.get_by_test_id("astct-grade"),
                page.get_by_role("button", name="Save"),
            )
            # In sight from the start, while the first findings are typed...
            expect(grade).to_be_in_viewport()
            # ...and above Save, so it is read before saving.
            assert (
                grade.bounding_box()["y"] + grade.bounding_box()["height"]
                <= (save.bounding_box()["y"])
            ), f"{name} at {size}"


def test_the_patient_search_stacks_its_filters_on_a_phone(signed_in, live_server, ward):
    page = signed_in("phone")
    page.goto(f"{live_server.url}/patients/")
    boxes = [
        page.get_by_label(label).bounding_box()
        for label in ("Study ID", "Arm", "Site", "Vital status")
    ]
    assert [box["x"] for box in boxes] == [boxes[0]["x"]] * 4  # one under the other
    assert all(box["width"] >= 300 for box in boxes)


@pytest.mark.parametrize("size", ["phone", "desktop"])
def test_nurse_pages_have_no_serious_accessibility_violation(size, signed_in, live_server, ward):
    page = signed_in(size)
    for path in nurse_pages(ward).values():
        page.goto(f"{live_server.url}{path}")
        assert_no_serious_violations(page)


@pytest.mark.parametrize("language", ["en", "zh-hans"])
@pytest.mark.parametrize("role", [Role.NURSE, Role.DATA_MANAGER, Role.PI, Role.ADMINISTRATOR])
def test_every_roles_header_fits_a_phone(role, language, browser, live_server, ward):
    """The administrator's header has the most links; they wrap rather than leave the screen."""
    factories.UserFactory(
        username=f"{role}-user",
        role=role,
        sites=[ward["nurse"].sites.get()],
        is_superuser=False,
        language=language,
    )
    context = browser.new_context(viewport=VIEWPORTS["phone"], locale="en-GB")
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(f"{live_server.url}/accounts/login/")
        page.get_by_label("Username").fill(f"{role}-user")
        page.get_by_label("Password").fill(PASSWORD)
        page.locator("form button[type=submit]").click()
        expect(page.get_by_test_id("who")).to_be_in_viewport()
        name = f"responsive-phone-home-{role}-{language}"
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
        assert page.evaluate(OVERFLOW) == [], name
        for control in ("language", "sign-out"):
            expect(page.get_by_test_id(control)).to_be_in_viewport()
    finally:
        context.close()


@pytest.mark.parametrize("size", VIEWPORTS)
def test_the_sign_in_page_fits_each_screen(size, browser, live_server):
    context = browser.new_context(viewport=VIEWPORTS[size], locale="en-GB")
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(f"{live_server.url}/accounts/login/")
        page.screenshot(path=str(SCREENSHOTS / f"responsive-{size}-sign-in.png"), full_page=True)
        assert page.evaluate(OVERFLOW) == []
        assert page.evaluate(NARROW_CONTROLS) == []
    finally:
        context.close()


def test_on_a_phone_the_grade_follows_the_findings_in_sight_of_save(signed_in, live_server, ward):
    page = signed_in("phone")
    car_t = ward["car_t"]
    page.goto(f"{live_server.url}/records/{car_t.pk}/crs/new/")
    expect(page.get_by_test_id("day0")).to_contain_text(f"day 0 {car_t.day0.isoformat()}")
    grade = page.get_by_test_id("astct-grade")
    expect(grade).to_contain_text("Waiting for: Maximum temperature (°C), Hypotension")
    page.get_by_label("Onset").fill((car_t.day0 + timedelta(days=4)).isoformat())
    page.get_by_label("Maximum temperature (°C)").fill("39.4")
    page.get_by_label("Hypotension").select_option(label="Yes")
    expect(grade).to_contain_text("Waiting for: Vasopressors")
    expect(grade).to_contain_text("Onset on day 4")
    page.get_by_label("Vasopressors (excluding vasopressin)").fill("1")
    page.get_by_label("Oxygen support").select_option("none")
    expect(grade).to_contain_text("Grade 3")
    # Typed near the top of the form, the grade is on the screen, above Save.
    expect(grade).to_be_in_viewport()
    save = page.get_by_role("button", name="Save")
    expect(save).to_be_in_viewport()
    assert grade.bounding_box()["y"] + grade.bounding_box()["height"] <= save.bounding_box()["y"]
    page.screenshot(path=str(SCREENSHOTS / "responsive-phone-crs-grade-3.png"))
