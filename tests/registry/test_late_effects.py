"""The late events of issue #17 point 3 (DOMAIN.md "Hematotoxicity and late effects"):
infections, IEC-HS, immunoglobulin replacement, CAR persistence and second cancers. Every rule
through the services (and a few through the forms and the API, which apply the same ones), the
audit, the patient's timeline, and the three data-quality queries opening and closing."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import translation
from rest_framework.test import APIClient

from registry import quality, services
from registry.models import (
    CarPersistence,
    DataQualityQuery,
    Death,
    FollowUpContact,
    IecHsEpisode,
    Infection,
    IvigCourse,
    LabValue,
    QueryKind,
    SecondCancer,
)
from tests import factories
from tests.factories import DAY0
from tests.registry.test_cross_record_rules import form_data

pytestmark = pytest.mark.django_db


def day(n: int) -> date:
    return DAY0 + timedelta(days=n)


# A valid record of each kind, dated `when`, and the field that dates it.
LATE_EVENTS: dict[type, tuple[str, Any]] = {
    Infection: (
        "onset",
        lambda when: {
            "onset": when,
            "site": "respiratory",
            "organism_class": "viral",
            "ctcae_grade": 2,
            "treatment_required": "yes",
        },
    ),
    IecHsEpisode: (
        "onset",
        lambda when: {
            "onset": when,
            "ferritin_rise": True,
            "cytopenias": True,
            "coagulopathy": True,
            "recorded_grade": 3,
            "treatment_given": "anakinra",
        },
    ),
    IvigCourse: ("start", lambda when: {"start": when}),
    CarPersistence: ("date", lambda when: {"date": when, "method": "qpcr", "detected": True}),
    SecondCancer: ("date", lambda when: {"date": when, "cancer_type": "MDS"}),
}
MODELS = list(LATE_EVENTS)


def create(model, nurse, treatment, when: date, **fields):
    values = LATE_EVENTS[model][1](when) | fields
    return services.record_create(model, user=nurse, treatment=treatment, **values)


def refused(model, nurse, treatment, when: date, **fields) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as error:
        create(model, nurse, treatment, when, **fields)
    assert not model.objects.exists()
    return error.value.message_dict


# --- the rules, through the services -----------------------------------------------------
@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_a_late_event_is_saved_with_its_audit_row(nurse, treatment, model):
    record = create(model, nurse, treatment, day(30))
    assert record.version == 1
    entry = model.history.get(id=record.pk)
    assert (entry.history_user, entry.history_change_reason) == (nurse, "created")


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_a_late_event_before_day_0_is_refused_on_its_date(nurse, treatment, model):
    field = LATE_EVENTS[model][0]
    errors = refused(model, nurse, treatment, day(-1))
    assert "day 0" in " ".join(errors[field])


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_a_late_event_after_the_death_is_refused_on_its_date(nurse, treatment, model):
    services.death_record(patient=treatment.patient, user=nurse, date=day(100), cause="disease")
    field = LATE_EVENTS[model][0]
    errors = refused(model, nurse, treatment, day(101))
    assert "death" in " ".join(errors[field])
    assert create(model, nurse, treatment, day(100)).pk  # on the day of death: allowed


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_a_late_event_in_the_future_is_refused(nurse, treatment, model):
    errors = refused(model, nurse, treatment, date.today() + timedelta(days=2))
    assert "future" in " ".join(errors[LATE_EVENTS[model][0]])


def test_an_edit_needs_a_reason_which_the_history_keeps(nurse, treatment):
    infection = create(Infection, nurse, treatment, day(12))
    with pytest.raises(ValidationError) as error:
        services.record_update(infection, user=nurse, reason="", ctcae_grade=3)
    assert "reason" in error.value.message_dict
    services.record_update(infection, user=nurse, reason="culture result", ctcae_grade=3)
    reasons = list(
        Infection.history.filter(id=infection.pk)
        .order_by("history_id")
        .values_list("history_change_reason", "ctcae_grade")
    )
    assert reasons == [("created", 2), ("culture result", 3)]


@pytest.mark.parametrize("grade, ok", [(0, False), (1, True), (5, True), (6, False)])
def test_an_infection_grade_is_a_ctcae_grade_from_1_to_5(nurse, treatment, grade, ok):
    if ok:
        assert create(Infection, nurse, treatment, day(12), ctcae_grade=grade).pk
        return
    errors = refused(Infection, nurse, treatment, day(12), ctcae_grade=grade)
    assert "from 1 to 5" in " ".join(errors["ctcae_grade"])


@pytest.mark.parametrize("grade, ok", [(0, False), (1, True), (5, True), (6, False)])
def test_an_iec_hs_grade_is_from_1_to_5(nurse, treatment, grade, ok):
    if ok:
        assert create(IecHsEpisode, nurse, treatment, day(12), recorded_grade=grade).pk
        return
    errors = refused(IecHsEpisode, nurse, treatment, day(12), recorded_grade=grade)
    assert "from 1 to 5" in " ".join(errors["recorded_grade"])


def test_an_iec_hs_episode_keeps_its_criteria(nurse, treatment):
    episode = create(IecHsEpisode, nurse, treatment, day(12), hemophagocytosis=True)
    episode.refresh_from_db()
    assert episode.criteria_present == [
        "ferritin_rise",
        "hemophagocytosis",
        "coagulopathy",
        "cytopenias",
    ]


@pytest.mark.parametrize("crs_status, ok", [("yes", True), ("unknown", True), ("no", False)])
def test_an_iec_hs_onset_as_crs_resolves_needs_a_treatment_not_recorded_without_crs(
    nurse, treatment, crs_status, ok
):
    # Hines et al. 2023: the timing criterion is an onset as CRS resolves (or inflammation
    # worsening after CRS-directed therapy); "unknown" CRS does not contradict it.
    services.record_update(treatment, user=nurse, reason="test", crs_status=crs_status)
    if ok:
        assert create(IecHsEpisode, nurse, treatment, day(14), onset_after_crs=True).pk
        return
    errors = refused(IecHsEpisode, nurse, treatment, day(14), onset_after_crs=True)
    assert list(errors) == ["onset_after_crs"]
    assert "no CRS" in errors["onset_after_crs"][0]
    assert create(IecHsEpisode, nurse, treatment, day(14)).pk  # without the timing: kept


def test_a_treatment_with_an_iec_hs_onset_after_crs_cannot_be_set_to_no_crs(nurse, treatment):
    create(IecHsEpisode, nurse, treatment, day(14), onset_after_crs=True)
    with pytest.raises(ValidationError) as error:
        services.record_update(treatment, user=nurse, reason="test", crs_status="no")
    assert "IEC-HS" in " ".join(error.value.message_dict["crs_status"])


@pytest.mark.parametrize("stop, ok", [(None, True), (40, True), (60, True), (39, False)], ids=str)
def test_an_ivig_course_stops_on_or_after_its_start(nurse, treatment, stop, ok):
    fields = {"stop": None if stop is None else day(stop)}
    if ok:
        assert create(IvigCourse, nurse, treatment, day(40), **fields).pk
        return
    errors = refused(IvigCourse, nurse, treatment, day(40), **fields)
    assert day(40).isoformat() in " ".join(errors["stop"])


def test_an_ivig_course_does_not_stop_after_the_death(nurse, treatment):
    services.death_record(patient=treatment.patient, user=nurse, date=day(100), cause="disease")
    errors = refused(IvigCourse, nurse, treatment, day(40), stop=day(101))
    assert "death" in " ".join(errors["stop"])


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"t_cell_malignancy": True}, "car_transgene_tested"),
        ({"car_transgene_detected": "yes"}, "car_transgene_detected"),
        ({"car_transgene_tested": "no", "car_transgene_detected": "no"}, "car_transgene_detected"),
        (
            {
                "t_cell_malignancy": True,
                "car_transgene_tested": "no",
                "car_transgene_detected": "yes",
            },
            "car_transgene_detected",
        ),
    ],
    ids=[
        "T-cell malignancy, testing unknown",
        "detected, testing unknown",
        "not detected, not tested",
        "detected, not tested",
    ],
)
def test_a_second_cancer_says_whether_the_transgene_was_tested_before_what_was_found(
    nurse, treatment, fields, field
):
    errors = refused(SecondCancer, nurse, treatment, day(400), **fields)
    assert field in errors


@pytest.mark.parametrize(
    "fields",
    [
        {"t_cell_malignancy": True, "car_transgene_tested": "yes", "car_transgene_detected": "yes"},
        {"t_cell_malignancy": True, "car_transgene_tested": "yes"},  # result pending
        {"t_cell_malignancy": True, "car_transgene_tested": "no"},
        {"t_cell_malignancy": False},
    ],
    ids=["tested and detected", "tested, result pending", "not tested", "not a T-cell cancer"],
)
def test_a_second_cancer_with_a_consistent_transgene_answer_is_saved(nurse, treatment, fields):
    assert create(SecondCancer, nurse, treatment, day(400), **fields).pk


def test_after_blinatumomab_a_t_cell_malignancy_is_not_asked_about_a_car_transgene(nurse, patient):
    blinatumomab = factories.treatment(user=nurse, patient=patient, arm="blinatumomab")
    assert create(SecondCancer, nurse, blinatumomab, day(400), t_cell_malignancy=True).pk


# --- the nurse's forms and the timeline ------------------------------------------------------
def test_the_nurse_records_a_t_cell_malignancy_and_is_asked_about_the_transgene(
    client, nurse, treatment
):
    client.force_login(nurse)
    url = reverse("record-new", args=[treatment.pk, "second_cancer"])
    form = client.get(url).context["form"]
    values = {"date": day(400), "cancer_type": "PTCL", "t_cell_malignancy": True}

    response = client.post(url, form_data(form, values))

    assert response.status_code == 200
    assert "car_transgene_tested" in response.context["form"].errors
    assert not SecondCancer.objects.exists()
    response = client.post(url, form_data(form, values | {"car_transgene_tested": "yes"}))
    assert response.status_code == 302
    assert SecondCancer.objects.get().car_transgene_tested == "yes"


@pytest.mark.parametrize("kind", ["infection", "iec_hs", "ivig", "persistence", "second_cancer"])
def test_each_late_event_has_its_page_in_both_languages(client, nurse, treatment, kind):
    client.force_login(nurse)
    url = reverse("record-new", args=[treatment.pk, kind])
    assert client.get(url).status_code == 200
    page = client.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "treatment required" not in page and "CAR T cells detected" not in page


def test_the_timeline_shows_each_late_event_and_persistence_beside_b_cell_aplasia(
    client, nurse, treatment
):
    for model in MODELS:
        create(model, nurse, treatment, day(30))
    services.record_create(
        FollowUpContact,
        user=nurse,
        treatment=treatment,
        date=day(90),
        disease_status="remission",
        b_cell_aplasia="yes",
    )
    client.force_login(nurse)
    url = reverse("patient-detail", args=[treatment.patient.pk])

    page = client.get(url).content.decode()

    for kind in ("infection", "iec_hs", "ivig", "persistence", "second_cancer"):
        assert f'data-kind="{kind}"' in page, kind
        assert reverse("record-new", args=[treatment.pk, kind]) in page, kind
    assert "CAR persistence</strong> detected (qPCR of the CAR transgene)" in page
    assert "B-cell aplasia: Yes" in page
    assert "CTCAE grade 2" in page and "ongoing" in page
    chinese = client.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "CAR 持续性" in chinese and "B 细胞缺乏" in chinese and "CTCAE 2 级" in chinese


# --- the API ---------------------------------------------------------------------------------
ENDPOINTS = {
    Infection: "infections",
    IecHsEpisode: "iec-hs-episodes",
    IvigCourse: "ivig-courses",
    CarPersistence: "persistence-assessments",
    SecondCancer: "second-cancers",
}


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def as_json(values: dict) -> dict:
    return {k: v.isoformat() if isinstance(v, date) else v for k, v in values.items()}


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_the_api_creates_lists_and_updates_each_late_event(nurse, treatment, model):
    client = api(nurse)
    url = f"/api/v1/{ENDPOINTS[model]}/"
    body = as_json(LATE_EVENTS[model][1](day(30))) | {"treatment": treatment.pk}

    created = client.post(url, body, format="json")

    assert created.status_code == 201, created.content
    record = model.objects.get()
    assert created.json()["id"] == record.pk and created.json()["version"] == 1
    listed = client.get(url, {"treatment": treatment.pk}).json()
    assert [row["id"] for row in listed["results"]] == [record.pk]
    assert client.get(url, {"treatment": treatment.pk + 1}).json()["count"] == 0
    field = LATE_EVENTS[model][0]
    changed = client.patch(
        f"{url}{record.pk}/",
        {field: day(31).isoformat(), "version": 1, "reason": "typo"},
        format="json",
    )
    assert changed.status_code == 200, changed.content
    record.refresh_from_db()
    assert (getattr(record, field), record.version) == (day(31), 2)


def test_the_api_refuses_a_broken_rule_with_the_fields_message(nurse, treatment):
    body = as_json(LATE_EVENTS[SecondCancer][1](day(400))) | {
        "treatment": treatment.pk,
        "t_cell_malignancy": True,
    }
    response = api(nurse).post("/api/v1/second-cancers/", body, format="json")
    assert response.status_code == 400
    assert "CAR transgene" in " ".join(response.json()["car_transgene_tested"])
    ivig = api(nurse).post(
        "/api/v1/ivig-courses/",
        {"treatment": treatment.pk, "start": day(40).isoformat(), "stop": day(30).isoformat()},
        format="json",
    )
    assert ivig.status_code == 400 and "stop" in ivig.json()
    assert not SecondCancer.objects.exists() and not IvigCourse.objects.exists()


def test_another_sites_late_events_are_not_seen_through_the_api(nurse, administrator, other_site):
    patient = factories.patient(user=administrator, site=other_site, study_id="X001")
    elsewhere = factories.treatment(user=administrator, patient=patient)
    infection = create(Infection, administrator, elsewhere, day(20))
    client = api(nurse)
    assert client.get("/api/v1/infections/").json()["count"] == 0
    assert client.get(f"/api/v1/infections/{infection.pk}/").status_code == 404
    body = as_json(LATE_EVENTS[Infection][1](day(20))) | {"treatment": elsewhere.pk}
    assert client.post("/api/v1/infections/", body, format="json").status_code == 400


# --- the admin -------------------------------------------------------------------------------
def test_a_data_manager_records_an_infection_in_the_admin_through_the_services(
    client, data_manager, treatment
):
    client.force_login(data_manager)
    url = reverse("admin:registry_infection_add")
    form = client.get(url).context["adminform"].form
    values = LATE_EVENTS[Infection][1](day(14)) | {"treatment": treatment, "ctcae_grade": 7}

    refused_page = client.post(url, form_data(form, values))

    assert refused_page.status_code == 200
    assert "ctcae_grade" in refused_page.context["adminform"].form.errors
    saved = client.post(url, form_data(form, values | {"ctcae_grade": 3}))
    assert saved.status_code == 302
    infection = Infection.objects.get()
    assert infection.history.get().history_user == data_manager
    changelist = client.get(reverse("admin:registry_infection_changelist"))
    assert (
        changelist.status_code == 200 and treatment.patient.study_id in changelist.content.decode()
    )


# --- the data-quality queries ----------------------------------------------------------------
def open_kinds(patient, *, today: date) -> set[str]:
    quality.refresh_patient(patient, today=today)
    return set(
        DataQualityQuery.objects.filter(patient=patient, is_open=True).values_list(
            "kind", flat=True
        )
    )


@pytest.mark.parametrize("arm", ["car_t", "blinatumomab"])
def test_an_early_anc_series_too_sparse_by_day_35_opens_a_query_closed_by_the_series(
    nurse, patient, arm
):
    treatment = factories.treatment(user=nurse, patient=patient, arm=arm)
    assert QueryKind.ICAHT_NOT_GRADABLE not in open_kinds(patient, today=day(34))
    assert QueryKind.ICAHT_NOT_GRADABLE in open_kinds(patient, today=day(35))
    query = DataQualityQuery.objects.get(kind=QueryKind.ICAHT_NOT_GRADABLE)
    assert query.params["rule"] == "early_no_values"
    assert "no ANC" in query.text

    # a few counts, far apart: still not gradable, and the query says which days are missing
    services.lab_series_save(
        treatment=treatment,
        rows=[{"date": day(n), "anc_per_ul": 300} for n in (0, 20)],
        user=nurse,
    )
    assert QueryKind.ICAHT_NOT_GRADABLE in open_kinds(patient, today=day(40))
    query.refresh_from_db()
    assert query.is_open and query.params["rule"] == "early_days_missing"

    services.lab_series_save(
        treatment=treatment,
        rows=[{"date": day(n), "anc_per_ul": 300} for n in range(1, 31) if n != 20],
        user=nurse,
    )
    assert QueryKind.ICAHT_NOT_GRADABLE not in open_kinds(patient, today=day(40))
    query.refresh_from_db()
    assert not query.is_open and query.closed_by is None


def test_no_anc_is_asked_of_a_patient_who_died_before_day_35(nurse, treatment):
    services.death_record(patient=treatment.patient, user=nurse, date=day(20), cause="disease")
    assert QueryKind.ICAHT_NOT_GRADABLE not in open_kinds(treatment.patient, today=day(60))


def test_ivig_without_an_igg_value_opens_a_query_closed_by_an_igg_value(nurse, treatment):
    patient = treatment.patient
    assert QueryKind.IVIG_WITHOUT_IGG not in open_kinds(patient, today=day(60))
    create(IvigCourse, nurse, treatment, day(45))
    create(IvigCourse, nurse, treatment, day(40), stop=day(42))
    assert QueryKind.IVIG_WITHOUT_IGG in open_kinds(patient, today=day(60))
    query = DataQualityQuery.objects.get(kind=QueryKind.IVIG_WITHOUT_IGG, is_open=True)
    assert query.params["start"] == day(40).isoformat()  # the first course

    services.record_create(LabValue, user=nurse, treatment=treatment, date=day(44), anc_per_ul=1200)
    assert QueryKind.IVIG_WITHOUT_IGG in open_kinds(patient, today=day(60))  # no IgG in it
    services.record_create(LabValue, user=nurse, treatment=treatment, date=day(44), igg_g_l=3.1)
    assert QueryKind.IVIG_WITHOUT_IGG not in open_kinds(patient, today=day(60))


def test_a_car_t_patient_unassessed_at_month_6_opens_a_query_closed_by_persistence(
    nurse, treatment
):
    patient = treatment.patient
    assert QueryKind.PERSISTENCE_NOT_ASSESSED not in open_kinds(patient, today=day(183))
    assert QueryKind.PERSISTENCE_NOT_ASSESSED in open_kinds(patient, today=day(184))
    create(CarPersistence, nurse, treatment, day(150), detected=False)
    assert QueryKind.PERSISTENCE_NOT_ASSESSED not in open_kinds(patient, today=day(184))


@pytest.mark.parametrize("aplasia, closes", [("yes", True), ("no", True), ("unknown", False)])
def test_b_cell_aplasia_at_a_contact_counts_as_an_assessment(nurse, treatment, aplasia, closes):
    services.record_create(
        FollowUpContact,
        user=nurse,
        treatment=treatment,
        date=day(170),
        disease_status="remission",
        b_cell_aplasia=aplasia,
    )
    still_open = QueryKind.PERSISTENCE_NOT_ASSESSED in open_kinds(treatment.patient, today=day(200))
    assert still_open is not closes


def test_no_persistence_is_asked_after_blinatumomab_or_of_a_patient_dead_before_month_6(
    nurse, patient
):
    factories.treatment(user=nurse, patient=patient, arm="blinatumomab")
    assert QueryKind.PERSISTENCE_NOT_ASSESSED not in open_kinds(patient, today=day(300))
    died = factories.patient(user=nurse, site=patient.site, study_id="P002")
    factories.treatment(user=nurse, patient=died)
    services.death_record(patient=died, user=nurse, date=day(150), cause="disease")
    assert QueryKind.PERSISTENCE_NOT_ASSESSED not in open_kinds(died, today=day(300))


def test_the_new_queries_appear_on_the_worklist_with_the_form_that_fixes_them(
    client, nurse, treatment, settings
):
    settings.IMMUNOREG_TODAY = day(200).isoformat()
    create(IvigCourse, nurse, treatment, day(40))  # the write refreshes the queries, day 200
    client.force_login(nurse)

    page = client.get(reverse("worklist")).content.decode()

    for kind in (
        QueryKind.ICAHT_NOT_GRADABLE,
        QueryKind.IVIG_WITHOUT_IGG,
        QueryKind.PERSISTENCE_NOT_ASSESSED,
    ):
        query = DataQualityQuery.objects.get(kind=kind, is_open=True)
        assert query.text in page.replace("&#x27;", "'"), kind
    assert reverse("record-new", args=[treatment.pk, "persistence"]) + "#id_date" in page


# --- a grade 5 late event and the death record -----------------------------------------------
FATAL = QueryKind.FATAL_EVENT_WITHOUT_DEATH
FATAL_EVENTS = [
    (Infection, "ctcae_grade", "infection", "infection"),
    (IecHsEpisode, "recorded_grade", "iec_hs", "other_treatment_related"),
]


def fix_of(query) -> str:
    from registry.views import resolving_url

    return resolving_url(query)


@pytest.mark.parametrize("model, grade_field, key, cause", FATAL_EVENTS, ids=["infection", "iechs"])
def test_a_grade_5_late_event_opens_a_query_closed_by_the_death_from_it(
    nurse, treatment, model, grade_field, key, cause
):
    patient = treatment.patient
    event = create(model, nurse, treatment, day(20), **{grade_field: 5})
    assert FATAL in open_kinds(patient, today=day(60))
    query = DataQualityQuery.objects.get(kind=FATAL, is_open=True)
    assert query.key == f"{key}{event.pk}"
    assert "no death is recorded" in query.text
    assert fix_of(query) == reverse("record-new", args=[patient.pk, "death"]) + "#id_date"

    # a death of another cause: still open, and the fix is the death's cause
    death = services.death_record(patient=patient, user=nurse, date=day(25), cause="disease")
    assert FATAL in open_kinds(patient, today=day(60))
    query.refresh_from_db()
    assert query.is_open and query.params["cause"] == "disease"
    assert "“Disease”" in query.text
    assert fix_of(query) == reverse("record-edit", args=["death", death.pk]) + "#id_cause"
    with translation.override("zh-hans"):
        assert "grade" not in query.text and "disease" not in query.text.lower()

    services.record_update(death, user=nurse, reason="death certificate", cause=cause)
    assert FATAL not in open_kinds(patient, today=day(60))
    query.refresh_from_db()
    assert not query.is_open and query.closed_by is None


@pytest.mark.parametrize("model, grade_field, key, cause", FATAL_EVENTS, ids=["infection", "iechs"])
def test_only_grade_5_asks_for_a_death_and_a_lower_grade_closes_the_query(
    nurse, treatment, model, grade_field, key, cause
):
    event = create(model, nurse, treatment, day(20), **{grade_field: 4})
    assert FATAL not in open_kinds(treatment.patient, today=day(60))
    services.record_update(event, user=nurse, reason="died of it", **{grade_field: 5})
    assert FATAL in open_kinds(treatment.patient, today=day(60))
    event.refresh_from_db()
    services.record_update(event, user=nurse, reason="reviewed", **{grade_field: 4})
    assert FATAL not in open_kinds(treatment.patient, today=day(60))


def test_a_death_dated_before_the_fatal_events_onset_keeps_the_query_open(nurse, treatment):
    patient = treatment.patient
    create(Infection, nurse, treatment, day(20), ctcae_grade=5)
    death = services.death_record(patient=patient, user=nurse, date=day(30), cause="infection")
    assert FATAL not in open_kinds(patient, today=day(60))
    # a death dated before the onset is refused on every path; rows written before that rule
    # (or by hand in the database) are still found
    Death.objects.filter(pk=death.pk).update(date=day(10))
    assert FATAL in open_kinds(patient, today=day(60))
    query = DataQualityQuery.objects.get(kind=FATAL, is_open=True)
    assert "before that onset" in query.text
    assert fix_of(query) == reverse("record-edit", args=["death", death.pk]) + "#id_date"


def test_one_query_per_fatal_event(nurse, treatment):
    create(Infection, nurse, treatment, day(20), ctcae_grade=5)
    create(IecHsEpisode, nurse, treatment, day(21), recorded_grade=5)
    open_kinds(treatment.patient, today=day(60))
    assert DataQualityQuery.objects.filter(kind=FATAL, is_open=True).count() == 2
