"""A research nurse enters a CAR-T patient's laboratory values in a real browser: she pastes a
month of counts from a spreadsheet into the treatment's lab grid, saves it, and sees the ANC
curve and the derived ICAHT grade with the rule that gave it; "labs due" on her worklist leads
to the grid and goes once the ANC is recorded. In English and Chinese, at desktop and phone
sizes, with axe on every page."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import translation
from playwright.sync_api import expect

from registry import services
from registry.clock import today
from registry.domain.vocabulary import Role
from registry.models import LabValue
from tests import factories
from tests.browser import walk

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ward(db):
    site = factories.SiteFactory(code="AHP", name="Anhui Provincial Hospital")
    nurse = factories.UserFactory(
        username="nurse", first_name="Li", last_name="Na", role=Role.NURSE, sites=[site]
    )
    factories.UserFactory(username="pi", role=Role.PI, sites=[site])

    def car_t(study_id: str, days_ago: int):
        day0 = today() - timedelta(days=days_ago)
        patient = factories.patient(
            user=nurse, site=site, study_id=study_id, diagnosis_date=day0 - timedelta(days=90)
        )
        return factories.treatment(user=nurse, patient=patient, day0=day0)

    return {"nurse": nurse, "month": car_t("AHP-C101", 45), "recent": car_t("AHP-C102", 12)}


def month_of_counts(treatment) -> str:
    """Days 0-29 as a spreadsheet copies them: a header row, tab-separated cells; ANC at or
    below 500/µL on days 1-7."""
    lines = ["Date\tANC\tPLT\tHb\tCRP\tFerritin\tIgG\tCD19"]
    for n in range(30):
        anc = 300 if 1 <= n <= 7 else 2500
        when = (treatment.day0 + timedelta(days=n)).isoformat()
        lines.append(f"{when}\t{anc}\t{30 + n}\t8.{n % 10}\t15\t800\t4.5\t0")
    return "\n".join(lines)


def sign_in(page, live_server, language: str) -> None:
    page.set_default_timeout(30_000)
    walk.sign_in(page, live_server.url, "nurse")
    if language != "en":
        walk.switch_language(page, language)


def say(language: str, message: str, **values) -> str:
    text = walk.in_language(language, message)
    return text % values if values else text


@pytest.mark.parametrize("size", ["desktop", "phone"])
@pytest.mark.parametrize("language", walk.LANGUAGES)
def test_a_nurse_pastes_a_month_of_counts_and_sees_the_grade(
    page, live_server, ward, language, size
):
    treatment = ward["month"]
    sign_in(page, live_server, language)
    with walk.viewport(page, size):
        walk.visit(page, f"{live_server.url}/patients/{treatment.patient.pk}/")
        page.get_by_test_id("labs-link").first.click()
        expect(page.get_by_role("heading", level=1)).to_have_text(
            say(language, "Laboratory values and ICAHT")
        )
        walk.check_page(page, language, f"lab-grid-empty-{language}-{size}")

        page.get_by_label(say(language, "Paste from a spreadsheet")).fill(
            month_of_counts(treatment)
        )
        page.get_by_role("button", name=say(language, "Put into the grid")).click()
        expect(page.get_by_test_id("paste-notes")).to_be_visible()
        expect(page.locator("#id_lab-29-anc_per_ul")).to_have_value("2500")
        assert not LabValue.objects.filter(treatment=treatment).exists()
        walk.check_page(page, language, f"lab-grid-pasted-{language}-{size}")

        page.get_by_role("button", name=say(language, "Save"), exact=True).click()
        early = page.get_by_test_id("icaht-early")
        expect(early).to_contain_text(say(language, "grade %(grade)s", grade=2))
        expect(early).to_contain_text(
            say(language, "ANC at or below 500/µL on %(days_500)s days of days 0-30.", days_500=7)
        )
        expect(page.get_by_test_id("anc-curve")).to_be_visible()
        assert LabValue.objects.filter(treatment=treatment).count() == 30
        walk.check_page(page, language, f"lab-grid-saved-{language}-{size}")


@pytest.mark.parametrize("language", walk.LANGUAGES)
def test_labs_due_on_the_worklist_lead_to_the_grid_and_go_once_the_anc_is_saved(
    page, live_server, ward, language
):
    treatment = ward["recent"]
    sign_in(page, live_server, language)
    walk.visit(page, f"{live_server.url}/worklist/")
    due = page.get_by_test_id("labs-due").get_by_role("row").filter(has_text="AHP-C102")
    with translation.override(language):
        line = translation.ngettext(
            "labs due: no ANC since day 0, %(gap)s day ago",
            "labs due: no ANC since day 0, %(gap)s days ago",
            12,
        ) % {"gap": 12}
    expect(due).to_contain_text(line)
    walk.check_page(page, language, f"worklist-labs-due-{language}")
    due.get_by_role("link", name=re.compile(say(language, "Enter laboratory values"))).click()

    # day numbers from day 0, commas, no header
    page.get_by_label(say(language, "Paste from a spreadsheet")).fill(
        "\n".join(f"{n},{3000 if n < 3 else 400}" for n in range(13))
    )
    page.get_by_role("button", name=say(language, "Put into the grid")).click()
    page.get_by_role("button", name=say(language, "Save"), exact=True).click()
    expect(page.get_by_test_id("icaht-early")).to_be_visible()
    assert LabValue.objects.filter(treatment=treatment).count() == 13

    walk.visit(page, f"{live_server.url}/worklist/")
    expect(page.get_by_test_id("labs-due")).to_have_count(0)


@pytest.mark.parametrize("language", walk.LANGUAGES)
def test_a_wrong_value_is_shown_at_its_cell_and_the_keyboard_lands_there(
    page, live_server, ward, language
):
    treatment = ward["month"]
    sign_in(page, live_server, language)
    walk.visit(page, f"{live_server.url}/treatments/{treatment.pk}/labs/")
    page.locator("#id_lab-0-date").fill(treatment.day0.isoformat())
    page.locator("#id_lab-0-anc_per_ul").fill("1200")
    page.locator("#id_lab-1-date").fill((treatment.day0 + timedelta(days=1)).isoformat())
    page.locator("#id_lab-1-anc_per_ul").fill("abc")
    page.get_by_role("button", name=say(language, "Save"), exact=True).click()

    expect(page.get_by_test_id("grid-errors")).to_be_visible()
    expect(page.locator("#id_lab-1-anc_per_ul")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#id_lab-1-anc_per_ul")).to_be_focused()
    expect(page.locator("#id_lab-1-anc_per_ul_error")).to_be_visible()
    expect(page.get_by_test_id("grid-errors")).to_contain_text(
        walk.in_language(language, "ANC (cells/µL)")
    )
    assert not LabValue.objects.filter(treatment=treatment).exists()
    walk.check_page(page, language, f"lab-grid-errors-{language}")
    with walk.viewport(page, "phone"):
        walk.check_page(page, language, f"lab-grid-errors-{language}-phone")


def test_a_pi_reads_the_grid_and_the_grade_without_inputs(page, live_server, ward):
    treatment = ward["month"]
    services.lab_series_save(
        treatment=treatment,
        rows=[
            {"date": treatment.day0 + timedelta(days=n), "anc_per_ul": 300 if n < 9 else 2000}
            for n in range(20)
        ],
        user=ward["nurse"],
    )
    page.set_default_timeout(30_000)
    walk.sign_in(page, live_server.url, "pi")
    walk.visit(page, f"{live_server.url}/treatments/{treatment.pk}/labs/")
    expect(page.get_by_test_id("lab-grid")).to_be_visible()
    expect(page.locator("#id_lab-0-anc_per_ul")).to_have_count(0)
    expect(page.get_by_test_id("icaht-early")).to_contain_text("grade")
    walk.check_page(page, "en", "lab-grid-pi")
    with walk.viewport(page, "phone"):
        walk.check_page(page, "en", "lab-grid-pi-phone")
