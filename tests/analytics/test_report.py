"""The monthly PDF, read back with pdftotext: its numbers are the snapshot's."""

from __future__ import annotations

import io
import subprocess
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import translation

from analytics import services
from analytics.models import Trigger
from analytics.report import formatting as fmt
from analytics.report.context import Month
from analytics.report.services import NoSnapshot, report_pdf
from registry.models import Site

MONTH = Month.parse("2024-10")


def pdf_text(pdf: bytes) -> str:
    """The PDF's text in reading order (each table cell whole), white space folded."""
    result = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True)
    return " ".join(result.stdout.decode().split())


@dataclass
class Rendered:
    output: dict[str, Any]
    fingerprint: str
    english: str
    chinese: str
    site_text: str
    pages: int


@pytest.fixture(scope="module")
def rendered(django_db_setup, django_db_blocker) -> Rendered:
    """The demo cohort, one snapshot per scope, the PDF in both languages; then rolled back."""
    with django_db_blocker.unblock(), transaction.atomic():
        call_command("seed_demo", stdout=io.StringIO())
        whole = services.snapshot_compute(site=None, trigger=Trigger.COMMAND)
        ahp = Site.objects.get(code="AHP")
        services.snapshot_compute(site=ahp, trigger=Trigger.COMMAND)
        translation.activate("zh-hans")  # a language left active must not leak into a report
        english, _ = report_pdf(site=None, month=MONTH, language="en")
        translation.deactivate()
        chinese, _ = report_pdf(site=None, month=MONTH, language="zh-hans")
        site_pdf, _ = report_pdf(site=ahp, month=MONTH, language="en")
        pages = subprocess.run(
            ["pdfinfo", "-"], input=english, capture_output=True, check=True
        ).stdout.decode()
        result = Rendered(
            whole.output,
            whole.fingerprint,
            pdf_text(english),
            pdf_text(chinese),
            pdf_text(site_pdf),
            int(next(line.split()[-1] for line in pages.splitlines() if line.startswith("Pages:"))),
        )
        transaction.set_rollback(True)
    return result


def test_the_title_page_names_the_scope_month_cut_off_and_snapshot(rendered):
    text = rendered.english
    assert "Monthly summary · 2024-10" in text
    assert "Whole registry" in text and "AHP, XHC" in text
    assert "2024-10-31" in text
    assert rendered.fingerprint in text


def test_the_crs_rates_are_the_snapshots(rendered):
    crs = rendered.output["crs"]
    for block in (crs["any"], crs["severe"]):
        for arm in ("blinatumomab", "car_t"):
            assert fmt.rate(block[arm]) in rendered.english
    assert "11/21 (52.4%; 95% CI 29.8–74.3)" in rendered.english
    assert "64/67 (95.5%" in rendered.english and "26/67 (38.8%" in rendered.english


def test_the_response_rates_are_the_snapshots(rendered):
    mrd = rendered.output["response"]["mrd_negative_cr"]
    assert fmt.rate(mrd["blinatumomab"]).startswith("19/21")
    assert fmt.rate(mrd["car_t"]).startswith("65/75")
    assert fmt.rate(mrd["blinatumomab"]) in rendered.english
    assert fmt.rate(mrd["car_t"]) in rendered.english


def test_the_medians_rates_and_p_values_are_the_snapshots(rendered):
    for endpoint in ("pfs", "os"):
        block = rendered.output["survival"][endpoint]
        km = block["car_t"]
        assert (
            f"{fmt.months(km['median_months'])} ({fmt.interval(km['median_ci95'])})"
            in rendered.english
        )
        assert fmt.percent(km["rate_12m"]) in rendered.english
        assert f"p {fmt.p_value(block['logrank']['p'])}" in rendered.english
    assert "NR (" in rendered.english  # blinatumomab medians not reached


def test_the_naive_transplant_test_is_marked_biased_beside_the_correct_ones(rendered):
    text = rendered.english
    assert "Naive log-rank (biased)" in text
    assert "immortal time" in text
    for label in ("Time-dependent Cox", "Mantel-Byar", "Landmark 90 days"):
        assert label in text
    naive = rendered.output["transplant"]["ucbt"]["car_t"]["naive_logrank"]
    assert f"p {fmt.p_value(naive['p'])}" in text


def test_the_figures_are_present_with_numbers_at_risk(rendered):
    assert rendered.english.count("Number at risk") >= 2  # PFS and OS (and Simon-Makuch)
    assert "Months since day 0" in rendered.english
    assert "CRS grade (ASTCT 2019 where derived)" in rendered.english


def test_every_page_is_numbered_on_a4(rendered):
    assert f"Page {rendered.pages} / {rendered.pages}" in rendered.english
    assert rendered.pages >= 5


def test_the_methods_paragraph_states_the_conventions(rendered):
    text = rendered.english
    assert "Clopper-Pearson" in text and "log(-log)" in text and "Efron" in text
    assert "30.4375 days" in text and "landmark analysis at 90 days" in text


def test_the_report_renders_in_simplified_chinese(rendered):
    with translation.override("zh-hans"):
        title = translation.gettext("Monthly summary")
    assert title != "Monthly summary"
    assert title in rendered.chinese
    assert "11/21" in rendered.chinese


def test_a_site_report_names_only_that_site(rendered):
    assert "AHP · Anhui Provincial Hospital" in rendered.site_text
    assert "Whole registry" not in rendered.site_text


@pytest.mark.django_db
def test_without_a_snapshot_the_report_says_so_in_plain_words():
    with pytest.raises(NoSnapshot, match="have not been computed yet") as missing:
        report_pdf(site=None, month=MONTH, language="en")
    assert "compute_analytics" not in str(missing.value)


@pytest.mark.django_db
def test_render_report_without_a_snapshot_names_the_command_that_computes_it(tmp_path):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="compute_analytics"):
        call_command("render_report", "--out", str(tmp_path / "r.pdf"))


@pytest.mark.django_db
def test_render_report_refuses_a_malformed_month(tmp_path):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="YYYY-MM"):
        call_command("render_report", "--month", "2024-13", "--out", str(tmp_path / "r.pdf"))


def test_the_report_language_does_not_depend_on_the_language_active_before(rendered):
    """The English report was rendered right after the Chinese one in the fixture's thread."""
    assert "整个" not in rendered.english and "Number at risk" in rendered.english


def test_the_competing_risks_adjusted_comparison_and_rmst_are_the_snapshots(rendered):
    text = " ".join(rendered.english.split())
    output = rendered.output
    assert "Relapse and non-relapse mortality (competing risks)" in text
    assert "inverse probability of treatment weighting" in text
    relapse = output["competing_risks"]["relapse"]["car_t"]
    assert f"{100 * relapse['at_24m']:.1f}%" in text
    rmst = output["rmst"]["pfs"]["24"]["blinatumomab"]
    assert f"{rmst['rmst']:.2f} ({rmst['se']:.2f})" in text
    assert "Aalen-Johansen" in text and "sandwich" in text  # the methods name them
    chinese = " ".join(rendered.chinese.split())
    assert "竞争风险" in chinese and "限制性平均生存时间" in chinese
