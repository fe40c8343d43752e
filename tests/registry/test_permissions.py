"""INTERFACES.md section 5 walked cell by cell: each role, each kind of record, own and other site."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied

from registry import quality, services
from registry.domain.vocabulary import Role
from registry.models import (
    CarPersistence,
    CrsEpisode,
    DataQualityQuery,
    Death,
    FollowUpContact,
    IcansEpisode,
    IecHsEpisode,
    Infection,
    IvigCourse,
    Patient,
    Relapse,
    ResponseAssessment,
    SecondCancer,
    Transplant,
    Treatment,
)
from registry.permissions import Action, can
from registry.selectors import records_visible_to
from tests import factories
from tests.factories import DAY0

pytestmark = pytest.mark.django_db

RECORD_KINDS = [
    Patient,
    Treatment,
    CrsEpisode,
    IcansEpisode,
    ResponseAssessment,
    Transplant,
    FollowUpContact,
    Relapse,
    Death,
    Infection,
    IecHsEpisode,
    IvigCourse,
    CarPersistence,
    SecondCancer,
]


def full_patient(administrator, site, study_id: str) -> dict[type, object]:
    patient = factories.patient(
        user=administrator, site=site, study_id=study_id, diagnosis_date=None
    )
    treatment = factories.treatment(user=administrator, patient=patient, bm_blast_pct=None)
    later = DAY0 + timedelta(days=30)
    create = services.record_create
    records = {
        Patient: patient,
        Treatment: treatment,
        CrsEpisode: create(
            CrsEpisode,
            user=administrator,
            treatment=treatment,
            onset=DAY0,
            max_temperature_c=38.5,
            hypotension=False,
            oxygen="none",
        ),
        IcansEpisode: create(
            IcansEpisode,
            user=administrator,
            treatment=treatment,
            onset=DAY0,
            ice_score=8,
            consciousness="awake",
        ),
        ResponseAssessment: create(
            ResponseAssessment, user=administrator, treatment=treatment, date=later, response="cr"
        ),
        Transplant: create(
            Transplant, user=administrator, treatment=treatment, date=later, type="ucbt"
        ),
        FollowUpContact: create(
            FollowUpContact,
            user=administrator,
            treatment=treatment,
            date=later,
            disease_status="remission",
        ),
        Relapse: create(
            Relapse,
            user=administrator,
            treatment=treatment,
            date=later + timedelta(days=10),
            kind="mrd",
        ),
        Infection: create(
            Infection,
            user=administrator,
            treatment=treatment,
            onset=later,
            site="respiratory",
            organism_class="viral",
            ctcae_grade=2,
        ),
        IecHsEpisode: create(
            IecHsEpisode, user=administrator, treatment=treatment, onset=DAY0, recorded_grade=1
        ),
        IvigCourse: create(IvigCourse, user=administrator, treatment=treatment, start=later),
        CarPersistence: create(
            CarPersistence, user=administrator, treatment=treatment, date=later, method="qpcr"
        ),
        SecondCancer: create(
            SecondCancer, user=administrator, treatment=treatment, date=later, cancer_type="AML"
        ),
    }
    records[Death] = services.death_record(
        patient=patient, user=administrator, date=later + timedelta(days=20), cause="disease"
    )
    return records


@pytest.fixture
def registry_at_two_sites(users, site, other_site):
    administrator = users[Role.ADMINISTRATOR]
    return {
        "own": full_patient(administrator, site, "OWN-1"),
        "other": full_patient(administrator, other_site, "OTHER-1"),
    }


SEES = {
    Role.NURSE: {"own"},
    Role.DATA_MANAGER: {"own"},
    Role.PI: {"own"},
    Role.ADMINISTRATOR: {"own", "other"},
}
EDITS = {
    Role.NURSE: {"own"},
    Role.DATA_MANAGER: {"own"},
    Role.PI: set(),
    Role.ADMINISTRATOR: {"own", "other"},
}


@pytest.mark.parametrize("model", RECORD_KINDS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("role", list(Role), ids=str)
def test_each_role_sees_the_records_of_its_own_sites_only(
    registry_at_two_sites, users, role, model
):
    visible = set(records_visible_to(model, user=users[role]).values_list("pk", flat=True))
    for where in ("own", "other"):
        record = registry_at_two_sites[where][model]
        assert (record.pk in visible) == (where in SEES[role]), where


@pytest.mark.parametrize("model", RECORD_KINDS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("role", list(Role), ids=str)
@pytest.mark.parametrize("where", ["own", "other"])
def test_each_role_edits_clinical_data_only_where_the_matrix_allows(
    registry_at_two_sites, users, role, model, where
):
    record = registry_at_two_sites[where][model]
    before = record.version
    if where in EDITS[role]:
        services.record_update(record, user=users[role], reason="matrix check")
        record.refresh_from_db()
        assert record.version == before + 1
    else:
        with pytest.raises(PermissionDenied):
            services.record_update(record, user=users[role], reason="matrix check")
        record.refresh_from_db()
        assert record.version == before


@pytest.mark.parametrize("role", list(Role), ids=str)
def test_only_administrators_delete_clinical_data(registry_at_two_sites, users, role):
    contact = registry_at_two_sites["own"][FollowUpContact]
    if role == Role.ADMINISTRATOR:
        services.record_delete(contact, user=users[role], reason="entered in error")
        assert not FollowUpContact.objects.filter(pk=contact.pk).exists()
    else:
        with pytest.raises(PermissionDenied):
            services.record_delete(contact, user=users[role], reason="entered in error")


def test_a_nurse_cannot_create_a_record_on_another_sites_treatment(registry_at_two_sites, nurse):
    other_treatment = registry_at_two_sites["other"][Treatment]
    with pytest.raises(PermissionDenied):
        services.record_create(
            FollowUpContact,
            user=nurse,
            treatment=other_treatment,
            date=DAY0 + timedelta(days=5),
            disease_status="remission",
        )


def test_a_nurse_cannot_move_a_patient_to_another_site(registry_at_two_sites, nurse, other_site):
    patient = registry_at_two_sites["own"][Patient]
    with pytest.raises(PermissionDenied):
        services.record_update(patient, user=nurse, reason="move", site=other_site)


@pytest.mark.parametrize("role", list(Role), ids=str)
@pytest.mark.parametrize("where", ["own", "other"])
def test_only_data_managers_and_administrators_resolve_queries(
    registry_at_two_sites, users, role, where
):
    query = DataQualityQuery.objects.filter(
        patient=registry_at_two_sites[where][Patient], is_open=True
    ).first()
    assert query is not None  # marrow blasts are missing, so the baseline query is open
    allowed = role == Role.ADMINISTRATOR or (role == Role.DATA_MANAGER and where == "own")
    if allowed:
        quality.query_close(query, user=users[role], reason="confirmed with the lab")
        assert not DataQualityQuery.objects.get(pk=query.pk).is_open
    else:
        with pytest.raises(PermissionDenied):
            quality.query_close(query, user=users[role], reason="confirmed with the lab")


MATRIX = {
    Action.IMPORT: {Role.DATA_MANAGER, Role.ADMINISTRATOR},
    Action.EXPORT_IDENTIFIED: {Role.DATA_MANAGER, Role.ADMINISTRATOR},
    Action.EXPORT_DEIDENTIFIED: {Role.DATA_MANAGER, Role.PI, Role.ADMINISTRATOR},
    Action.ANALYTICS: {Role.DATA_MANAGER, Role.PI, Role.ADMINISTRATOR},
    Action.ADMIN_SITE: {Role.DATA_MANAGER, Role.ADMINISTRATOR},
    Action.MANAGE_USERS: {Role.ADMINISTRATOR},
}


@pytest.mark.parametrize("action", list(MATRIX), ids=str)
@pytest.mark.parametrize("role", list(Role), ids=str)
def test_the_other_rows_of_the_matrix(users, site, other_site, role, action):
    user = users[role]
    assert can(user, action, site.pk) == (role in MATRIX[action])
    assert can(user, action, other_site.pk) == (role == Role.ADMINISTRATOR)
