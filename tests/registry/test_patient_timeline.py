"""The patient page reads the patient, every record of it and its open queries in one round
trip (registry.selectors._patient_rows): what it builds must be what the ORM reads, field by
field, on PostgreSQL (statements sent together) and elsewhere (one after the other, as on
SQLite), and only for a patient at one of the user's sites."""

from __future__ import annotations

import pytest
from django.db import connection

from registry import demo, services
from registry.clock import today
from registry.models import DataQualityQuery, Death, Patient
from registry.selectors import TIMELINE_RECORDS, patient_page

pytestmark = pytest.mark.django_db


@pytest.fixture
def patients(site) -> list[Patient]:
    """Twelve patients of the synthetic cohort (every kind of record among them), written
    through the services, and a death."""
    user = demo.seed_user()
    plans = demo.calibrated_cohort()
    chosen = plans[:8]  # and the first with each late event
    for kinds in ("persistence", "infections", "ivig_courses", "death"):
        with_them = next(plan for plan in plans if getattr(plan, kinds))
        if with_them not in chosen:
            chosen.append(with_them)
    with services.queries_refreshed_together():
        return [demo.load_through_services(plan, site=site, user=user) for plan in chosen]


def _fields(record) -> dict:
    return {field.attname: getattr(record, field.attname) for field in record._meta.concrete_fields}


def _as_the_orm_reads_it(patient: Patient) -> list[tuple]:
    rows = []
    for treatment in patient.treatments.order_by("day0", "pk"):
        records = []
        for kind, model, dated_by in TIMELINE_RECORDS:
            for record in model.objects.filter(treatment=treatment).order_by(dated_by, "pk"):
                records.append((getattr(record, dated_by), kind, record.pk, _fields(record)))
        death = Death.objects.filter(patient=patient).first()
        rows.append((_fields(treatment), records, death))
    return rows


def _as_the_page_reads_it(patient: Patient) -> list[tuple]:
    rows = []
    for treatment, entries in patient_page(patient.pk, user=demo.seed_user()).timeline:
        assert entries[0].kind == "treatment" and entries[0].record is treatment
        assert all(entry.day == (entry.date - treatment.day0).days for entry in entries)
        assert [entry.date for entry in entries] == sorted(entry.date for entry in entries)
        records = sorted(
            (entry.date, entry.kind, entry.record.pk, _fields(entry.record))
            for entry in entries
            if entry.kind not in ("treatment", "death")
        )
        deaths = [entry.record for entry in entries if entry.kind == "death"]
        rows.append((_fields(treatment), records, deaths[0] if deaths else None))
    return rows


@pytest.mark.parametrize("vendor", ["postgresql", "sqlite"])
def test_the_timeline_holds_every_record_as_the_orm_reads_it(patients, monkeypatch, vendor):
    if vendor != connection.vendor:  # the other branch: one statement after the other
        monkeypatch.setattr(connection, "vendor", vendor)
    kinds = set()
    for patient in patients:
        expected = _as_the_orm_reads_it(patient)
        for _treatment, records, _death in expected:
            records.sort()
            kinds |= {kind for _date, kind, _pk, _fields in records}
        assert _as_the_page_reads_it(patient) == expected
    assert {"crs", "response", "contact", "infection", "ivig", "persistence"} <= kinds


@pytest.mark.parametrize("vendor", ["postgresql", "sqlite"])
def test_the_patient_is_read_with_its_site_and_death_as_the_orm_reads_them(
    patients, monkeypatch, vendor, django_assert_num_queries
):
    if vendor != connection.vendor:
        monkeypatch.setattr(connection, "vendor", vendor)
    user = demo.seed_user()
    dead = 0
    for patient in patients:
        expected = Patient.objects.select_related("site").get(pk=patient.pk)
        death = Death.objects.filter(patient=patient).first()
        page = patient_page(patient.pk, user=user)
        with django_assert_num_queries(0):  # the site and the death came with the patient
            assert _fields(page.patient) == _fields(expected)
            assert _fields(page.patient.site) == _fields(expected.site)
            if death is None:
                assert page.death is None
                assert not hasattr(page.patient, "death")
            else:
                assert _fields(page.death) == _fields(death)
                assert page.patient.death is page.death and page.death.patient is page.patient
                dead += 1
    assert dead >= 1


