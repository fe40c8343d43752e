"""The worklist, patient list and patient page at any registry size (issue #8).

The worklist's SQL prefilter (registry.selectors.worklist_candidates) must keep every
treatment that has a line: the worklist must equal the one computed in Python over every
living patient, as it was before #8, on varied data.
"""

from __future__ import annotations

import random
from dataclasses import astuple
from datetime import date, timedelta

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from registry import services
from registry.domain.followup import follow_up
from registry.models import DataQualityQuery, Death, FollowUpContact, Patient, Treatment
from registry.selectors import Worklist, WorklistLine, worklist_for

pytestmark = pytest.mark.django_db

DAY0 = date(2016, 3, 1)


def python_worklist(*, user, today: date) -> Worklist:
    """The worklist without the SQL prefilter: registry.domain.followup.follow_up of every
    living patient at the user's sites, one patient at a time."""
    from registry.selectors import scope_to_user

    patients = scope_to_user(Patient.objects.filter(death__isnull=True), user=user).order_by(
        "site__code", "study_id"
    )
    worklist = Worklist()
    for patient in patients.select_related("site"):
        treatments = list(patient.treatments.order_by("day0", "pk"))
        if not treatments:
            continue
        seen = list(
            FollowUpContact.objects.filter(treatment__patient=patient).values_list(
                "date", flat=True
            )
        )
        found = follow_up(
            treatments=[(t.pk, t.day0) for t in treatments], contacts=seen, today=today
        )
        of = {t.pk: t for t in treatments}

        def line(treatment, status, last_seen=None, patient=patient):
            return WorklistLine(
                patient.pk, patient.study_id, patient.site.code, treatment.pk, treatment.arm,
                treatment.day0, status.visit.name if status else "",
                status.opens if status else None, status.closes if status else None,
                status.state if status else "lost", last_seen,
            )  # fmt: skip

        worklist.due += [line(of[v.treatment], v.status) for v in found.due]
        worklist.overdue += [line(of[v.treatment], v.status) for v in found.overdue]
        if found.lost:
            missed = found.last_missed.status if found.last_missed else None
            worklist.lost.append(line(of[found.latest_treatment], missed, found.last_seen))
    worklist.due.sort(key=lambda w: w.closes)
    worklist.overdue.sort(key=lambda w: w.closes)
    return worklist


RECENTLY_TREATED_BEFORE = [
    date(2024, 10, 31),
    date(2024, 6, 1),
    date(2023, 1, 15),
    date(2025, 3, 3),
]


def registry(site, other_site, *, n: int, seed: int = 8) -> None:
    """n patients per site written directly (a read-side test): varied day 0s over 8 years,
    contacts regular, random, sparse, absent, dated after the cut-off; some deaths."""
    rng = random.Random(seed)
    for where in (site, other_site):
        patients = Patient.objects.bulk_create(
            Patient(site=where, study_id=f"{where.code}-{i:04d}", sex="F", year_of_birth=1980)
            for i in range(n)
        )
        treatments = Treatment.objects.bulk_create(
            Treatment(
                patient=p,
                arm=rng.choice(["car_t", "blinatumomab"]),
                day0=DAY0 + timedelta(days=rng.randint(0, 3100)),
            )
            for p in patients
            for _ in range(rng.choice([1, 1, 1, 2]))
        )
        contacts = []
        for t in treatments:
            pattern = rng.choice(["regular", "regular", "random", "none", "stopped", "late"])
            targets = [28, 100, 182, 365, *(365 * k for k in range(2, 10))]
            if pattern == "regular":
                days = [d + rng.randint(-50, 50) for d in targets if rng.random() < 0.85]
            elif pattern == "random":
                days = [rng.randint(0, 3200) for _ in range(rng.randint(1, 6))]
            elif pattern == "stopped":
                days = targets[: rng.randint(1, 5)]
            elif pattern == "late":
                days = [rng.randint(3000, 3300)]
            else:
                days = []
            contacts += [
                FollowUpContact(treatment=t, date=t.day0 + timedelta(days=d), disease_status="remission")
                for d in days
                if d >= 0
            ]  # fmt: skip
        FollowUpContact.objects.bulk_create(contacts)
        Death.objects.bulk_create(
            Death(patient=p, date=DAY0 + timedelta(days=3000), cause="disease")
            for p in patients
            if rng.random() < 0.2
        )
        # Overdue visits are those missed since the patient was last seen, less than 180 days
        # ago: a few living patients treated again 125 days before the days the tests look at,
        # and never seen since (day 28 and day 100 overdue then).
        living = Patient.objects.filter(site=where, death__isnull=True).order_by("pk")
        for p, on in zip(living, RECENTLY_TREATED_BEFORE, strict=False):
            day0 = on - timedelta(days=125)
            Treatment.objects.create(patient=p, arm="car_t", day0=day0)
            FollowUpContact.objects.filter(treatment__patient=p, date__gte=day0).delete()
    cache.clear()  # written directly: no data version tells the cached worklist of it


