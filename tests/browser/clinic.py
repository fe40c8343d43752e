"""A small registry like a real one, for walking each role's day in a browser.

Two sites: AHP (a research nurse, a PI and a data manager) and XHC (a second nurse). At AHP a
patient in the middle of CAR-T treatment, one with a day-100 visit due, one with a visit
overdue and an incomplete baseline (an open query), one lost to follow-up, one who died, and
one whose query the data manager closed; at XHC two patients with visits due. Every date counts from the project's clock
(registry.clock.today), and every scope a user can see has a computed analytics snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import ClassVar

from analytics import services as analytics
from registry import quality, services
from registry.clock import today
from registry.domain.vocabulary import Role
from registry.models import (
    CrsEpisode,
    DataQualityQuery,
    FollowUpContact,
    Patient,
    QueryKind,
    ResponseAssessment,
    Site,
    Treatment,
    User,
)
from tests import factories

PASSWORD = "correct-horse-battery"


@dataclass
class Clinic:
    ahp: Site
    xhc: Site
    users: dict[str, User]  # by username: nurse, nurse_xhc, pi, datamanager
    treatments: dict[str, Treatment] = field(default_factory=dict)  # by study ID
    url: str = ""  # where the live server serves it
    closed_query: DataQualityQuery | None = None  # closed by the data manager

    # The nurse's walk writes (a CRS episode, a follow-up): in each language on patients of
    # its own, so that the walks do not depend on their order.
    WALKS: ClassVar[dict[str, dict[str, str]]] = {
        "en": {"crs": "AHP-C001", "due": "AHP-B021"},
        "zh-hans": {"crs": "AHP-C011", "due": "AHP-B031"},
    }

    def patient(self, study_id: str) -> Patient:
        return self.treatments[study_id].patient


def days_ago(days: int) -> date:
    return today() - timedelta(days=days)


def build_clinic() -> Clinic:
    ahp = factories.SiteFactory(code="AHP", name="Anhui Provincial Hospital")
    xhc = factories.SiteFactory(code="XHC", name="Xinhua Hospital")
    users = {
        "nurse": factories.UserFactory(
            username="nurse", first_name="Li", last_name="Na", role=Role.NURSE, sites=[ahp]
        ),
        "nurse_xhc": factories.UserFactory(
            username="nurse_xhc", first_name="Wang", last_name="Fang", role=Role.NURSE, sites=[xhc]
        ),
        "pi": factories.UserFactory(
            username="pi", first_name="Zhou", last_name="Jian", role=Role.PI, sites=[ahp]
        ),
        "datamanager": factories.UserFactory(
            username="datamanager",
            first_name="Chen",
            last_name="Min",
            role=Role.DATA_MANAGER,
            sites=[ahp],
        ),
    }
    clinic = Clinic(ahp=ahp, xhc=xhc, users=users)
    nurse, nurse_xhc = users["nurse"], users["nurse_xhc"]

    def enrol(study_id, *, site, user, day0_days_ago, arm="car_t", **baseline) -> Treatment:
        day0 = days_ago(day0_days_ago)
        patient = factories.patient(
            user=user, site=site, study_id=study_id, diagnosis_date=day0 - timedelta(days=90)
        )
        treatment = factories.treatment(user=user, patient=patient, arm=arm, day0=day0, **baseline)
        clinic.treatments[study_id] = treatment
        return treatment

    def contact(treatment: Treatment, *, day: int, user=nurse) -> None:
        services.record_create(
            FollowUpContact,
            user=user,
            treatment=treatment,
            date=treatment.day0 + timedelta(days=day),
            disease_status="remission",
        )

    def remission(treatment: Treatment, *, day: int, user=nurse) -> None:
        services.record_create(
            ResponseAssessment,
            user=user,
            treatment=treatment,
            date=treatment.day0 + timedelta(days=day),
            response="cr",
            bm_blast_pct=1,
        )

    for walk in Clinic.WALKS.values():
        # In the middle of CAR-T treatment: the nurse records its CRS episode today.
        enrol(walk["crs"], site=ahp, user=nurse, day0_days_ago=12)
        # Day-100 visit due now (its window is day 80 to day 120).
        due = enrol(
            walk["due"],
            site=ahp,
            user=nurse,
            day0_days_ago=100,
            arm="blinatumomab",
            disease_burden="mrd_only",
            bm_blast_pct=1,
        )
        remission(due, day=28)
        contact(due, day=28)
    # Day-100 visit overdue (its window closed ten days ago), and the baseline's marrow blasts
    # missing: two open queries.
    overdue = enrol("AHP-C002", site=ahp, user=nurse, day0_days_ago=130, bm_blast_pct=None)
    remission(overdue, day=28)
    contact(overdue, day=28)
    # Lost to follow-up: alive, last seen 400 days ago.
    lost = enrol("AHP-C003", site=ahp, user=nurse, day0_days_ago=500)
    remission(lost, day=28)
    contact(lost, day=28)
    contact(lost, day=100)
    # Died on day 200, after a grade 2 CRS.
    died = enrol("AHP-C004", site=ahp, user=nurse, day0_days_ago=400)
    services.record_create(
        CrsEpisode,
        user=nurse,
        treatment=died,
        onset=died.day0 + timedelta(days=2),
        resolution=died.day0 + timedelta(days=6),
        max_temperature_c=39.1,
        hypotension=True,
        vasopressors=0,
        oxygen="none",
    )
    remission(died, day=28)
    contact(died, day=28)
    services.death_record(
        patient=died.patient, user=nurse, date=died.day0 + timedelta(days=200), cause="disease"
    )

    # At XHC: a day-100 visit and a month-6 visit due.
    xhc_due = enrol("XHC-C001", site=xhc, user=nurse_xhc, day0_days_ago=95)
    remission(xhc_due, day=28, user=nurse_xhc)
    contact(xhc_due, day=28, user=nurse_xhc)
    xhc_month6 = enrol("XHC-B002", site=xhc, user=nurse_xhc, day0_days_ago=170, arm="blinatumomab")
    remission(xhc_month6, day=28, user=nurse_xhc)
    contact(xhc_month6, day=28, user=nurse_xhc)
    contact(xhc_month6, day=100, user=nurse_xhc)

    # A query the data manager closed (the data cannot fix it): the admin's list hides it by
    # default, as it shows the open ones.
    assessed_elsewhere = enrol("AHP-C005", site=ahp, user=nurse, day0_days_ago=75)
    contact(assessed_elsewhere, day=28)
    closed = DataQualityQuery.objects.get(
        patient=assessed_elsewhere.patient, kind=QueryKind.RESPONSE_NOT_ASSESSED, is_open=True
    )
    clinic.closed_query = quality.query_close(
        closed, user=users["datamanager"], reason="Assessed at another hospital; report awaited"
    )

    # Every scope a user of this registry can see: the whole registry and each site.
    for site in (None, ahp, xhc):
        analytics.snapshot_compute(site=site, trigger="command")
    return clinic
