"""Each role's working day in a real browser, in English and in Chinese (issue #12).

A research nurse at AHP, a nurse at the second site XHC, the PI and the data manager each sign
in and do what their day asks of them at a desktop; then every page of each role is checked at
tablet and phone sizes. On every page: it fits the screen, axe finds no serious accessibility
problem, and it speaks the user's language (tests/browser/walk.py).
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib import admin
from playwright.sync_api import Page, expect

from registry.clock import today
from registry.models import CrsEpisode, DataQualityQuery, FollowUpContact, QueryKind
from tests.browser.clinic import Clinic
from tests.browser.walk import (
    LANGUAGES,
    check_page,
    in_language,
    open_every_details,
    screenshot,
    sign_in,
    switch_language,
    viewport,
    visit,
)

# Not transactional: the module's tests share one registry (the `clinic` fixture), unflushed.
pytestmark = pytest.mark.django_db


def section(page: Page, heading: str):
    """The part of a page under a heading that starts with `heading` (counts may follow)."""
    return page.locator("section").filter(
        has=page.get_by_role("heading", name=re.compile("^" + re.escape(heading)))
    )


def count_in(part) -> int:
    """The count its heading shows beside its title ("Overdue visits 3")."""
    return int(re.findall(r"\d+", part.get_by_role("heading").first.inner_text())[-1])


def begin_the_day(page: Page, url: str, username: str, language: str) -> None:
    sign_in(page, url, username)
    if language != "en":
        switch_language(page, language)


# --- the research nurse ----------------------------------------------------------------------

DESCRIBED_BY = """
(name) => {
  const field = document.querySelector(`[name="${name}"]`);
  const ids = (field.getAttribute("aria-describedby") || "").split(/\\s+/).filter(Boolean);
  const below = field.getBoundingClientRect().bottom;
  return {
    invalid: field.getAttribute("aria-invalid"),
    missing: ids.filter((id) => !document.getElementById(id)),
    beside: ids.map((id) => document.getElementById(id)).filter(Boolean)
      .filter((element) => element.innerText.trim()
        && Math.abs(element.getBoundingClientRect().top - below) < 100)
      .map((element) => element.innerText.trim()),
  };
}
"""

FOCUS = """
() => {
  const focused = document.activeElement;
  const first = document.querySelector("[aria-invalid=true]");
  const describedBy = (first && first.getAttribute("aria-describedby") || "").split(/\\s+/);
  return {
    focused: focused ? focused.outerHTML.slice(0, 120) : null,
    first: first ? first.getAttribute("name") : null,
    onFirstError: !!focused && (focused === first || describedBy.includes(focused.id)),
  };
}
"""


def assert_error_beside(page: Page, name: str) -> str:
    """The field is marked invalid and its message is beside it, tied to it by
    aria-describedby (which names no element that does not exist)."""
    found = page.evaluate(DESCRIBED_BY, name)
    assert found["invalid"] == "true", f"{name} is not marked invalid"
    assert not found["missing"], f"{name} is described by missing elements {found['missing']}"
    assert found["beside"], f"{name} has no error message beside it"
    return " ".join(found["beside"])


def assert_no_database_message(page: Page) -> None:
    text = page.locator("body").inner_text()
    assert "Constraint" not in text and "violated" not in text, text[:2000]


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_research_nurse_s_day(page, clinic: Clinic, language):
    def say(message: str) -> str:
        return in_language(language, message)

    crs_patient, due_patient = Clinic.WALKS[language]["crs"], Clinic.WALKS[language]["due"]
    begin_the_day(page, clinic.url, "nurse", language)
    expect(page).to_have_url(re.compile(r"/worklist/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(say("Worklist"))
    check_page(page, language, f"nurse-{language}-desktop-worklist")

    # Every patient in the worklist's section their follow-up puts them in.
    expect(section(page, say("Visits due now"))).to_contain_text(due_patient)
    expect(section(page, say("Overdue visits"))).to_contain_text("AHP-C002")
    expect(section(page, say("Lost to follow-up"))).to_contain_text("AHP-C003")
    # ...and the worklist's counts are those of the data-quality queries (one definition).
    for heading, kind in (
        ("Overdue visits", QueryKind.FOLLOW_UP_OVERDUE),
        ("Lost to follow-up", QueryKind.LOST_TO_FOLLOW_UP),
    ):
        queries = DataQualityQuery.objects.filter(
            patient__site=clinic.ahp, kind=kind, is_open=True
        ).count()
        assert count_in(section(page, say(heading))) == queries, heading

    # She finds her patient...
    page.locator("header").get_by_role("link", name=say("Patients"), exact=True).click()
    page.get_by_role("searchbox").fill(crs_patient.removeprefix("AHP-"))
    page.locator("form[role=search] [type=submit]").click()
    page.get_by_role("link", name=crs_patient).click()
    expect(page.get_by_role("heading", level=1, name=crs_patient)).to_be_visible()
    check_page(page, language, f"nurse-{language}-desktop-patient")

    # ...and records today's CRS episode. A first save with a negative temperature and an
    # onset before day 0 shows both errors at once, each beside its field, focus on the first.
    page.get_by_role("link", name=say("CRS episode"), exact=True).click()
    day0 = clinic.treatments[crs_patient].day0
    page.locator("[name=onset]").fill((day0 - timedelta(days=3)).isoformat())
    page.locator("[name=max_temperature_c]").fill("-1")
    page.get_by_role("button", name=say("Save"), exact=True).click()
    expect(page.locator("[name=onset]")).to_have_attribute("aria-invalid", "true")
    errors = [assert_error_beside(page, name) for name in ("onset", "max_temperature_c")]
    focus = page.evaluate(FOCUS)
    assert focus["first"] == "onset" and focus["onFirstError"], focus
    assert_no_database_message(page)
    check_page(page, language, f"nurse-{language}-desktop-crs-errors")

    # A resolution before the onset is refused beside the resolution, in the page's language.
    page.locator("[name=onset]").fill((day0 + timedelta(days=2)).isoformat())
    page.locator("[name=resolution]").fill((day0 + timedelta(days=1)).isoformat())
    page.locator("[name=max_temperature_c]").fill("39.4")
    page.get_by_role("button", name=say("Save"), exact=True).click()
    expect(page.locator("[name=resolution]")).to_have_attribute("aria-invalid", "true")
    errors.append(assert_error_beside(page, "resolution"))
    assert_no_database_message(page)
    if language != "en":
        assert all(HAN.search(error) for error in errors), f"messages not in Chinese: {errors}"
    check_page(page, language, f"nurse-{language}-desktop-crs-resolution-error")
    assert not CrsEpisode.objects.filter(treatment=clinic.treatments[crs_patient]).exists()

    # The grade appears as the findings are typed, above the Save button.
    # (Grade 3 comes with the last finding, so the grade checked is the one shown last.)
    page.locator("[name=resolution]").fill("")
    page.locator("[name=oxygen]").select_option("low_flow")
    page.locator("[name=o2_flow_l_min]").fill("4")
    page.locator("[name=hypotension]").select_option("true")
    page.locator("[name=vasopressors]").fill("1")
    grade = page.get_by_test_id("astct-grade")
    expect(grade).to_contain_text(say("Grade %(grade)s") % {"grade": 3})
    assert_grade_above_save(page, language)
    check_page(page, language, f"nurse-{language}-desktop-crs-form")
    page.get_by_role("button", name=say("Save"), exact=True).click()
    expect(page.locator("li[data-kind=crs]")).to_contain_text(say("grade %(grade)s") % {"grade": 3})
    assert CrsEpisode.objects.get(treatment=clinic.treatments[crs_patient]).derived_grade == 3

    # The day-100 visit, recorded from the worklist: the link names the visit.
    page.locator("header").get_by_role("link", name=say("Worklist"), exact=True).click()
    day100 = say("Day %(n)s") % {"n": 100}
    due_row = section(page, say("Visits due now")).get_by_role("row").filter(has_text=due_patient)
    due_row.locator("a").filter(has_text=re.compile(re.escape(day100))).click()
    expect(page.locator("[name=date]")).to_have_value(today().isoformat())
    check_page(page, language, f"nurse-{language}-desktop-follow-up-form")
    page.locator("[name=disease_status]").select_option("remission")
    page.get_by_role("button", name=say("Save"), exact=True).click()
    expect(page.locator("li[data-kind=contact]").last).to_contain_text(say("In remission"))
    assert FollowUpContact.objects.filter(
        treatment=clinic.treatments[due_patient], date=today()
    ).exists()
    page.locator("header").get_by_role("link", name=say("Worklist"), exact=True).click()
    expect(section(page, say("Visits due now"))).not_to_contain_text(due_patient)
    check_page(page, language, f"nurse-{language}-desktop-worklist-after-follow-up")


def assert_grade_above_save(page: Page, language: str) -> None:
    # The box the grade is written into (its content is replaced as findings are typed).
    grade = (
        page.locator("[aria-live]").filter(has=page.get_by_test_id("astct-grade")).bounding_box()
    )
    save = page.get_by_role("button", name=in_language(language, "Save"), exact=True)
    save_box = save.bounding_box()
    assert grade is not None and save_box is not None
    assert grade["y"] + grade["height"] <= save_box["y"] + 1, (
        f"at {page.viewport_size['width']}px the ASTCT grade (top {grade['y']:.0f}px) is not "
        f"above the Save button (top {save_box['y']:.0f}px)"
    )


# --- the nurse at the second site --------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_nurse_at_the_second_site_sees_only_her_site(page, clinic: Clinic, language):
    def say(message: str) -> str:
        return in_language(language, message)

    begin_the_day(page, clinic.url, "nurse_xhc", language)
    expect(page).to_have_url(re.compile(r"/worklist/$"))
    open_every_details(page)
    expect(section(page, say("Visits due now"))).to_contain_text("XHC-C001")
    expect(section(page, say("Visits due now"))).to_contain_text("XHC-B002")
    expect(page.locator("main")).not_to_contain_text("AHP-")
    check_page(page, language, f"nurse_xhc-{language}-desktop-worklist")

    page.locator("header").get_by_role("link", name=say("Patients"), exact=True).click()
    expect(page.get_by_role("link", name="XHC-C001")).to_be_visible()
    expect(page.locator("main")).not_to_contain_text("AHP-")
    check_page(page, language, f"nurse_xhc-{language}-desktop-patients")

    # Another site's patient, and a form on their treatment, do not exist for her.
    other = clinic.treatments["AHP-C001"]
    for path in (f"/patients/{other.patient.pk}/", f"/records/{other.pk}/contact/new/"):
        response = page.goto(f"{clinic.url}{path}")
        assert response is not None and response.status == 404, (path, response.status)
        expect(page.locator("body")).not_to_contain_text("AHP-C001")


# --- the PI --------------------------------------------------------------------------------------


HAN = re.compile(r"[\u4e00-\u9fff]")


def figure_sources(page: Page) -> list[str]:
    return page.locator("main img").evaluate_all(
        "(images) => images.map((image) => image.src).filter((src) => src.includes('/figures/'))"
    )


def figure_bodies(page: Page, sources: list[str]) -> list[bytes]:
    bodies = []
    for source in sources:
        response = page.request.get(source)
        assert response.ok, f"{source} answered {response.status}"
        assert response.headers["content-type"].startswith("image/svg+xml")
        bodies.append(response.body())
    return bodies


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_pi_s_day(page, clinic: Clinic, language):
    def say(message: str) -> str:
        return in_language(language, message)

    sign_in(page, clinic.url, "pi")
    # Her home is the analytics and the reports, not the nurses' worklist.
    expect(page).to_have_url(re.compile(r"/analytics/(reports/)?$"))
    if language != "en":
        switch_language(page, language)
    check_page(page, language, f"pi-{language}-desktop-home")

    # Her site's analytics are computed and shown.
    page.locator("header a[href$='/analytics/']").first.click()
    expect(page.locator("main")).not_to_contain_text(say("Not computed yet"))
    check_page(page, language, f"pi-{language}-desktop-analytics")
    page.locator("main a[href$='/analytics/scopes/AHP/']").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("AHP")
    expect(page.locator("main table").first).to_be_visible()
    expect(page.locator("main")).not_to_contain_text(say("Not computed yet"))
    sources = figure_sources(page)
    assert sources, "the scope page shows the snapshot's figures"
    bodies = figure_bodies(page, sources)
    check_page(page, language, f"pi-{language}-desktop-scope")

    # The figures change language with the page (new addresses: no cached image in the old one).
    other = "zh-hans" if language == "en" else "en"
    switch_language(page, other)
    switched = figure_sources(page)
    assert len(switched) == len(sources)
    assert not set(switched) & set(sources), "figure addresses must change with the language"
    switched_bodies = figure_bodies(page, switched)
    assert all(a != b for a, b in zip(bodies, switched_bodies, strict=True))
    chinese, english = (bodies, switched_bodies) if language != "en" else (switched_bodies, bodies)
    assert all(HAN.search(body.decode()) for body in chinese), "Chinese figures speak Chinese"
    assert not any(HAN.search(body.decode()) for body in english), "English ones English"
    switch_language(page, language)

    # This month's report for her site, rendered now and downloaded.
    page.locator("header a[href$='/analytics/reports/']").first.click()
    check_page(page, language, f"pi-{language}-desktop-reports")
    page.locator("main select[name=scope]").select_option("AHP")
    page.locator("main select[name=language]").select_option(language)
    # A Celery task renders it (in-process here, so the request waits for it) and the page
    # follows its progress, then offers the download.
    page.get_by_role("button", name=say("Render"), exact=True).click(timeout=120_000)
    progress = page.get_by_test_id("report-progress")
    expect(progress).to_be_visible()
    download_link = progress.locator("a").filter(has_text=say("Download PDF"))
    expect(download_link).to_be_visible(timeout=120_000)
    assert_speaks_no_command(page)
    screenshot(page, f"pi-{language}-desktop-report-rendered")
    with page.expect_download() as download:
        download_link.click()
    with open(download.value.path(), "rb") as pdf:
        assert pdf.read(5) == b"%PDF-"


def assert_speaks_no_command(page: Page) -> None:
    text = page.locator("body").inner_text()
    for words in ("manage.py", "compute_analytics", "render_report"):
        assert words not in text, f"{page.url} tells the user to run {words!r}"


# --- the data manager ------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_data_manager_s_day(page, clinic: Clinic, language):
    def say(message: str) -> str:
        return in_language(language, message)

    sign_in(page, clinic.url, "datamanager")
    # His home is the queries and the exchange of data, not the nurses' worklist.
    expect(page).not_to_have_url(re.compile(r"/worklist/$"))
    if language != "en":
        switch_language(page, language)
    home = page.url
    check_page(page, language, f"datamanager-{language}-desktop-home")
    export_link = page.locator("a[href$='/export/']").first
    import_link = page.locator("a[href$='/admin/registry/importrun/upload/']").first
    queries_link = page.locator("a[href*='/admin/registry/dataqualityquery/']").first
    expect(export_link).to_be_visible()
    expect(import_link).to_be_visible()
    expect(queries_link).to_be_visible()

    # The export page, from a link; a de-identified CSV from it.
    export_link.click()
    expect(page).to_have_url(re.compile(r"/export/$"))
    check_page(page, language, f"datamanager-{language}-desktop-export")
    page.locator("select[name=format]").select_option("csv")
    page.locator("input[name=deidentify]").check()
    with page.expect_download() as download:
        page.get_by_test_id("export-form").locator("[type=submit]").click()
    with open(download.value.path(), encoding="utf-8") as csv:
        assert "arm" in csv.readline()

    # The import page says how large a file may be, in words a person reads.
    page.goto(home)
    import_link.click()
    expect(page).to_have_url(re.compile(r"/importrun/upload/$"))
    text = page.locator("body").inner_text()
    assert "IMMUNOREG_MAX_UPLOAD_BYTES" not in text and "settings" not in text.lower()
    assert re.search(r"\d+(\.\d+)?\s?(MB|GB|KB|MiB|GiB|兆字节)", text), text[:3000]
    check_page(page, language, f"datamanager-{language}-desktop-import")

    # The admin's queries: the open ones (the closed one hidden), a page at a time.
    page.goto(home)
    queries_link.click()
    closed = clinic.closed_query
    still_open = DataQualityQuery.objects.get(
        patient=clinic.patient("AHP-C002"), kind=QueryKind.BASELINE_INCOMPLETE
    )
    expect(page.locator(f"a[href*='/dataqualityquery/{still_open.pk}/change/']")).to_have_count(1)
    expect(page.locator(f"a[href*='/dataqualityquery/{closed.pk}/change/']")).to_have_count(0)
    expect(page.locator(".paginator")).to_be_visible()
    query_admin = admin.site._registry[DataQualityQuery]
    assert query_admin.list_per_page <= 100
    check_page(page, language, f"datamanager-{language}-desktop-queries")


# --- every page at tablet and phone sizes ------------------------------------------------------


def pages_of(clinic: Clinic) -> dict[str, list[tuple[str, str]]]:
    """(name, path) of the pages each role works with."""
    t = clinic.treatments
    # One page of each template a nurse uses (the record forms share theirs: the longest, and
    # the two with a live grade).
    nurse = [
        ("home", "/"),
        ("patients-search", "/patients/?study_id=C00&arm=car_t&vital_status=alive"),
        ("patient", f"/patients/{clinic.patient('AHP-C002').pk}/"),
        ("patient-died", f"/patients/{clinic.patient('AHP-C004').pk}/"),
        ("treatment-edit", f"/records/treatment/{t['AHP-C002'].pk}/"),
        ("crs-form", f"/records/{t['AHP-C001'].pk}/crs/new/"),
        ("icans-form", f"/records/{t['AHP-C001'].pk}/icans/new/"),
        ("follow-up-form", f"/records/{t['AHP-B021'].pk}/contact/new/"),
    ]
    return {
        "nurse": nurse,
        "nurse_xhc": [
            ("home", "/"),
            ("patients", "/patients/"),
            ("patient", f"/patients/{clinic.patient('XHC-C001').pk}/"),
            ("follow-up-form", f"/records/{t['XHC-C001'].pk}/contact/new/"),
        ],
        "pi": [
            ("home", "/"),
            ("analytics", "/analytics/"),
            ("scope", "/analytics/scopes/AHP/"),
            ("reports", "/analytics/reports/"),
            ("export", "/export/"),
            ("patients", "/patients/"),
            ("patient", f"/patients/{clinic.patient('AHP-C002').pk}/"),
        ],
        "datamanager": [
            ("home", "/"),
            ("queries", "/admin/registry/dataqualityquery/"),
            ("import", "/admin/registry/importrun/upload/"),
            ("export", "/export/"),
            ("admin", "/admin/"),
            ("analytics", "/analytics/"),
            ("scope", "/analytics/scopes/AHP/"),
            ("recompute", "/analytics/recompute/"),
            ("patient", f"/patients/{clinic.patient('AHP-C002').pk}/"),
        ],
    }


SEARCH_CONTROLS_NARROWER_THAN = """
(least) => [...document.querySelectorAll("form[role=search] input, form[role=search] select")]
  .filter((control) => control.getBoundingClientRect().width < least)
  .map((control) => `${control.name} is ${Math.round(control.getBoundingClientRect().width)}px`)
