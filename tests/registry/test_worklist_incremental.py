"""The worklist after a write (issue #12): each site's lines are cached by patient, and a write
recomputes only the lines of the patients it changed (registry.services.patients_changed,
registry.selectors.worklist_for). A stale worklist is a clinical risk: after any sequence of
writes through the services the incremental worklist is the one computed over every living
patient, and what a write records is part of its own transaction."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry import services
from registry.models import Death, FollowUpContact, Patient, Site, Treatment, WorklistChange
from registry.selectors import worklist_for
from tests.registry.test_selectors_worklist import as_tuples, python_worklist

pytestmark = pytest.mark.django_db

TODAY = date(2024, 10, 31)

# One write: what it does, to which patient (an index into the patients written so far), and
# a number of days.
writes = st.tuples(
    st.sampled_from(
        ["new", "treatment", "contact", "day0", "death", "delete", "move", "import", "reset"]
    ),
    st.integers(0, 7),
    st.integers(0, 2600),
)


def new_patient(user, site: Site, number: int, before: int) -> None:
    patient = services.record_create(
        Patient, user=user, site=site, study_id=f"{site.code}-{number:03d}", sex="F",
        year_of_birth=1980,
    )  # fmt: skip
    services.record_create(
        Treatment, user=user, patient=patient, arm="car_t", day0=TODAY - timedelta(days=before)
    )


def apply(kind: str, patient: Patient, days: int, *, user, sites: list[Site]) -> None:
    """One write through registry.services (a refused one saves nothing)."""
    treatment = patient.treatments.order_by("pk").last()
    if kind == "treatment":
        services.record_create(
            Treatment, user=user, patient=patient, arm="blinatumomab",
            day0=TODAY - timedelta(days=days % 400),
        )  # fmt: skip
    elif kind == "contact" and treatment is not None:
        services.record_create(
            FollowUpContact, user=user, treatment=treatment, disease_status="remission",
            date=min(treatment.day0 + timedelta(days=days), TODAY),
        )  # fmt: skip
    elif kind == "day0" and treatment is not None:
        services.record_update(
            treatment, user=user, reason="corrected", day0=TODAY - timedelta(days=days)
        )
    elif kind == "death":
        services.death_record(patient=patient, user=user, date=TODAY, cause="disease")
    elif kind == "delete":
        for contact in FollowUpContact.objects.filter(treatment__patient=patient):
            services.record_delete(contact, user=user, reason="entered in error")
        for death in Death.objects.filter(patient=patient):
            services.record_delete(death, user=user, reason="entered in error")
        for each in patient.treatments.all():
            services.record_delete(each, user=user, reason="entered in error")
        services.record_delete(Patient.objects.get(pk=patient.pk), user=user, reason="error")
    elif kind == "move":
        other = sites[1] if patient.site_id == sites[0].pk else sites[0]
        services.record_update(patient, user=user, reason="transferred", site=other)
    elif kind == "import" and treatment is not None:
        with services.batched_writes(), services.queries_refreshed_together():
            services.record_create(
                FollowUpContact, user=user, treatment=treatment, disease_status="progression",
                date=min(treatment.day0 + timedelta(days=days // 2), TODAY),
            )  # fmt: skip
            services.record_update(patient, user=user, reason="imported", year_of_birth=1981)
    elif kind == "reset":  # a bulk load that cannot name its patients
        services.site_data_changed([patient.site_id])


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    start=st.lists(st.integers(0, 2600), min_size=1, max_size=6),
    steps=st.lists(writes, min_size=1, max_size=8),
)
def test_after_any_writes_the_incremental_worklist_is_the_one_computed_afresh(
    start, steps, site, other_site, nurse, administrator
):
    with transaction.atomic():
        cache.clear()  # each example starts from an empty cache (the sites are the same)
        sites = [site, other_site]
        for number, before in enumerate(start):
            new_patient(administrator, sites[number % 2], number, before)
        for user in (nurse, administrator):
            worklist_for(user=user, today=TODAY)  # cached: every later one is incremental
        for number, (kind, which, days) in enumerate(steps, start=len(start)):
            patients = list(Patient.objects.order_by("pk"))
            try:
                with transaction.atomic():
                    if kind == "new" or not patients:
                        new_patient(administrator, sites[which % 2], number, days)
                    else:
                        patient = patients[which % len(patients)]
                        apply(kind, patient, days, user=administrator, sites=sites)
            except ValidationError:
                pass  # refused: nothing saved
            for user in (nurse, administrator):
                expected = as_tuples(python_worklist(user=user, today=TODAY))
                assert as_tuples(worklist_for(user=user, today=TODAY)) == expected
        transaction.set_rollback(True)


@pytest.mark.parametrize("n", [3, 30])
def test_the_worklist_after_a_write_takes_the_same_queries_whatever_the_registry_size(
    site, other_site, administrator, django_assert_num_queries, n
):
    for number in range(n):
        new_patient(administrator, [site, other_site][number % 2], number, 30 + 97 * number)
    worklist_for(user=administrator, today=TODAY)
    treatment = Treatment.objects.filter(patient__site=site).first()
    services.record_create(
        FollowUpContact, user=administrator, treatment=treatment, date=TODAY,
        disease_status="remission",
    )  # fmt: skip
    # the sites' versions, the patients changed since, their treatments, their contacts
    with django_assert_num_queries(4):
        after = worklist_for(user=administrator, today=TODAY)
    assert treatment.pk not in {line.treatment_pk for line in after.due + after.overdue}
    with django_assert_num_queries(1):  # nothing written since: the sites' versions only
        assert as_tuples(worklist_for(user=administrator, today=TODAY)) == as_tuples(after)


def test_a_write_records_its_version_and_patient_in_its_own_transaction(site, administrator):
    new_patient(administrator, site, 1, 40)
    patient = Patient.objects.get()
    site.refresh_from_db()
    before = site.data_version
    with pytest.raises(RuntimeError), transaction.atomic():
        services.record_update(patient, user=administrator, reason="typo", year_of_birth=1979)
        site.refresh_from_db()  # seen inside the write's transaction
        assert site.data_version == before + 1
        assert WorklistChange.objects.get(site=site, patient_id=patient.pk).version == before + 1
        raise RuntimeError("the transaction fails after the write")
    site.refresh_from_db()
    assert site.data_version == before  # rolled back with the write
    assert WorklistChange.objects.get(site=site, patient_id=patient.pk).version == before


def test_a_deleted_or_moved_patient_is_recorded_at_every_site_it_leaves(
    site, other_site, administrator
):
    new_patient(administrator, site, 1, 40)
    patient = Patient.objects.get()
    services.record_update(patient, user=administrator, reason="transferred", site=other_site)
    site.refresh_from_db()
    other_site.refresh_from_db()
    assert set(WorklistChange.objects.values_list("site_id", "patient_id", "version")) >= {
        (site.pk, patient.pk, site.data_version),
        (other_site.pk, patient.pk, other_site.data_version),
    }
    patient.treatments.get().delete()  # (a test shortcut, then the delete of the patient)
    pk = patient.pk
    services.record_delete(patient, user=administrator, reason="entered in error")
    other_site.refresh_from_db()
    assert WorklistChange.objects.get(site=other_site, patient_id=pk).version == (
        other_site.data_version
    )
