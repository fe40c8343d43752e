"""`seed_demo --patients N`: on PostgreSQL the COPY path (registry.bulk) writes the rows the
bulk_create path writes (SQLite's); on either, each record has its history row and passes the
services' validation."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from registry import bulk, demo, services
from registry.models import Death, FollowUpContact, Patient, Site, Treatment
from tests.registry.test_seed_demo import CLINICAL_MODELS, clinical_rows

pytestmark = pytest.mark.django_db

SITES = [code for code, _name in demo.SCALE_SITES]


def seeded_rows(*, copy: bool | None = None, n: int = 300, seed: int = 7) -> dict:
    """The clinical rows of N patients seeded (by COPY, by bulk_create, or by the database's
    default path), rolled back afterwards."""
    with transaction.atomic():
        demo.seed_scaled(n, seed=seed, copy=copy)
        rows = clinical_rows(SITES)
        transaction.set_rollback(True)
    return rows


@pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY is PostgreSQL's")
def test_copy_and_bulk_insert_give_the_same_rows_for_the_same_seed():
    by_copy = seeded_rows(copy=True)
    assert sum(len(rows) for rows in by_copy.values()) > 300 * 5
    assert by_copy == seeded_rows(copy=False)


def test_another_seed_gives_other_rows():
    assert seeded_rows(n=101, seed=1) != seeded_rows(n=101, seed=2)


def test_every_seeded_record_passes_the_services_validation():
    demo.seed_scaled(300, seed=7, checked_every=10**6)  # only the first block
    demo.check_saved(Patient.objects.all())  # all 300, every record: raises on a broken rule


def test_the_check_of_saved_records_finds_a_contact_after_the_death():
    demo.seed_scaled(101, seed=7)
    death = Death.objects.first()
    FollowUpContact.objects.filter(treatment__patient=death.patient).update(
        date=death.date + timedelta(days=1)
    )
    with pytest.raises(ValidationError, match=death.patient.study_id):
        demo.check_saved(Patient.objects.all())


def test_a_block_that_breaks_a_rule_rolls_the_whole_seed_back(monkeypatch):
    drawn = demo.scaled_plans

    def with_a_broken_day0(n: int, *, seed: int) -> Iterator:
        for code, plans in drawn(n, seed=seed):
            plan = plans[0]
            plan.treatment["day0"] = plan.patient["diagnosis_date"] - timedelta(days=1)
            yield code, plans

    monkeypatch.setattr(demo, "scaled_plans", with_a_broken_day0)
    with pytest.raises(ValidationError, match="AHP-B000001"):
        demo.seed_scaled(202, seed=7)
    assert not Patient.objects.exists()


def test_every_seeded_record_has_one_history_row_by_the_seed_user_with_the_reason():
    demo.seed_scaled(202, seed=7)
    seed_user = demo.seed_user()
    for model in CLINICAL_MODELS:
        history = model.history.all()
        assert history.count() == model.objects.count() > 0, model.__name__
        assert (
            history.filter(
                history_type="+", history_user=seed_user, history_change_reason=demo.REASON
            ).count()
            == model.objects.count()
        )
        assert set(history.values_list("id", flat=True)) == set(
            model.objects.values_list("pk", flat=True)
        )


def test_a_record_written_after_the_seed_takes_the_next_key():
    demo.seed_scaled(101, seed=7)
    last = Patient.objects.order_by("-pk").first()
    patient = services.record_create(
        Patient,
        user=demo.seed_user(),
        site=Site.objects.get(code="AHP"),
        study_id="AHP-NEW-1",
        sex="F",
        year_of_birth=1980,
    )
    assert patient.pk == last.pk + 1
    assert Treatment.objects.count() == 101


def test_sites_get_a_new_data_version_after_the_seed():
    demo.seed_scaled(101, seed=7)
    site = Site.objects.get(code="AHP")
    assert site.data_version >= 1 and site.worklist_reset_version == site.data_version


def foreign_keys() -> list[tuple]:
    tables = [model._meta.db_table for model in CLINICAL_MODELS]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), condeferred "
            "FROM pg_constraint WHERE contype = 'f' AND conrelid::regclass::text = ANY(%s) "
            "ORDER BY 1, 2",
            [tables],
        )
        return cursor.fetchall()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY is PostgreSQL's")
def test_the_foreign_keys_dropped_for_the_copy_are_back_as_they_were():
    before = foreign_keys()
    assert len(before) == len(CLINICAL_MODELS)  # each record's parent (site, patient, treatment)
    demo.seed_scaled(101, seed=7, copy=True)
    assert foreign_keys() == before


@pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY is PostgreSQL's")
def test_a_copied_row_that_refers_to_nothing_is_refused_when_its_key_comes_back():
    keys = bulk.foreign_keys_dropped([Treatment])
    treatment = demo.calibrated_cohort()[0].treatment | {"patient_id": 10**9}
    bulk.copy_created(Treatment, [treatment], user_id=None, reason="test", when=timezone.now())
    with pytest.raises(IntegrityError), transaction.atomic():
        bulk.foreign_keys_added(keys)
