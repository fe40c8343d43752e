"""A research nurse at work, in a real browser."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import translation
from playwright.sync_api import expect

from registry import services
from registry.clock import today
from registry.domain.vocabulary import Role
from registry.models import CrsEpisode, FollowUpContact
from tests import factories
from tests.browser import walk

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ward(db):
    """A site, its nurse, and three patients like the demo cohort's."""
    site = factories.SiteFactory(code="AHP", name="Anhui Provincial Hospital")
    nurse = factories.UserFactory(
        username="nurse", first_name="Li", last_name="Na", role=Role.NURSE, sites=[site]
    )
    start = today() - timedelta(days=400)
    car_t = factories.patient(user=nurse, site=site, study_id="AHP-C001", diagnosis_date=start)
    car_t_treatment = factories.treatment(
        user=nurse, patient=car_t, day0=start + timedelta(days=30)
    )
    deceased = factories.patient(user=nurse, site=site, study_id="AHP-C002", diagnosis_date=start)
    deceased_treatment = factories.treatment(
        user=nurse, patient=deceased, day0=start + timedelta(days=30)
    )
    services.death_record(
        patient=deceased, user=nurse, date=start + timedelta(days=200), cause="disease"
    )
    recent = factories.patient(user=nurse, site=site, study_id="AHP-B021", diagnosis_date=start)
    recent_treatment = factories.treatment(
        user=nurse,
        patient=recent,
        arm="blinatumomab",
        day0=today() - timedelta(days=100),
        disease_burden="mrd_only",
        bm_blast_pct=1,
    )
    return {
        "nurse": nurse,
        "car_t": car_t_treatment,
        "deceased": deceased_treatment,
        "recent": recent_treatment,
    }


def sign_in(page, live_server, username="nurse"):
    walk.sign_in(page, live_server.url, username)


def test_a_nurse_signs_in_finds_a_patient_and_records_a_grade_3_crs_episode(
    page, live_server, ward, screenshot
):
    sign_in(page, live_server)
    expect(page).to_have_url(re.compile(r"/worklist/$"))
    expect(page.get_by_test_id("who")).to_contain_text("Research nurse")
    screenshot("worklist")

    page.get_by_role("link", name="Patients").click()
    page.get_by_placeholder("Study ID").fill("C001")
    page.get_by_role("button", name="Search").click()
    screenshot("patient-list")
    page.get_by_role("link", name="AHP-C001").click()
    expect(page.get_by_role("heading", name="AHP-C001")).to_be_visible()
    screenshot("patient-page")

    page.get_by_role("link", name="CRS episode").click()
    day0 = ward["car_t"].day0
    page.get_by_label("Onset").fill((day0 + timedelta(days=2)).isoformat())
    page.get_by_label("Maximum temperature (°C)").fill("39.4")
    page.get_by_label("Hypotension").select_option(label="Yes")
    page.get_by_label("Vasopressors (excluding vasopressin)").fill("1")
    page.get_by_label("Oxygen support").select_option("low_flow")
    page.get_by_label("O₂ flow (L/min)").fill("4")
    expect(page.get_by_test_id("astct-grade")).to_contain_text("Grade 3")
    screenshot("crs-form")
    page.get_by_role("button", name="Save").click()

    expect(page.locator("li[data-kind=crs]")).to_contain_text("grade 3")
    assert CrsEpisode.objects.get().derived_grade == 3


def test_a_follow_up_contact_after_death_is_refused(page, live_server, ward, screenshot):
    sign_in(page, live_server)
    deceased = ward["deceased"]
    page.goto(f"{live_server.url}/records/{deceased.pk}/contact/new/")
    page.get_by_label("Date").fill(today().isoformat())
    page.get_by_label("Disease status").select_option("remission")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".errorlist")).to_contain_text("cannot be dated after the death")
    screenshot("contact-after-death")
    assert not FollowUpContact.objects.filter(treatment=deceased).exists()


def test_a_day_100_follow_up_is_recorded_from_the_worklist(page, live_server, ward, screenshot):
    sign_in(page, live_server)
    row = page.get_by_role("row").filter(has_text="AHP-B021").filter(has_text="Day 100")
    expect(row).to_contain_text("Record follow-up")
    row.get_by_text("Record follow-up").click()
    expect(page.get_by_label("Date")).to_have_value(today().isoformat())
    page.get_by_label("Disease status").select_option("remission")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("li[data-kind=contact]")).to_contain_text("In remission")
    page.get_by_role("link", name="Worklist").click()
    expect(page.get_by_role("row").filter(has_text="AHP-B021")).to_have_count(0)
    screenshot("worklist-after-follow-up")


def test_switching_to_chinese_translates_the_page_and_is_remembered(
    page, live_server, ward, screenshot
):
    with translation.override("zh-hans"):
        worklist_zh = translation.gettext("Worklist")
        patients_zh = translation.gettext("Patients")
    assert worklist_zh != "Worklist", "the zh-hans catalogue must be compiled"
    sign_in(page, live_server)
    walk.switch_language(page, "zh-hans")
    expect(page.get_by_role("heading", level=1)).to_have_text(worklist_zh)
    expect(page.get_by_role("link", name=patients_zh)).to_be_visible()
    screenshot("worklist-zh-hans")
    page.get_by_role("button", name=translation.gettext("Sign out")).count()
    ward["nurse"].refresh_from_db()
    assert ward["nurse"].language == "zh-hans"