def as_tuples(worklist: Worklist):
    return tuple(
        [astuple(line) for line in getattr(worklist, k)] for k in ("due", "overdue", "lost")
    )


@pytest.mark.parametrize(
    "today",
    [
        date(2024, 10, 31),
        date(2024, 6, 1),
        date(2023, 1, 15),  # contacts dated after "today" exist: the prefilter must allow it
        date(2016, 4, 10),
        date(2025, 3, 3),
        date(2016, 2, 1),  # before every day 0
    ],
)
def test_the_worklist_is_the_one_computed_over_every_living_patient(
    site, other_site, nurse, administrator, today
):
    registry(site, other_site, n=60)
    for user in (nurse, administrator):
        expected = python_worklist(user=user, today=today)
        assert as_tuples(worklist_for(user=user, today=today)) == as_tuples(expected)
    if today.year >= 2020:  # the data are varied enough to fill every part by then
        assert all(as_tuples(python_worklist(user=administrator, today=today)))


def test_an_empty_registry_has_an_empty_worklist(nurse):
    assert as_tuples(worklist_for(user=nurse, today=date(2024, 10, 31))) == ([], [], [])


def get_counting(client, url, django_assert_num_queries, queries: int):
    client.get(url)  # warm the session
    with django_assert_num_queries(queries):
        response = client.get(url)
    assert response.status_code == 200
    return response


@pytest.mark.parametrize("n", [5, 80])
def test_the_worklist_page_uses_a_constant_number_of_queries(
    client, site, other_site, nurse, settings, django_assert_num_queries, n
):
    settings.IMMUNOREG_TODAY = "2024-10-31"
    registry(site, other_site, n=n)
    client.force_login(nurse)
    client.get(reverse("patients"))  # warm the session
    # computed: the sites' data tokens, then the visits, then the labs due (one query)
    with django_assert_num_queries(10):
        assert client.get(reverse("worklist")).status_code == 200
    with django_assert_num_queries(5):  # cached: the data tokens still match
        assert client.get(reverse("worklist")).status_code == 200


def test_the_cached_worklist_follows_every_write_and_the_day(client, site, nurse, settings):
    settings.IMMUNOREG_TODAY = "2024-10-31"
    client.force_login(nurse)
    patient = services.record_create(
        Patient, user=nurse, site=site, study_id="AHP-W1", sex="F", year_of_birth=1990
    )
    treatment = services.record_create(
        Treatment, user=nurse, patient=patient, arm="car_t", day0=date(2024, 10, 1)
    )
    due = client.get(reverse("worklist")).content.decode().split('id="overdue"')[0]
    assert "AHP-W1" in due  # the day-28 visit is due

    services.record_create(
        FollowUpContact,
        user=nurse,
        treatment=treatment,
        date=date(2024, 10, 30),
        disease_status="remission",
    )
    due = client.get(reverse("worklist")).content.decode().split('id="overdue"')[0]
    assert "AHP-W1" not in due  # seen: recorded through the services, the cache is not used

    settings.IMMUNOREG_TODAY = "2025-01-06"  # day 97: the day-100 visit is due
    due = client.get(reverse("worklist")).content.decode().split('id="overdue"')[0]
    assert "AHP-W1" in due


def test_the_lost_to_follow_up_are_shown_a_page_at_a_time(
    client, site, other_site, nurse, settings
):
    settings.IMMUNOREG_TODAY = "2024-10-31"
    registry(site, other_site, n=320)
    lost = worklist_for(user=nurse, today=date(2024, 10, 31)).lost
    assert len(lost) > 50
    client.force_login(nurse)
    first = client.get(reverse("worklist")).content.decode()
    assert f'<span class="badge">{len(lost)}</span>' in first
    assert lost[0].study_id in first and lost[50].study_id not in first.split('id="lost"')[1]
    assert "?lost_page=2" in first
    second = client.get(reverse("worklist"), {"lost_page": 2}).content.decode()
    lost_section = second.split('id="lost"')[1].split('id="queries"')[0]
    assert lost[50].study_id in lost_section and "<details open>" in second


