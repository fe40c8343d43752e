"""analytics.frames: registry rows become the SAP's analysis set (SAP.md sections 1 and 6)."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from analytics.frames import (
    RELAPSE_GROUP,
    RESPONSE_WINDOW_DAYS,
    TREATMENT_COLUMNS,
    AnalysisFrames,
    analysis_frames,
    canonical_value,
    fingerprint,
)
from registry import demo, services
from registry.models import (
    CarPersistence,
    CrsEpisode,
    Death,
    FollowUpContact,
    IcansEpisode,
    Infection,
    IvigCourse,
    Patient,
    Relapse,
    ResponseAssessment,
    Transplant,
    Treatment,
)
from tests import factories
from tests.factories import DAY0

pytestmark = pytest.mark.django_db


def on(days: int):
    return DAY0 + timedelta(days=days)


@pytest.fixture
def record(nurse):
    """Write one clinical record of a treatment through the services, as a nurse would."""

    def write(model, treatment, **fields):
        return services.record_create(model, user=nurse, treatment=treatment, **fields)

    return write


def contact(record, treatment, days: int) -> FollowUpContact:
    return record(FollowUpContact, treatment, date=on(days), disease_status="remission")


def response(record, treatment, days: int, result: str, mrd: str = "") -> ResponseAssessment:
    return record(ResponseAssessment, treatment, date=on(days), response=result, mrd_reported=mrd)


def only_row(**filters):
    frame = analysis_frames(**filters).treatments
    assert len(frame) == 1
    return frame.iloc[0]


def test_the_analysis_set_is_each_patients_first_treatment_by_day0(nurse, patient):
    factories.treatment(user=nurse, patient=patient, arm="blinatumomab", day0=on(40))
    first = factories.treatment(user=nurse, patient=patient, arm="car_t", day0=DAY0)
    row = only_row()
    assert row["treatment_id"] == first.pk and row["arm"] == "car_t"


def test_a_non_response_is_a_pfs_event_dated_at_its_assessment(record, treatment):
    response(record, treatment, 30, "nr")
    contact(record, treatment, 200)
    row = only_row()
    assert (row["pfs_days"], row["pfs_event"]) == (30, 1)
    assert (row["os_days"], row["os_event"]) == (200, 0)


def test_a_relapse_ends_pfs_and_a_death_ends_os(nurse, record, treatment):
    response(record, treatment, 28, "cr")
    record(Relapse, treatment, date=on(100), kind="morphologic")
    contact(record, treatment, 120)
    services.death_record(patient=treatment.patient, user=nurse, date=on(150), cause="disease")
    row = only_row()
    assert (row["pfs_days"], row["pfs_event"]) == (100, 1)
    assert (row["os_days"], row["os_event"], row["died"]) == (150, 1, True)


def test_a_death_without_relapse_ends_pfs_too(nurse, treatment):
    services.death_record(patient=treatment.patient, user=nurse, date=on(20), cause="infection")
    row = only_row()
    assert (row["pfs_days"], row["pfs_event"], row["pfs_cause"]) == (20, 1, 2)  # NRM


def test_the_cause_of_a_pfs_event_is_relapse_unless_death_came_first(nurse, record, treatment):
    contact(record, treatment, 10)
    assert only_row()["pfs_cause"] == 0  # censored
    record(Relapse, treatment, date=on(100), kind="morphologic")
    assert only_row()["pfs_cause"] == 1
    # A death on the day of the relapse: the relapse is not "earlier", but it is recorded; the
    # death is not non-relapse mortality.
    services.death_record(patient=treatment.patient, user=nurse, date=on(100), cause="disease")
    assert (only_row()["pfs_days"], only_row()["pfs_cause"]) == (100, 1)


def test_a_non_response_is_a_progression_for_the_competing_risks(record, treatment):
    response(record, treatment, 30, "nr")
    assert (only_row()["pfs_days"], only_row()["pfs_cause"]) == (30, 1)


def test_without_an_event_pfs_is_censored_at_the_last_contact_or_assessment(record, treatment):
    contact(record, treatment, 20)
    response(record, treatment, 35, "cr")
    row = only_row()
    assert (row["pfs_days"], row["pfs_event"]) == (35, 0)
    assert (row["os_days"], row["os_event"]) == (20, 0)


def test_a_relapse_recorded_under_a_later_treatment_still_ends_pfs(nurse, record, patient):
    first = factories.treatment(user=nurse, patient=patient, day0=DAY0)
    second = factories.treatment(user=nurse, patient=patient, arm="blinatumomab", day0=on(200))
    record(Relapse, second, date=on(260), kind="morphologic")
    assert only_row()["treatment_id"] == first.pk
    assert (only_row()["pfs_days"], only_row()["pfs_event"]) == (260, 1)


def test_the_grade_used_is_the_derived_astct_grade_else_the_recorded_one(
    nurse, record, site, treatment
):
    derived = record(
        CrsEpisode,
        treatment,
        onset=on(2),
        max_temperature_c=39.0,
        hypotension=True,
        vasopressors=1,
        oxygen="none",
    )
    other = factories.patient(user=nurse, site=site, study_id="P002")
    recorded_only = factories.treatment(user=nurse, patient=other)
    record(CrsEpisode, recorded_only, onset=on(3), grading_system="lee2014", recorded_grade=2)
    frame = analysis_frames().treatments.set_index("treatment_id")
    assert derived.derived_grade == 3
    assert (frame.loc[treatment.pk, "crs_grade"], frame.loc[treatment.pk, "crs_grade_source"]) == (
        3,
        "derived",
    )
    assert frame.loc[recorded_only.pk, "crs_grade"] == 2
    assert frame.loc[recorded_only.pk, "crs_grade_source"] == "recorded"


def test_of_equally_bad_episodes_and_same_day_transplants_the_first_entered_counts(
    record, treatment
):
    """Entry order decides a tie, not the order PostgreSQL returns rows in: an edited row's
    new version is stored after the rows entered since, and a plain read returns it last."""
    entered_first = record(
        CrsEpisode, treatment, onset=on(2), grading_system="lee2014", recorded_grade=3
    )
    record(
        CrsEpisode,
        treatment,
        onset=on(3),
        max_temperature_c=39.0,
        hypotension=True,
        vasopressors=1,
        oxygen="none",
    )
    haplo = record(Transplant, treatment, date=on(60), type="haplo")
    record(Transplant, treatment, date=on(60), type="ucbt")
    CrsEpisode.objects.filter(pk=entered_first.pk).update(recorded_grade=3)  # a new row version
    Transplant.objects.filter(pk=haplo.pk).update(type="haplo")
    assert list(CrsEpisode.objects.order_by().values_list("pk", flat=True))[-1] == entered_first.pk
    row = only_row()
    assert (row["crs_grade"], row["crs_grade_source"]) == (3, "recorded")
    assert (row["any_hsct_day"], row["any_hsct_type"]) == (60, "haplo")


def test_the_rows_of_one_site_and_day0_run_in_entry_order_whatever_the_read_order(nurse, site):
    patients = [factories.patient(user=nurse, site=site, study_id=f"P{n}") for n in (1, 2)]
    treatments = [factories.treatment(user=nurse, patient=p, day0=DAY0) for p in patients]
    Treatment.objects.filter(pk=treatments[0].pk).update(day0=DAY0)  # read last from now on
    assert list(analysis_frames().treatments["patient_id"]) == [p.pk for p in patients]


def test_the_worst_episode_gives_the_treatments_grade(record, treatment):
    record(CrsEpisode, treatment, onset=on(1), grading_system="lee2014", recorded_grade=1)
    record(CrsEpisode, treatment, onset=on(9), grading_system="lee2014", recorded_grade=3)
    assert only_row()["crs_grade"] == 3


def test_no_crs_is_grade_zero(nurse, patient):
    factories.treatment(user=nurse, patient=patient, crs_status="no")
    assert only_row()["crs_grade"] == 0


def test_an_unknown_crs_status_has_no_grade(nurse, patient):
    factories.treatment(user=nurse, patient=patient, crs_status="unknown")
    assert pd.isna(only_row()["crs_grade"])


def test_response_counts_only_assessments_from_day0_to_day90(record, treatment):
    response(record, treatment, RESPONSE_WINDOW_DAYS + 1, "cr", mrd="negative")
    row = only_row()
    assert not row["response_evaluable"] and not row["mrd_negative_cr"]


def test_the_best_response_in_the_window_counts_and_mrd_negative_cr_needs_both_at_once(
    record, treatment
):
    response(record, treatment, 28, "pr", mrd="negative")
    response(record, treatment, 60, "cri", mrd="positive")
    row = only_row()
    assert row["response_evaluable"] and row["best_response"] == "cri" and row["cr"]
    assert not row["mrd_negative_cr"]


def test_a_not_evaluable_assessment_leaves_the_treatment_out_of_the_response_set(record, treatment):
    response(record, treatment, 28, "not_evaluable")
    assert not only_row()["response_evaluable"]


def test_transplant_days_count_from_day0_and_ucbt_is_kept_apart(record, treatment):
    record(Transplant, treatment, date=on(60), type="haplo")
    record(Transplant, treatment, date=on(100), type="ucbt")
    row = only_row()
    assert (row["any_hsct_day"], row["any_hsct_type"], row["ucbt_day"]) == (60, "haplo", 100)


@pytest.mark.parametrize(
    "relapse_status, group",
    [
        ("mrd_persistent_cr1", "not_relapsed"),
        ("primary_refractory", "not_relapsed"),
        ("first_relapse", "first_relapse"),
        ("second_or_later_relapse", "second_or_later_relapse"),
    ],
)
def test_relapse_status_maps_to_the_saps_relapse_groups(nurse, patient, relapse_status, group):
    factories.treatment(user=nurse, patient=patient, relapse_status=relapse_status)
    assert only_row()["relapse_group"] == group


def test_a_site_scope_leaves_out_the_other_sites(nurse, users, site, other_site, treatment):
    administrator = users["administrator"]
    elsewhere = factories.patient(user=administrator, site=other_site, study_id="X1")
    factories.treatment(user=administrator, patient=elsewhere)
    assert len(analysis_frames().treatments) == 2
    assert only_row(site_ids=[other_site.pk])["study_id"] == "X1"


@pytest.mark.parametrize("patients", [5, 50])
@pytest.mark.parametrize("scope", ["registry", "one site"])
def test_frames_take_the_same_few_queries_for_5_or_50_patients(
    patients, scope, django_assert_num_queries
):
    demo.seed_scaled(patients)
    sites = Patient.objects.values_list("site", flat=True)
    site_ids = None if scope == "registry" else [sites.first()]
    with django_assert_num_queries(12):
        frames = analysis_frames(site_ids=site_ids)
    in_scope = sites if site_ids is None else sites.filter(site__in=site_ids)
    assert len(frames.treatments) == in_scope.count() > 0


def test_the_fingerprint_ignores_database_keys_and_row_order(record, treatment):
    contact(record, treatment, 30)
    frames = analysis_frames()
    shuffled = frames.treatments.sample(frac=1, random_state=1).assign(treatment_id=-1)
    assert fingerprint(frames).startswith("sha256:")
    assert fingerprint(frames) == fingerprint(
        type(frames)(treatments=shuffled, open_queries=frames.open_queries)
    )


def test_the_fingerprint_changes_when_the_data_does(record, treatment):
    contact(record, treatment, 30)
    before = analysis_frames().fingerprint
    contact(record, treatment, 120)
    assert analysis_frames().fingerprint != before


def test_the_rows_run_by_site_then_day0(nurse, users, site, other_site):
    administrator = users["administrator"]
    for site_, study_id, days in ((other_site, "X1", 0), (site, "A2", 30), (site, "A1", 10)):
        patient = factories.patient(user=administrator, site=site_, study_id=study_id)
        factories.treatment(user=administrator, patient=patient, day0=on(days))
    assert list(analysis_frames().treatments["study_id"]) == ["A1", "A2", "X1"]


# --- the same rules, one patient at a time through the ORM: what the frames must equal ----------


def reference_frame(site_ids=None) -> pd.DataFrame:
    """SAP.md sections 1 and 6 applied patient by patient, typed as pandas types plain rows."""
    treatments = Treatment.objects.select_related("patient__site").order_by("day0", "pk")
    if site_ids is not None:
        treatments = treatments.filter(patient__site__in=site_ids)
    first: dict[int, Treatment] = {}
    for treatment in treatments:
        first.setdefault(treatment.patient_id, treatment)
    rows = [reference_row(treatment) for treatment in first.values()]
    return pd.DataFrame(rows, columns=TREATMENT_COLUMNS)


def reference_row(treatment: Treatment) -> dict:
    patient, day0 = treatment.patient, treatment.day0
    of_patient = {"treatment__patient": patient}
    death = Death.objects.filter(patient=patient).values_list("date", flat=True).first()
    last_contact = max(
        FollowUpContact.objects.filter(**of_patient).values_list("date", flat=True), default=None
    )
    assessed = [r for r in ResponseAssessment.objects.filter(**of_patient) if r.date >= day0]
    relapses = [r.date for r in Relapse.objects.filter(**of_patient) if r.date >= day0]
    window = [
        r
        for r in treatment.responses.order_by("pk")
        if 0 <= (r.date - day0).days <= RESPONSE_WINDOW_DAYS and r.response != "not_evaluable"
    ]
    ranked = [r.response for r in window if r.response in ("cr", "cri", "pr", "nr")]
    best = min(ranked, key=["cr", "cri", "pr", "nr"].index) if ranked else None
    events = [*relapses, *(r.date for r in assessed if r.response == "nr"), *[death] * bool(death)]
    seen = [d for d in (last_contact, *(r.date for r in assessed)) if d and d >= day0]
    pfs_end = min(events) if events else max(seen, default=day0)
    progressions = [*relapses, *(r.date for r in assessed if r.response == "nr")]
    # SAP 12: 1 relapse or progression (on or before death), 2 death without one before it.
    pfs_cause = 0 if not events else 1 if progressions and min(progressions) == pfs_end else 2
    transplants = sorted(
        (t for t in Transplant.objects.filter(**of_patient).order_by("pk") if t.date >= day0),
        key=lambda t: t.date,
    )
    ucbt = [t for t in transplants if t.type == "ucbt"]
    crs_grade, crs_source = reference_grade(treatment.crs_status, CrsEpisode, treatment)
    icans_grade, icans_source = reference_grade(treatment.icans_status, IcansEpisode, treatment)
    blasts = treatment.bm_blast_pct
    return {
        "treatment_id": treatment.pk,
        "patient_id": patient.pk,
        "site_code": patient.site.code,
        "study_id": patient.study_id,
        "arm": treatment.arm,
        "day0": day0,
        "age": day0.year - patient.year_of_birth,
        "sex": patient.sex,
        "ph_status": patient.ph_status,
        "disease_burden": treatment.disease_burden or None,
        "bm_blast_pct": None if blasts is None else float(blasts),
        "extramedullary": treatment.extramedullary,
        "relapse_status": treatment.relapse_status or None,
        "relapse_group": RELAPSE_GROUP.get(treatment.relapse_status),
        "prior_hsct": treatment.prior_hsct,
        "crs_status": treatment.crs_status,
        "crs_grade": crs_grade,
        "crs_grade_source": crs_source,
        "icans_status": treatment.icans_status,
        "icans_grade": icans_grade,
        "icans_grade_source": icans_source,
        "icaht_early_grade": treatment.icaht_early_grade,
        "icaht_late_grade": treatment.icaht_late_grade,
        "infection_day": min(
            (
                (i.onset - day0).days
                for i in Infection.objects.filter(**of_patient)
                if i.onset >= day0
            ),
            default=None,
        ),
        "ivig": any(c.start >= day0 for c in IvigCourse.objects.filter(**of_patient)),
        "car_persistence": (
            any(a.detected for a in persisting)
            if (
                persisting := [
                    a for a in CarPersistence.objects.filter(**of_patient) if a.date >= day0
                ]
            )
            else None
        ),
        "response_evaluable": bool(window),
        "best_response": best,
        "cr": best in ("cr", "cri"),
        "mrd_negative_cr": any(
            r.response in ("cr", "cri") and r.mrd_status == "negative" for r in window
        ),
        "died": death is not None,
        "last_contact": last_contact,
        "last_seen": max(
            [last_contact or day0, *patient.treatments.values_list("day0", flat=True)]
        ),
        "pfs_days": (pfs_end - day0).days,
        "pfs_event": int(bool(events)),
        "pfs_cause": pfs_cause,
        "os_days": (death - day0).days
        if death
        else max((last_contact - day0).days, 0)
        if last_contact
        else 0,
        "os_event": int(death is not None),
        "any_hsct_day": (transplants[0].date - day0).days if transplants else None,
        "any_hsct_type": transplants[0].type if transplants else None,
        "ucbt_day": (ucbt[0].date - day0).days if ucbt else None,
    }


def reference_grade(status: str, model, treatment: Treatment):
    if status != "yes":
        return (0 if status == "no" else None), None
    graded = [
        (e.derived_grade, "derived")
        if e.derived_grade is not None
        else (e.recorded_grade, "recorded")
        for e in model.objects.filter(treatment=treatment).order_by("pk")
    ]
    graded = [pair for pair in graded if pair[0] is not None]
    return max(graded, key=lambda pair: pair[0]) if graded else (None, None)


def by_patient(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["site_code", "study_id"]).reset_index(drop=True)


@pytest.fixture
def varied_registry(nurse, record, site, treatment):
    """The bench's synthetic cohort, and what it lacks: a patient with two treatments, ties."""
    demo.seed_scaled(40)
    patient = treatment.patient
    later = factories.treatment(user=nurse, patient=patient, arm="blinatumomab", day0=on(200))
    for grade in (3, 3):  # equally bad: the first one read gives the source
        record(CrsEpisode, treatment, onset=on(2), grading_system="lee2014", recorded_grade=grade)
    record(
        CrsEpisode,
        treatment,
        onset=on(3),
        max_temperature_c=39.0,
        hypotension=True,
        vasopressors=1,
        oxygen="none",
    )
    response(record, treatment, 28, "cr", mrd="negative")
    response(record, later, 230, "nr")
    record(Relapse, later, date=on(260), kind="morphologic")
    record(Transplant, treatment, date=on(60), type="haplo")
    record(Transplant, treatment, date=on(60), type="ucbt")  # the same day: the first read
    record(Transplant, later, date=on(300), type="ucbt")
    contact(record, later, 320)
    # Late events: the patient's first infection on or after day 0 (of either treatment), an
    # IVIG course under the later treatment, persistence assessed twice.
    for onset in (45, 20):
        record(
            Infection,
            treatment,
            onset=on(onset),
            site="bloodstream",
            organism_class="bacterial",
            ctcae_grade=3,
            treatment_required="yes",
        )
    record(IvigCourse, later, start=on(210))
    for days, detected in ((90, False), (180, True)):
        record(CarPersistence, treatment, date=on(days), method="flow", detected=detected)
    other = factories.patient(user=nurse, site=site, study_id="P002")
    unknown = factories.treatment(
        user=nurse,
        patient=other,
        crs_status="unknown",
        bm_blast_pct=None,
        extramedullary=None,
        disease_burden="",
    )
    response(record, unknown, 10, "not_evaluable")
    response(record, unknown, RESPONSE_WINDOW_DAYS + 1, "cr", mrd="negative")
    services.death_record(patient=other, user=nurse, date=on(150), cause="disease")