def test_a_patient_without_treatment_has_an_empty_timeline(nurse, site):
    from tests import factories

    patient = factories.patient(user=nurse, site=site)
    page = patient_page(patient.pk, user=nurse)
    assert page.timeline == [] and page.patient == patient and page.death is None


def test_the_users_sites_are_read_with_the_patient_and_remembered_for_the_header(
    nurse, site, other_site, administrator, django_assert_num_queries
):
    from registry.permissions import user_site_ids, user_sites
    from tests import factories

    nurse.sites.add(other_site)
    here = factories.patient(user=nurse, site=site, study_id="H-1")
    nurse = type(nurse).objects.get(pk=nurse.pk)  # nothing of this request read yet
    expected = [(s.pk, s.code) for s in nurse.sites.order_by("code")]
    with django_assert_num_queries(1):  # the patient with the user's sites (no treatment)
        assert patient_page(here.pk, user=nurse).patient == here
    with django_assert_num_queries(0):
        assert [(s.pk, s.code) for s in user_sites(nurse)] == expected
        assert user_site_ids(nurse) == {pk for pk, _code in expected}
    with django_assert_num_queries(1):  # again: still one round trip
        assert patient_page(here.pk, user=nurse).patient == here
    administrator = type(administrator).objects.get(pk=administrator.pk)
    with django_assert_num_queries(1):  # every site: no sites to read
        assert patient_page(here.pk, user=administrator).patient == here
    assert getattr(administrator, "_sites", None) is None


def test_a_patient_elsewhere_or_missing_is_no_page(nurse, site, other_site, administrator):
    """The site scope is in the statement: another site's patient is not read for a nurse of
    this site, an administrator reads it, and a user without a site reads none."""
    from tests import factories

    elsewhere = factories.patient(user=administrator, site=other_site, study_id="X-1")
    here = factories.patient(user=nurse, site=site, study_id="H-1")
    assert patient_page(elsewhere.pk, user=nurse) is None  # the sites read with it
    assert patient_page(elsewhere.pk, user=nurse) is None  # and again, with the sites remembered
    assert patient_page(here.pk, user=nurse).patient == here
    assert patient_page(elsewhere.pk, user=administrator).patient == elsewhere
    assert patient_page(10**9, user=administrator) is None
    nurse.sites.clear()
    nurse = type(nurse).objects.get(pk=nurse.pk)
    assert patient_page(here.pk, user=nurse) is None


@pytest.mark.parametrize("vendor", ["postgresql", "sqlite"])
def test_the_page_shows_the_open_queries_newest_first_as_the_orm_reads_them(
    patients, monkeypatch, settings, vendor
):
    settings.IMMUNOREG_TODAY = demo.CUTOFF.isoformat()
    from registry import quality

    quality.refresh_patients([p.pk for p in patients], today=today())
    DataQualityQuery.objects.filter(pk=DataQualityQuery.objects.order_by("pk").first().pk).update(
        is_open=False
    )
    if vendor != connection.vendor:
        monkeypatch.setattr(connection, "vendor", vendor)
    shown = 0
    for patient in patients:
        expected = list(patient.queries.filter(is_open=True).order_by("-opened_at", "pk"))
        page = patient_page(patient.pk, user=demo.seed_user()).open_queries
        assert [_fields(q) for q in page] == [_fields(q) for q in expected]
        shown += len(page)
    assert shown > 0 and DataQualityQuery.objects.filter(is_open=False).exists()
