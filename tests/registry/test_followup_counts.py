"""One definition of due, overdue and lost serves the worklist, the data-quality queries, the
analytics and the monthly report (issue #12).

On generated registries: every living patient is in exactly the worklist sections that
registry.domain.followup.follow_up puts them in, and the overdue and lost counts agree across
the worklist, the open queries, the analytics' completeness block and the report's activity.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.core.cache import cache
from django.db import transaction
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.frames import analysis_frames
from analytics.services import ARMS, completeness
from registry import quality
from registry.domain.followup import follow_up
from registry.models import (
    DataQualityQuery,
    Death,
    FollowUpContact,
    Patient,
    QueryKind,
    Treatment,
)
from registry.selectors import monthly_activity, worklist_for

pytestmark = pytest.mark.django_db

TODAY = date(2024, 10, 31)  # the demo's clock

# One patient: their treatments (days before today, arm), their contacts (days after the
# treatment they are recorded under, kept on or before today) and whether they died.
treatment_plans = st.tuples(st.integers(0, 2600), st.sampled_from(["car_t", "blinatumomab"]))
patient_plans = st.fixed_dictionaries(
    {
        "site": st.integers(0, 1),
        "treatments": st.lists(treatment_plans, min_size=0, max_size=2),
        # (which treatment, days after its day 0)
        "contacts": st.lists(st.tuples(st.integers(0, 1), st.integers(0, 2600)), max_size=8),
        "died": st.booleans(),
    }
)
registries = st.lists(patient_plans, min_size=1, max_size=8)


def write(plans: list[dict], sites) -> None:
    """The registry written directly (a read-side test), valid as the services would keep it:
    contacts on or after their treatment's day 0 and not after today, death after them."""
    for number, plan in enumerate(plans):
        site = sites[plan["site"]]
        patient = Patient.objects.create(
            site=site, study_id=f"{site.code}-{number:03d}", sex="F", year_of_birth=1980
        )
        treatments = [
            Treatment.objects.create(
                patient=patient,
                arm=arm,
                day0=TODAY - timedelta(days=before),
                disease_burden="morphologic",
                bm_blast_pct=40,
                relapse_status="first_relapse",
            )
            for before, arm in plan["treatments"]
        ]
        dates = []
        for which, after in plan["contacts"]:
            if treatments:
                treatment = treatments[which % len(treatments)]
                on = min(treatment.day0 + timedelta(days=after), TODAY)
                FollowUpContact.objects.create(
                    treatment=treatment, date=on, disease_status="remission"
                )
                dates.append(on)
        if plan["died"]:
            Death.objects.create(
                patient=patient,
                date=max([*dates, *(t.day0 for t in treatments)], default=TODAY),
                cause="disease",
            )


def defined_sections() -> tuple[set, set, set]:
    """Due, overdue and lost as the definition gives them, patient by patient."""
    due, overdue, lost = set(), set(), set()
    for patient in Patient.objects.all():
        treatments = list(patient.treatments.values_list("pk", "day0"))
        found = follow_up(
            treatments=treatments,
            contacts=FollowUpContact.objects.filter(treatment__patient=patient).values_list(
                "date", flat=True
            ),
            today=TODAY,
            alive=not Death.objects.filter(patient=patient).exists(),
        )
        due |= {(patient.pk, v.treatment, v.status.visit.name) for v in found.due}
        overdue |= {(patient.pk, v.treatment, v.status.visit.name) for v in found.overdue}
        if found.lost:
            lost.add(patient.pk)
    return due, overdue, lost


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plans=registries)
def test_worklist_queries_analytics_and_report_agree_on_due_overdue_and_lost(
    plans, site, other_site, administrator
):
    with transaction.atomic():
        write(plans, [site, other_site])
        cache.clear()  # written directly: no data version tells the cached worklist of it
        quality.refresh_all(today=TODAY)
        due, overdue, lost = defined_sections()

        worklist = worklist_for(user=administrator, today=TODAY)
        assert {(w.patient_pk, w.treatment_pk, w.visit) for w in worklist.due} == due
        assert {(w.patient_pk, w.treatment_pk, w.visit) for w in worklist.overdue} == overdue
        assert {w.patient_pk for w in worklist.lost} == lost
        assert len(worklist.lost) == len(lost)  # one line per patient lost

        queries = DataQualityQuery.objects.filter(is_open=True)
        assert {
            (q.patient_id, q.key) for q in queries.filter(kind=QueryKind.FOLLOW_UP_OVERDUE)
        } == {(p, f"t{t}:{visit}") for p, t, visit in overdue}
        assert (
            set(
                queries.filter(kind=QueryKind.LOST_TO_FOLLOW_UP).values_list(
                    "patient_id", flat=True
                )
            )
            == lost
        )

        frames = analysis_frames()
        block = completeness(frames.treatments, frames.open_queries, as_of=TODAY)
        assert sum(block[arm]["lost_to_follow_up"] for arm in ARMS) == len(lost)
        assert sum(
            block[arm]["open_queries"].get(QueryKind.FOLLOW_UP_OVERDUE, 0) for arm in ARMS
        ) == len(overdue)

        activity = monthly_activity(site_ids=None, first=TODAY.replace(day=1), last=TODAY)
        assert activity["overdue"] == len(worklist.overdue)
        transaction.set_rollback(True)


def test_a_lost_patient_whose_next_window_is_open_is_due_and_lost_on_the_worklist(
    client, site, nurse, settings
):
    """AHP-C077 of the demo was in the queries as lost but in none of the worklist's sections:
    last contact inside the year-3 window (done), more than 180 days ago, and the year-4
    window open today."""
    settings.IMMUNOREG_TODAY = TODAY.isoformat()
    last_contact = date(2023, 9, 24)
    patient = Patient.objects.create(site=site, study_id="AHP-C077", sex="M", year_of_birth=1990)
    treatment = Treatment.objects.create(
        patient=patient, arm="car_t", day0=last_contact - timedelta(days=1095)
    )
    FollowUpContact.objects.create(
        treatment=treatment, date=last_contact, disease_status="remission"
    )
    quality.refresh_all(today=TODAY)
    assert DataQualityQuery.objects.filter(
        patient=patient, kind=QueryKind.LOST_TO_FOLLOW_UP, is_open=True
    ).exists()

    worklist = worklist_for(user=nurse, today=TODAY)
    assert [(w.study_id, w.visit) for w in worklist.due] == [("AHP-C077", "year4")]
    assert [(w.study_id, w.last_seen) for w in worklist.lost] == [("AHP-C077", last_contact)]

    client.force_login(nurse)
    page = client.get(reverse("worklist")).content.decode()
    due_section = page.split('id="due-now"')[1].split('id="overdue"')[0]
    lost_section = page.split('id="lost"')[1].split('id="queries"')[0]
    assert "AHP-C077" in due_section and "Record follow-up (Year 4)" in due_section
    assert "AHP-C077" in lost_section and "2023-09-24" in lost_section