@pytest.mark.parametrize("scope", ["registry", "one site"])
def test_the_frames_equal_the_rules_applied_one_patient_at_a_time(varied_registry, site, scope):
    site_ids = None if scope == "registry" else [site.pk]
    frames = analysis_frames(site_ids=site_ids)
    assert len(frames.treatments) > 10
    pd.testing.assert_frame_equal(
        by_patient(frames.treatments), by_patient(reference_frame(site_ids)), check_exact=True
    )


def test_with_nothing_recorded_the_columns_keep_the_types_of_plain_rows(nurse, patient):
    factories.treatment(user=nurse, patient=patient, crs_status="unknown", bm_blast_pct=None)
    frame = analysis_frames().treatments
    pd.testing.assert_frame_equal(frame, reference_frame(), check_exact=True)
    assert frame["crs_grade"].dtype == object and frame["ucbt_day"].dtype == object


def test_with_everything_recorded_the_number_columns_stay_integers(nurse, record, patient):
    treatment = factories.treatment(user=nurse, patient=patient, crs_status="no")
    record(Transplant, treatment, date=on(60), type="ucbt")
    frame = analysis_frames().treatments
    pd.testing.assert_frame_equal(frame, reference_frame(), check_exact=True)
    assert frame["crs_grade"].dtype == frame["ucbt_day"].dtype == np.int64


