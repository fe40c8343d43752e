"""Data-quality queries open when the data shows a problem and close when it is fixed."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.urls import reverse
from django.utils import translation

from registry import quality, services
from registry.models import (
    CrsEpisode,
    DataQualityQuery,
    FollowUpContact,
    Infection,
    IvigCourse,
    QueryKind,
    Transplant,
)
from tests import factories
from tests.factories import DAY0

pytestmark = pytest.mark.django_db


def open_kinds(patient) -> set[str]:
    return set(
        DataQualityQuery.objects.filter(patient=patient, is_open=True).values_list(
            "kind", flat=True
        )
    )


def test_a_missing_baseline_opens_a_query_that_closes_when_it_is_entered(nurse, patient):
    treatment = factories.treatment(user=nurse, patient=patient, bm_blast_pct=None)
    assert QueryKind.BASELINE_INCOMPLETE in open_kinds(patient)
    services.record_update(treatment, user=nurse, reason="marrow report arrived", bm_blast_pct=45)
    assert QueryKind.BASELINE_INCOMPLETE not in open_kinds(patient)
    closed = DataQualityQuery.objects.get(kind=QueryKind.BASELINE_INCOMPLETE)
    assert closed.closed_at is not None and closed.closed_by is None


def test_crs_status_unknown_after_day_30_opens_a_query(nurse, treatment):
    assert QueryKind.CRS_STATUS_UNKNOWN in open_kinds(treatment.patient)
    services.record_create(
        CrsEpisode,
        user=nurse,
        treatment=treatment,
        onset=DAY0,
        max_temperature_c=38.4,
        hypotension=False,
        oxygen="none",
    )
    assert QueryKind.CRS_STATUS_UNKNOWN not in open_kinds(treatment.patient)


def test_overdue_visits_and_loss_to_follow_up_depend_on_today(nurse, treatment, settings):
    services.record_create(
        FollowUpContact,
        user=nurse,
        treatment=treatment,
        date=DAY0 + timedelta(days=28),
        disease_status="remission",
    )
    quality.refresh_patient(treatment.patient, today=DAY0 + timedelta(days=100))
    assert QueryKind.FOLLOW_UP_OVERDUE not in open_kinds(treatment.patient)
    quality.refresh_patient(treatment.patient, today=DAY0 + timedelta(days=121))
    assert QueryKind.FOLLOW_UP_OVERDUE in open_kinds(treatment.patient)
    quality.refresh_patient(treatment.patient, today=DAY0 + timedelta(days=28 + 181))
    assert QueryKind.LOST_TO_FOLLOW_UP in open_kinds(treatment.patient)


def test_a_query_closed_by_a_data_manager_stays_closed(nurse, data_manager, patient):
    factories.treatment(user=nurse, patient=patient, bm_blast_pct=None)
    query = DataQualityQuery.objects.get(kind=QueryKind.BASELINE_INCOMPLETE)
    quality.query_close(query, user=data_manager, reason="no marrow done: extramedullary only")
    quality.refresh_patient(patient, today=date(2024, 1, 1))
    query.refresh_from_db()
    assert not query.is_open and query.closed_by == data_manager


def test_a_last_contact_before_the_latest_event_opens_a_query(nurse, treatment):
    services.record_create(
        FollowUpContact,
        user=nurse,
        treatment=treatment,
        date=DAY0 + timedelta(days=28),
        disease_status="remission",
    )
    services.record_create(
        Transplant, user=nurse, treatment=treatment, date=DAY0 + timedelta(days=60), type="ucbt"
    )
    assert QueryKind.CONTACT_BEFORE_EVENT in open_kinds(treatment.patient)


def test_the_nightly_task_refreshes_every_patient_and_is_scheduled_in_the_database(
    nurse, treatment, settings
):
    from django_celery_beat.models import PeriodicTask

    from registry.tasks import refresh_quality_queries

    services.record_create(
        FollowUpContact,
        user=nurse,
        treatment=treatment,
        date=DAY0 + timedelta(days=28),
        disease_status="remission",
    )
    settings.IMMUNOREG_TODAY = (DAY0 + timedelta(days=400)).isoformat()
    assert refresh_quality_queries.apply().get() == 1
    assert QueryKind.LOST_TO_FOLLOW_UP in open_kinds(treatment.patient)
    schedule = PeriodicTask.objects.get(task="registry.tasks.refresh_quality_queries")
    assert schedule.enabled and schedule.crontab.hour == "1"


# --- Query messages in the reader's language, and the field each query is about (#12) ------
TODAY = date(2024, 10, 31)


def on_day(day: int) -> date:
    return TODAY - timedelta(days=200) + timedelta(days=day)


def overdue_day_100(nurse, patient):
    treatment = factories.treatment(user=nurse, patient=patient, day0=on_day(0))
    services.record_create(
        FollowUpContact,
        user=nurse,
        treatment=treatment,
        date=on_day(30),
        disease_status="remission",
    )
    return treatment


def test_a_query_is_written_in_the_readers_language_with_readable_visit_names(
    nurse, patient, settings
):
    settings.IMMUNOREG_TODAY = TODAY.isoformat()
    overdue_day_100(nurse, patient)
    quality.refresh_patient(patient, today=on_day(130))
    query = DataQualityQuery.objects.get(kind=QueryKind.FOLLOW_UP_OVERDUE)
    closes = on_day(120).isoformat()
    assert query.params == {
        "treatment": query.params["treatment"],
        "visit": "day100",
        "closes": closes,
    }
    with translation.override("en"):
        assert query.text == f"Follow-up visit Day 100 overdue: its window closed on {closes}."
    with translation.override("zh-hans"):
        assert query.text == f"第 100 天随访已逾期：随访窗已于 {closes} 关闭。"
    assert "day100" not in query.message  # the stored record reads as well


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_no_query_kind_shows_an_internal_code_or_english_in_chinese(
    nurse, patient, settings, language
):
    settings.IMMUNOREG_TODAY = TODAY.isoformat()
    treatment = factories.treatment(
        user=nurse, patient=patient, day0=on_day(0), bm_blast_pct=None, relapse_status=""
    )
    services.record_create(
        FollowUpContact,
        user=nurse,
        treatment=treatment,
        date=on_day(30),
        disease_status="remission",
    )
    services.record_create(
        Transplant, user=nurse, treatment=treatment, date=on_day(60), type="ucbt"
    )
    CrsEpisode.objects.create(
        treatment=treatment, onset=on_day(2), max_temperature_c=39, hypotension=False,
        oxygen="none", grading_system="astct2019", derived_grade=1, recorded_grade=2,
    )  # fmt: skip
    # no ANC (early ICAHT not gradable), IVIG without IgG, and no persistence by month 6
    services.record_create(IvigCourse, user=nurse, treatment=treatment, start=on_day(40))
    fatal_infection(nurse, treatment)  # and no death recorded
    quality.refresh_patient(patient, today=on_day(130))
    quality.refresh_patient(patient, today=on_day(400))  # and lost, by then
    queries = list(DataQualityQuery.objects.filter(patient=patient))
    assert {q.kind for q in queries} == set(QueryKind)
    for query in queries:
        with translation.override(language):
            text = query.text
        assert text and not any(code in text for code in ("day1", "month", "year", "_"))
        if language == "zh-hans":
            assert not any(word in text for word in ("overdue", "missing", "Lost", "grade"))


def fatal_infection(nurse, treatment) -> Infection:
    return services.record_create(
        Infection, user=nurse, treatment=treatment, onset=on_day(50), site="bloodstream",
        organism_class="fungal", ctcae_grade=5,
    )  # fmt: skip


def contact_url(treatment) -> str:
    return reverse("record-new", args=[treatment.pk, "contact"]) + "#id_date"


def make_query(kind, nurse, patient):
    """The data that opens a query of this kind, and the form and field that fix it."""
    treatment = factories.treatment(user=nurse, patient=patient, day0=on_day(0))
    today = on_day(130)
    match kind:
        case QueryKind.BASELINE_INCOMPLETE:
            services.record_update(treatment, user=nurse, reason="test", relapse_status="")
            url = reverse("record-edit", args=["treatment", treatment.pk]) + "#id_relapse_status"
        case QueryKind.CRS_STATUS_UNKNOWN:
            url = reverse("record-edit", args=["treatment", treatment.pk]) + "#id_crs_status"
        case QueryKind.RESPONSE_NOT_ASSESSED:
            url = reverse("record-new", args=[treatment.pk, "response"]) + "#id_date"
        case QueryKind.FOLLOW_UP_OVERDUE:
            services.record_create(
                FollowUpContact, user=nurse, treatment=treatment, date=on_day(30),
                disease_status="remission",
            )  # fmt: skip
            url = contact_url(treatment)
        case QueryKind.LOST_TO_FOLLOW_UP:
            today = on_day(200)
            url = contact_url(treatment)
        case QueryKind.CONTACT_BEFORE_EVENT:
            services.record_create(
                FollowUpContact, user=nurse, treatment=treatment, date=on_day(30),
                disease_status="remission",
            )  # fmt: skip
            services.record_create(
                Transplant, user=nurse, treatment=treatment, date=on_day(60), type="ucbt"
            )
            url = contact_url(treatment)
        case QueryKind.GRADE_MISMATCH:
            episode = CrsEpisode.objects.create(
                treatment=treatment, onset=on_day(2), max_temperature_c=39, hypotension=False,
                oxygen="none", grading_system="astct2019", derived_grade=1, recorded_grade=2,
            )  # fmt: skip
            url = reverse("record-edit", args=["crs", episode.pk]) + "#id_recorded_grade"
        case QueryKind.ICAHT_NOT_GRADABLE:  # no ANC: the treatment's laboratory values
            url = reverse("treatment-labs", args=[treatment.pk]) + "#id_pasted"
        case QueryKind.IVIG_WITHOUT_IGG:
            services.record_create(IvigCourse, user=nurse, treatment=treatment, start=on_day(40))
            url = reverse("treatment-labs", args=[treatment.pk]) + "#id_pasted"
        case QueryKind.PERSISTENCE_NOT_ASSESSED:
            today = on_day(200)
            url = reverse("record-new", args=[treatment.pk, "persistence"]) + "#id_date"
        case QueryKind.FATAL_EVENT_WITHOUT_DEATH:  # no death: the patient's death form
            fatal_infection(nurse, treatment)
            url = reverse("record-new", args=[patient.pk, "death"]) + "#id_date"
    quality.refresh_patient(patient, today=today)
    return DataQualityQuery.objects.get(patient=patient, kind=kind, is_open=True), url


@pytest.mark.parametrize("kind", list(QueryKind))
def test_fix_opens_the_form_of_the_record_at_the_field_the_query_is_about(
    client, nurse, patient, settings, kind
):
    from registry.views import resolving_url

    settings.IMMUNOREG_TODAY = TODAY.isoformat()
    query, expected = make_query(kind, nurse, patient)
    assert resolving_url(query) == expected
    client.force_login(nurse)
    page, field = expected.split("#")
    response = client.get(page)
    assert response.status_code == 200
    assert f'id="{field}"' in response.content.decode()
    worklist = client.get(reverse("worklist")).content.decode()
    assert f'href="{expected}"' in worklist


def test_every_page_that_shows_a_query_writes_it_in_chinese_for_a_chinese_reader(
    client, nurse, data_manager, patient, settings
):
    settings.IMMUNOREG_TODAY = TODAY.isoformat()
    overdue_day_100(nurse, patient)
    quality.refresh_patient(patient, today=TODAY)  # day 200, seen 170 days ago: not lost
    query = DataQualityQuery.objects.get(kind=QueryKind.FOLLOW_UP_OVERDUE, is_open=True)
    chinese = "第 100 天随访已逾期"
    pages = {
        nurse: [reverse("worklist"), reverse("patient-detail", args=[patient.pk])],
        data_manager: [
            reverse("admin:registry_dataqualityquery_changelist"),
            reverse("admin:registry_dataqualityquery_change", args=[query.pk]),
        ],
    }
    for user, urls in pages.items():
        client.force_login(user)
        for url in urls:
            page = client.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
            assert chinese in page, url
            assert "overdue: its window" not in page and "day100" not in page, url


def test_the_registrys_reasons_in_the_query_history_are_stored_in_one_language(
    nurse, patient, settings
):
    settings.IMMUNOREG_TODAY = TODAY.isoformat()
    with translation.override("zh-hans"):  # a Chinese nurse's write refreshes the queries
        treatment = factories.treatment(
            user=nurse, patient=patient, day0=on_day(0), bm_blast_pct=None
        )
        services.record_update(treatment, user=nurse, reason="marrow report", bm_blast_pct=45)
    reasons = set(
        DataQualityQuery.history.filter(kind=QueryKind.BASELINE_INCOMPLETE).values_list(
            "history_change_reason", flat=True
        )
    )
    assert reasons == {quality.OPENED, quality.CLOSED}
    with translation.override("zh-hans"):  # and a page can show them translated
        assert translation.gettext(quality.OPENED) != quality.OPENED