@pytest.mark.parametrize("n", [5, 80])
def test_the_patient_list_uses_a_constant_number_of_queries(
    client, site, other_site, nurse, django_assert_num_queries, n
):
    registry(site, other_site, n=n)
    client.force_login(nurse)
    page = get_counting(client, reverse("patients"), django_assert_num_queries, 6)
    assert f"({n} patients)" in page.content.decode()
    get_counting(
        client, reverse("patients") + "?page=2&vital_status=alive", django_assert_num_queries, 6
    )


def test_the_patient_list_pages_in_order_with_the_first_treatment(
    client, site, other_site, administrator
):
    registry(site, other_site, n=30)
    client.force_login(administrator)
    seen = []
    for number in (1, 2, 3):
        page = client.get(reverse("patients"), {"page": number}).context["page"]
        seen += [(p.site.code, p.study_id, p.day0, p.is_dead) for p in page]
    expected = [
        (p.site.code, p.study_id, p.treatments.order_by("day0").first().day0, hasattr(p, "death"))
        for p in Patient.objects.select_related("site").order_by("site__code", "study_id")
    ]
    assert seen == expected


@pytest.mark.parametrize("n", [5, 80])
def test_the_patient_page_uses_a_constant_number_of_queries(
    client, site, other_site, nurse, django_assert_num_queries, n
):
    registry(site, other_site, n=n)
    client.force_login(nurse)
    patient = Patient.objects.filter(site=site).first()
    get_counting(
        # session, user, then the patient with its site, death, treatments, open data-quality
        # queries, the records of every kind and the user's sites (seventeen statements sent
        # together)
        client,
        reverse("patient-detail", args=[patient.pk]),
        django_assert_num_queries,
        3,
    )


def test_the_open_queries_are_shown_a_page_at_a_time(client, site, nurse, settings):
    settings.IMMUNOREG_TODAY = "2024-10-31"
    patient = Patient.objects.create(site=site, study_id="AHP-Q1", sex="F", year_of_birth=1990)
    DataQualityQuery.objects.bulk_create(
        DataQualityQuery(
            patient=patient,
            kind="follow_up_overdue",
            key=f"visit-{n:02}",
            message=f"Q{n:02}.",
            opened_at=timezone.now(),
        )
        for n in range(60)
    )
    client.force_login(nurse)
    first = client.get(reverse("worklist")).content.decode().split('id="queries"')[1]
    assert '<span class="badge">60</span>' in first
    assert first.count("AHP-Q1</a>") == 50 and "?queries_page=2" in first

    second = client.get(reverse("worklist"), {"queries_page": 2}).content.decode()
    section = second.split('id="queries"')[1]
    assert section.count("AHP-Q1</a>") == 10 and "<details open>" in section


@pytest.mark.parametrize(
    "language, name", [("en", "Record follow-up (Day 100)"), ("zh-hans", "记录随访（第 100 天）")]
)
def test_record_follow_up_names_the_visit_and_opens_the_contact_form_at_its_date(
    client, site, nurse, settings, language, name
):
    settings.IMMUNOREG_TODAY = "2024-10-31"
    patient = Patient.objects.create(site=site, study_id="AHP-V1", sex="F", year_of_birth=1990)
    treatment = Treatment.objects.create(
        patient=patient, arm="car_t", day0=date(2024, 10, 31) - timedelta(days=130)
    )
    FollowUpContact.objects.create(
        treatment=treatment, date=treatment.day0 + timedelta(days=30), disease_status="remission"
    )
    client.force_login(nurse)
    page = client.get(reverse("worklist"), HTTP_ACCEPT_LANGUAGE=language).content.decode()
    overdue = page.split('id="overdue"')[1].split('id="lost"')[0]
    url = reverse("record-new", args=[treatment.pk, "contact"]) + "#id_date"
    assert f'href="{url}" aria-label="{name}: AHP-V1">{name}</a>' in overdue
    assert "day100" not in page