"""


@pytest.mark.parametrize("username", ["nurse", "nurse_xhc", "pi", "datamanager"])
def test_every_page_of_a_role_works_on_a_tablet_and_a_phone(page, clinic: Clinic, username):
    sign_in(page, clinic.url, username)
    problems: list[str] = []
    for language in LANGUAGES:
        # The header's menu switches the language, and the user's choice is remembered.
        visit(page, f"{clinic.url}/")
        switch_language(page, language)
        for name, path in pages_of(clinic)[username]:
            # Each page is loaded once per language and seen at both sizes, as a tablet
            # turned or a window narrowed would show it; axe runs once (same markup).
            visit(page, f"{clinic.url}{path}")
            for size in ("tablet", "phone"):
                with viewport(page, size):
                    try:
                        check_page(
                            page,
                            language,
                            f"{username}-{language}-{size}-{name}",
                            accessibility=size == "phone",
                        )
                        if name == "crs-form":
                            assert_grade_above_save(page, language)
                        if name.startswith("patients"):
                            narrow = page.evaluate(SEARCH_CONTROLS_NARROWER_THAN, 100)
                            assert not narrow, f"unreadable search filters: {narrow}"
                    except AssertionError as problem:
                        problems.append(f"[{language} {size} {name}] {problem}")
    assert not problems, "\n".join(problems)
