""" "Labs due" on the worklist: a CAR-T treatment in days 0-30 whose ANC series has a gap of
more than 3 days (since its latest ANC from day 0 on, or since day 0 when none) as of today."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.urls import reverse

from registry import services
from registry.selectors import labs_due_for, worklist_sites
from tests import factories

pytestmark = pytest.mark.django_db
TODAY = date(2024, 10, 31)


@pytest.fixture(autouse=True)
def fixed_today(settings):
    settings.IMMUNOREG_TODAY = TODAY.isoformat()


def ago(days: int) -> date:
    return TODAY - timedelta(days=days)


def car_t(
    user, site, study_id: str, *, day0_ago: int, anc_ago: tuple[int, ...] | list[int] = (), **fields
):
    patient = factories.patient(
        user=user, site=site, study_id=study_id, diagnosis_date=ago(day0_ago + 60)
    )
    treatment = factories.treatment(user=user, patient=patient, day0=ago(day0_ago), **fields)
    if anc_ago:
        services.lab_series_save(
            treatment=treatment,
            rows=[{"date": ago(n), "anc_per_ul": 400} for n in anc_ago],
            user=user,
        )
    return treatment


def due(user) -> dict[str, int]:
    return {line.study_id: line.gap for line in labs_due_for(user=user, today=TODAY)}


def test_a_gap_of_3_days_is_not_due_and_of_4_days_is(nurse, site):
    car_t(nurse, site, "G3", day0_ago=10, anc_ago=[10, 3])
    car_t(nurse, site, "G4", day0_ago=10, anc_ago=[10, 4])
    assert due(nurse) == {"G4": 4}


def test_without_an_anc_the_gap_counts_from_day_0(nurse, site):
    car_t(nurse, site, "D3", day0_ago=3)
    car_t(nurse, site, "D4", day0_ago=4)
    car_t(nurse, site, "D0", day0_ago=0)
    assert due(nurse) == {"D4": 4}


def test_only_car_t_treatments_in_days_0_to_30_of_living_patients(nurse, site, other_site):
    car_t(nurse, site, "D30", day0_ago=30)
    car_t(nurse, site, "D31", day0_ago=31)
    car_t(nurse, site, "BLIN", day0_ago=10, arm="blinatumomab")
    dead = car_t(nurse, site, "DEAD", day0_ago=10)
    services.death_record(patient=dead.patient, user=nurse, date=ago(1), cause="disease")
    assert due(nurse) == {"D30": 30}


def test_a_nurse_sees_her_own_sites_only(nurse, administrator, site, other_site):
    car_t(nurse, site, "MINE", day0_ago=10)
    car_t(administrator, other_site, "THEIRS", day0_ago=10)
    assert set(due(nurse)) == {"MINE"}
    assert set(due(administrator)) == {"MINE", "THEIRS"}


def test_the_worklist_shows_labs_due_and_follows_the_lab_save(client, nurse, site):
    treatment = car_t(nurse, site, "LAB-1", day0_ago=12, anc_ago=[12, 6])
    client.force_login(nurse)
    page = client.get(reverse("worklist")).content.decode()
    section = page.split('<h2 id="labs-due"')[1].split("</section>")[0]
    assert "LAB-1" in section
    assert f"labs due: last ANC {ago(6).isoformat()}, 6 days ago" in section
    assert reverse("treatment-labs", args=[treatment.pk]) in section

    services.lab_series_save(
        treatment=treatment, rows=[{"date": ago(1), "anc_per_ul": 700}], user=nurse
    )
    page = client.get(reverse("worklist")).content.decode()
    section = page.split('<h2 id="labs-due"')[1].split("</section>")[0]
    assert "LAB-1" not in section


def test_labs_due_takes_one_query_whatever_the_number_of_treatments(
    nurse, site, django_assert_num_queries
):
    for n in range(12):
        car_t(nurse, site, f"Q{n}", day0_ago=5 + n, anc_ago=[5 + n, n % 6])
    sites = worklist_sites(user=nurse)
    with django_assert_num_queries(1):
        lines = labs_due_for(user=nurse, today=TODAY, sites=sites)
    assert {line.study_id for line in lines} == {f"Q{n}" for n in range(12) if n % 6 > 3}