def test_an_empty_registry_gives_empty_frames(db):
    frames = analysis_frames()
    assert frames.treatments.empty and list(frames.treatments.columns) == TREATMENT_COLUMNS
    assert frames.open_queries.empty and frames.row_counts["analysis_set"] == 0
    assert frames.fingerprint == reference_fingerprint(frames)


# --- the fingerprint: the text of canonical_rows, written a column at a time --------------------


def canonical_rows(frame: pd.DataFrame) -> list[list]:
    """The frame as JSON-ready rows: its column names, then its rows sorted by their JSON."""
    rows = [[canonical_value(value) for value in row] for row in frame.itertuples(index=False)]
    return [list(frame.columns), *sorted(rows, key=lambda row: json.dumps(row))]


def reference_fingerprint(frames: AnalysisFrames) -> str:
    payload = {
        "treatments": canonical_rows(
            frames.treatments.drop(columns=["treatment_id", "patient_id"])
        ),
        "open_queries": canonical_rows(frames.open_queries.drop(columns=["patient_id"])),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_the_fingerprint_is_that_of_the_canonical_rows(varied_registry):
    frames = analysis_frames()
    assert fingerprint(frames) == reference_fingerprint(frames)


def test_the_fingerprint_is_that_of_the_canonical_rows_whatever_the_values():
    """Values that sort or serialise differently once written as JSON: a row whose text is a
    prefix of another's, commas inside text, -0.0 and 0.0, NaN, True and 1 in one column."""
    treatments = pd.DataFrame(
        {
            "treatment_id": [1, 2, 3, 4, 5, 6],
            "patient_id": [1, 2, 3, 4, 5, 6],
            "text": ["a, b", "a", "a", 'é"', None, "a"],
            "day0": [on(0), on(0), on(0), None, on(0), on(1)],
            "mixed": [1, True, True, 1.0, "1", None],
            "flag": [True, False, False, True, False, True],
            "float": [-0.0, 0.0, 0.0, 1e-20, 2.5, np.nan],
            "last": [2, 23, 2, 2, -1, 2],  # rows 2 and 3: "...,23]" sorts before "...,2]"
        }
    )
    open_queries = pd.DataFrame({"patient_id": [1, 2], "kind": ["missing_day0", "late"]})
    frames = AnalysisFrames(treatments=treatments, open_queries=open_queries)
    assert fingerprint(frames) == reference_fingerprint(frames)
