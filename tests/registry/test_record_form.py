"""The record form as a screen reader and a nurse at the bedside read it: every field points only
to descriptions that exist, errors are marked, and the CRS and ICANS forms show day 0, the onset's
day number and which finding the grade is waiting for."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import translation

from tests.factories import DAY0

pytestmark = pytest.mark.django_db


def described_by_ids(page: str) -> list[str]:
    return [
        name for value in re.findall(r'aria-describedby="([^"]*)"', page) for name in value.split()
    ]


def test_every_aria_describedby_names_an_element_of_the_page(client, nurse, treatment):
    client.force_login(nurse)
    response = client.post(
        reverse("record-edit", args=["treatment", treatment.pk]),
        {"arm": "car_t", "day0": "", "bm_blast_pct": "140"},  # errors, and no reason given
    )
    page = response.content.decode()
    ids = described_by_ids(page)
    assert "id_day0_error" in ids and "id_change_reason_helptext" in ids
    for name in ids:
        assert f'id="{name}"' in page, name


def test_a_field_in_error_is_marked_invalid_and_the_form_asks_for_focus(client, nurse, treatment):
    client.force_login(nurse)
    page = client.post(
        reverse("record-new", args=[treatment.pk, "crs"]), {"max_temperature_c": "-3"}
    ).content.decode()
    assert re.search(r'<input[^>]*aria-invalid="true"[^>]*id="id_onset"', page) or re.search(
        r'<input[^>]*id="id_onset"[^>]*aria-invalid="true"', page
    )
    assert "data-has-errors" in page


def test_the_crs_form_shows_the_treatments_day_0(client, nurse, treatment):
    client.force_login(nurse)
    page = client.get(reverse("record-new", args=[treatment.pk, "crs"])).content.decode()
    assert f"day 0 {DAY0.isoformat()}" in page


def test_while_the_crs_grade_cannot_be_derived_it_names_the_findings_it_waits_for(
    client, nurse, treatment
):
    client.force_login(nurse)
    url = f"{reverse('crs-grade')}?treatment={treatment.pk}"
    response = client.post(
        url, {"max_temperature_c": "39.2", "onset": (DAY0 + timedelta(days=3)).isoformat()}
    )
    page = response.content.decode()
    assert "Waiting for: Hypotension, Oxygen support" in page
    assert "Onset on day 3" in page
    assert (
        "Waiting for"
        not in client.post(
            url, {"max_temperature_c": "39.2", "hypotension": "false", "oxygen": "none"}
        ).content.decode()
    )


def test_the_icans_grade_waits_for_the_ice_score_in_the_readers_language(client, nurse, treatment):
    nurse.language = "zh-hans"
    nurse.save(update_fields=["language"])
    client.force_login(nurse)
    page = client.post(reverse("icans-grade"), {"consciousness": "awake"}).content.decode()
    with translation.override("zh-hans"):
        waiting = translation.gettext("Waiting for:")
    assert waiting != "Waiting for:" and waiting in page
    assert "ICE" in page


def test_the_grade_of_another_sites_treatment_gives_no_day_number(
    client, nurse, administrator, other_site
):
    from tests import factories

    elsewhere = factories.patient(user=administrator, site=other_site, study_id="X-1")
    treatment = factories.treatment(user=administrator, patient=elsewhere)
    client.force_login(nurse)
    response = client.post(
        f"{reverse('crs-grade')}?treatment={treatment.pk}",
        {"onset": (DAY0 + timedelta(days=3)).isoformat()},
    )
    assert response.status_code == 200 and "Onset on day" not in response.content.decode()
