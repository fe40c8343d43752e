"""A treatment's laboratory values, saved as one grid (services.lab_series_save), and the ICAHT
grade derived on the treatment in the same write whenever its series or its window changes."""

from __future__ import annotations

import io
from datetime import date, timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import translation

from registry import services
from registry.domain.icaht import IcahtRule
from registry.domain.vocabulary import Role
from registry.models import Death, LabValue, Relapse, Transplant, Treatment
from tests import factories
from tests.factories import DAY0

pytestmark = pytest.mark.django_db


def day(n: int) -> date:
    return DAY0 + timedelta(days=n)


def rows_of(values: dict[int, float]) -> list[dict]:
    return [{"date": day(n), "anc_per_ul": anc} for n, anc in values.items()]


def neutropenic_days(days: int, last: int = 40) -> dict[int, float]:
    """Day 0 recovered, `days` daily counts at 300/uL, then daily counts at 3000 to `last`."""
    return {n: 300 if 1 <= n <= days else 3000 for n in range(last + 1)}


def save(treatment, user, rows, reason=""):
    return services.lab_series_save(treatment=treatment, rows=rows, user=user, reason=reason)


def state() -> tuple:
    """Every lab row, its history, and every treatment with its history count."""
    return (
        list(LabValue.objects.order_by("pk").values()),
        LabValue.history.count(),
        list(Treatment.objects.order_by("pk").values()),
        Treatment.history.count(),
    )


# --- a grid saved ------------------------------------------------------------------------


def test_a_grid_of_new_rows_is_saved_with_an_audit_row_each(treatment, nurse):
    rows = [
        {"date": day(1), "anc_per_ul": 300, "platelets_10e9_l": 45, "haemoglobin_g_dl": "8.9"},
        {"date": day(2), "crp_mg_l": "120.5", "ferritin_ng_ml": 15000, "igg_g_l": "4.2"},
        {"date": day(3), "cd19_b_cells_per_ul": "0"},
    ]
    written = save(treatment, nurse, rows)

    assert [lab.date for lab in LabValue.objects.all()] == [day(1), day(2), day(3)]
    assert len(written) == 3
    history = LabValue.history.order_by("history_id")
    assert [(h.history_type, h.history_user, h.history_change_reason) for h in history] == [
        ("+", nurse, "created")
    ] * 3


def test_the_early_grade_is_derived_on_the_treatment_in_the_same_write(treatment, nurse):
    save(treatment, nurse, rows_of(neutropenic_days(7)))

    treatment.refresh_from_db()
    assert treatment.icaht_early_grade == 2
    assert treatment.icaht_early_rule == IcahtRule.EARLY_ANC_500_DAYS
    assert treatment.icaht_early_reason == "ANC at or below 500/µL on 7 days of days 0-30."
    last = treatment.history.latest("history_id")
    assert last.history_change_reason == "ICAHT derived again from the laboratory values"
    assert last.history_user == nurse


def test_the_reason_reads_in_chinese_for_a_chinese_reader(treatment, nurse):
    save(treatment, nurse, rows_of(neutropenic_days(7)))
    treatment.refresh_from_db()
    with translation.override("zh-hans"):
        assert treatment.icaht_early_reason == "第 0-30 天中有 7 天 ANC ≤ 500/µL。"


def test_the_late_grade_is_derived_from_two_counts_after_day_30(treatment, nurse):
    save(treatment, nurse, rows_of({40: 800, 60: 900, 90: 2000}))

    treatment.refresh_from_db()
    assert (treatment.icaht_late_grade, treatment.icaht_late_rule) == (2, "late_lowest_anc")
    assert treatment.icaht_late_params == {"threshold": 1000.0, "values": 2, "lowest_anc": 800.0}


def test_a_sparse_series_is_stored_as_not_gradable_with_the_days_to_record(treatment, nurse):
    save(treatment, nurse, rows_of({0: 3000, 5: 300, 12: 3000, 40: 3000}))

    treatment.refresh_from_db()
    assert treatment.icaht_early_grade is None
    assert treatment.icaht_early_rule == IcahtRule.EARLY_DAYS_MISSING
    # day 12's recovery could be a short one inside a longer neutropenia: unsettled too
    assert treatment.icaht_early_params == {"days": "1-4, 6-30", "lowest": 1, "highest": 4}
    assert "grade 1 to 4, depending on days 1-4, 6-30" in treatment.icaht_early_reason


def test_a_new_treatment_has_no_anc_and_says_so(treatment):
    assert (treatment.icaht_early_grade, treatment.icaht_early_rule) == (None, "early_no_values")
    assert treatment.icaht_late_rule == "late_too_few_values"


def test_several_rows_of_one_day_are_kept_and_the_lowest_anc_counts(treatment, nurse):
    rows = [*rows_of(neutropenic_days(6)), {"date": day(7), "anc_per_ul": 450}]
    save(treatment, nurse, rows)

    assert LabValue.objects.filter(date=day(7)).count() == 2
    treatment.refresh_from_db()
    assert treatment.icaht_early_grade == 2  # 7 days at or below 500


# --- every error at once, nothing saved --------------------------------------------------


def test_every_error_comes_back_by_row_and_column_and_nothing_is_saved(treatment, nurse):
    before = state()
    rows = [
        {"date": day(1), "anc_per_ul": 300},  # valid
        {"date": day(-1), "anc_per_ul": 100_001},
        {"date": day(2), "haemoglobin_g_dl": "95"},  # g/L typed in the g/dL column
        {"date": day(3)},
        {"date": day(4), "platelets_10e9_l": 2001, "potassium": 4},
    ]
    with pytest.raises(services.LabSeriesRefused) as refused:
        save(treatment, nurse, rows)

    assert sorted(refused.value.rows) == [1, 2, 3, 4]
    assert set(refused.value.rows[1]) == {"date", "anc_per_ul"}
    assert "day 0" in refused.value.rows[1]["date"][0]
    assert "cells/µL" in refused.value.rows[1]["anc_per_ul"][0]
    assert "g/dL" in refused.value.rows[2]["haemoglobin_g_dl"][0]
    assert refused.value.rows[3]["__all__"] == [
        "Enter at least one laboratory value for this date, or leave the row out."
    ]
    assert set(refused.value.rows[4]) == {"platelets_10e9_l", "potassium"}
    assert "rows.4.potassium" in refused.value.message_dict
    assert state() == before


def test_a_value_that_is_not_a_number_is_refused_on_its_cell(treatment, nurse):
    with pytest.raises(services.LabSeriesRefused) as refused:
        save(treatment, nurse, [{"date": day(1), "anc_per_ul": "lots"}])
    assert list(refused.value.rows[0]) == ["anc_per_ul"]


@pytest.mark.parametrize(
    "field, value, plausible",
    [
        ("anc_per_ul", 0, True),
        ("anc_per_ul", 100_000, True),
        ("anc_per_ul", 100_001, False),
        ("platelets_10e9_l", 2000, True),
        ("platelets_10e9_l", 2001, False),
        ("haemoglobin_g_dl", "1.9", False),
        ("haemoglobin_g_dl", "25.0", True),
        ("crp_mg_l", "1000.1", False),
        ("ferritin_ng_ml", 500_001, False),
        ("igg_g_l", "50.1", False),
        ("cd19_b_cells_per_ul", "5000.1", False),
        ("anc_per_ul", -1, False),
        ("igg_g_l", float("nan"), False),
    ],
)
def test_values_keep_to_their_physiological_range(treatment, nurse, field, value, plausible):
    row = {"date": day(1), field: value}
    if plausible:
        assert save(treatment, nurse, [row])
        return
    with pytest.raises(services.LabSeriesRefused) as refused:
        save(treatment, nurse, [row])
    assert list(refused.value.rows[0]) == [field]


def test_a_future_date_is_refused(treatment, nurse):
    with pytest.raises(services.LabSeriesRefused) as refused:
        save(treatment, nurse, [{"date": date.today() + timedelta(days=1), "anc_per_ul": 500}])
    assert "future" in refused.value.rows[0]["date"][0]


def test_a_value_after_the_death_is_refused(treatment, nurse):
    services.death_record(patient=treatment.patient, user=nurse, date=day(20), cause="disease")
    with pytest.raises(services.LabSeriesRefused) as refused:
        save(treatment, nurse, [{"date": day(21), "anc_per_ul": 500}])
    assert "death" in refused.value.rows[0]["date"][0]


# --- changing saved rows -----------------------------------------------------------------


def saved_rows(treatment, nurse, values):
    save(treatment, nurse, rows_of(values))
    return list(treatment.lab_values.order_by("date"))


def test_changing_a_saved_row_needs_a_reason(treatment, nurse):
    (lab,) = saved_rows(treatment, nurse, {1: 300})
    before = state()
    with pytest.raises(ValidationError) as refused:
        save(treatment, nurse, [{"id": lab.pk, "version": lab.version, "anc_per_ul": 30}])
    assert "reason" in refused.value.message_dict
    assert state() == before


def test_a_changed_row_is_saved_with_its_reason_and_the_grade_follows(treatment, nurse):
    labs = saved_rows(treatment, nurse, neutropenic_days(7))
    changes = [{"id": lab.pk, "version": lab.version, "anc_per_ul": 50} for lab in labs[1:8]]

    save(treatment, nurse, changes, reason="lab report re-read")

    changed = LabValue.objects.get(pk=labs[1].pk)
    assert (changed.anc_per_ul, changed.version) == (50, 2)
    assert changed.history.latest("history_id").history_change_reason == "lab report re-read"
    treatment.refresh_from_db()
    assert (treatment.icaht_early_grade, treatment.icaht_early_rule) == (3, "early_anc_100_days")


def test_an_unchanged_saved_row_is_not_written_again(treatment, nurse):
    (lab,) = saved_rows(treatment, nurse, {1: 300})
    history = LabValue.history.count()

    written = save(treatment, nurse, [{"id": lab.pk, "date": day(1), "anc_per_ul": "300"}])

    assert written == []
    assert LabValue.history.count() == history


def test_a_row_changed_by_someone_else_meanwhile_is_refused_on_its_row(treatment, nurse):
    (lab,) = saved_rows(treatment, nurse, {1: 300})
    save(treatment, nurse, [{"id": lab.pk, "anc_per_ul": 200}], reason="typo")

    with pytest.raises(services.LabSeriesRefused) as refused:
        save(treatment, nurse, [{"id": lab.pk, "version": 1, "anc_per_ul": 250}], reason="typo")
    assert "version 2" in refused.value.rows[0]["version"][0]
    assert LabValue.objects.get().anc_per_ul == 200


def test_a_row_of_another_treatment_cannot_be_changed_through_this_one(treatment, nurse):
    other = factories.treatment(user=nurse, patient=treatment.patient, day0=day(200))
    (lab,) = saved_rows(other, nurse, {201: 300})

    with pytest.raises(services.LabSeriesRefused) as refused:
        save(treatment, nurse, [{"id": lab.pk, "anc_per_ul": 30}], reason="typo")
    assert "id" in refused.value.rows[0]
    assert LabValue.objects.get().anc_per_ul == 300


def test_the_same_row_twice_in_a_grid_is_refused(treatment, nurse):
    (lab,) = saved_rows(treatment, nurse, {1: 300})
    rows = [{"id": lab.pk, "anc_per_ul": 30}, {"id": lab.pk, "anc_per_ul": 40}]
    with pytest.raises(services.LabSeriesRefused) as refused:
        save(treatment, nurse, rows, reason="typo")
    assert list(refused.value.rows) == [1]


# --- a row deleted through the grid --------------------------------------------------------
def test_an_administrator_deletes_a_row_in_the_grid_with_a_reason_and_the_grade_follows(
    treatment, nurse, administrator
):
    labs = saved_rows(treatment, nurse, neutropenic_days(7))
    rows = [{"id": labs[7].pk, "version": labs[7].version, "delete": True}]

    written = save(treatment, administrator, rows, reason="entered on the wrong patient")

    assert written == []
    assert not LabValue.objects.filter(pk=labs[7].pk).exists()
    gone = LabValue.history.filter(id=labs[7].pk).latest("history_id")
    assert (gone.history_type, gone.history_user, gone.history_change_reason) == (
        "-",
        administrator,
        "entered on the wrong patient",
    )
    treatment.refresh_from_db()
    # day 7 has no count left, between 300 on day 6 and 3000 on day 8: not gradable
    assert treatment.icaht_early_grade is None
    assert treatment.icaht_early_params == {"days": "7", "lowest": 1, "highest": 2}


def test_deleting_a_row_needs_a_reason_and_nothing_is_deleted_without_one(
    treatment, nurse, administrator
):
    (lab,) = saved_rows(treatment, nurse, {1: 300})
    before = state()
    with pytest.raises(ValidationError) as refused:
        save(treatment, administrator, [{"id": lab.pk, "delete": True}])
    assert "reason" in refused.value.message_dict
    assert state() == before


@pytest.mark.parametrize("role", [Role.NURSE, Role.DATA_MANAGER])
def test_only_an_administrator_may_delete_a_row_and_the_whole_grid_is_refused(
    treatment, nurse, users, role
):
    (lab,) = saved_rows(treatment, nurse, {1: 300})
    before = state()
    rows = [{"date": day(2), "anc_per_ul": 400}, {"id": lab.pk, "delete": True}]
    with pytest.raises(services.LabSeriesRefused) as refused:
        save(treatment, users[role], rows, reason="typo")
    assert list(refused.value.rows) == [1]
    assert "Only administrators" in refused.value.rows[1]["delete"][0]
    assert state() == before  # the new row of the same grid is not saved either


def test_deleting_a_row_changed_meanwhile_or_of_another_treatment_is_refused(
    treatment, nurse, administrator
):
    (lab,) = saved_rows(treatment, nurse, {1: 300})
    save(treatment, nurse, [{"id": lab.pk, "anc_per_ul": 200}], reason="typo")
    other = factories.treatment(user=nurse, patient=treatment.patient, day0=day(200))
    (elsewhere,) = saved_rows(other, nurse, {201: 300})
    rows = [
        {"id": lab.pk, "version": 1, "delete": True},
        {"id": elsewhere.pk, "delete": True},
        {"delete": True, "date": day(3), "anc_per_ul": 50},
    ]
    with pytest.raises(services.LabSeriesRefused) as refused:
        save(treatment, administrator, rows, reason="cleaning")
    assert "version 2" in refused.value.rows[0]["version"][0]
    assert "id" in refused.value.rows[1]
    assert "delete" in refused.value.rows[2]  # a new row has nothing to delete
    assert LabValue.objects.count() == 2


def test_a_grid_may_delete_one_row_and_change_another_in_one_write(treatment, nurse, administrator):
    first, second = saved_rows(treatment, nurse, {1: 300, 2: 400})
    rows = [
        {"id": first.pk, "delete": True},
        {"id": second.pk, "version": second.version, "anc_per_ul": 90},
        {"date": day(3), "anc_per_ul": 80},
    ]
    written = save(treatment, administrator, rows, reason="re-read the printout")
    assert written[0].pk == second.pk and written[1].pk is not None
    assert list(treatment.lab_values.order_by("date").values_list("date", "anc_per_ul")) == [
        (day(2), 90),
        (day(3), 80),
    ]


# --- who may write -----------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.PI])
def test_a_reader_may_not_save_a_grid(treatment, users, role):
    with pytest.raises(PermissionDenied):
        save(treatment, users[role], rows_of({1: 300}))
    assert not LabValue.objects.exists()


def test_a_nurse_of_another_site_may_not_save_a_grid(treatment, other_site):
    stranger = factories.UserFactory(role=Role.NURSE)
    stranger.sites.set([other_site])
    with pytest.raises(PermissionDenied):
        save(treatment, stranger, rows_of({1: 300}))
    assert not LabValue.objects.exists()


def test_a_data_manager_may_save_a_grid(treatment, data_manager):
    assert save(treatment, data_manager, rows_of({1: 300}))


# --- the grade follows every change of its series or window --------------------------------


def test_a_single_value_saved_by_the_record_service_derives_the_grade(treatment, nurse):
    save(treatment, nurse, rows_of(neutropenic_days(6)))
    services.record_create(LabValue, user=nurse, treatment=treatment, date=day(7), anc_per_ul=90)
    treatment.refresh_from_db()
    assert treatment.icaht_early_grade == 2


def test_deleting_a_value_derives_the_grade_again(treatment, nurse, administrator):
    labs = saved_rows(treatment, nurse, neutropenic_days(7))
    services.record_delete(labs[7], user=administrator, reason="entered twice")
    treatment.refresh_from_db()
    # day 7 has no count left, between 300 on day 6 and 3000 on day 8: grade 1 or 2
    assert treatment.icaht_early_grade is None
    assert treatment.icaht_early_params == {"days": "7", "lowest": 1, "highest": 2}


def test_moving_day_0_derives_the_grade_again(treatment, nurse):
    save(treatment, nurse, rows_of(neutropenic_days(7)))
    services.record_update(treatment, user=nurse, reason="infusion date", day0=day(-10))
    treatment.refresh_from_db()
    # the same counts now fall on days 10-50: day 0-9 have no count
    assert treatment.icaht_early_grade is None


def test_a_relapse_ends_the_late_window_the_day_before(treatment, nurse):
    save(treatment, nurse, rows_of({40: 3000, 59: 3000, 60: 50, 65: 50}))
    treatment.refresh_from_db()
    assert treatment.icaht_late_grade == 4

    services.record_create(Relapse, user=nurse, treatment=treatment, date=day(60), kind="mrd")
    treatment.refresh_from_db()
    assert (treatment.icaht_late_grade, treatment.icaht_late_rule) == (0, "late_no_cytopenia")


def test_a_transplant_ends_the_late_window_too(treatment, nurse):
    save(treatment, nurse, rows_of({35: 50, 40: 50, 45: 3000}))
    services.record_create(Transplant, user=nurse, treatment=treatment, date=day(30), type="ucbt")
    treatment.refresh_from_db()
    assert treatment.icaht_late_rule == "late_no_window"


def test_the_next_index_treatment_ends_the_late_window_of_the_one_before(treatment, nurse):
    save(treatment, nurse, rows_of({40: 3000, 59: 3000, 60: 50, 65: 50}))
    factories.treatment(user=nurse, patient=treatment.patient, day0=day(60))
    treatment.refresh_from_db()
    assert treatment.icaht_late_grade == 0


def test_a_death_ends_the_days_counted_and_its_deletion_opens_them_again(
    treatment, nurse, administrator
):
    # 50/uL from day 0 to day 12: without an end, days 13-30 could still be counted
    save(treatment, nurse, rows_of({n: 50 for n in range(13)}))
    treatment.refresh_from_db()
    assert (treatment.icaht_early_grade, treatment.icaht_early_rule) == (None, "early_days_missing")

    death = services.death_record(
        patient=treatment.patient, user=nurse, date=day(12), cause="infection", reason="ward call"
    )
    treatment.refresh_from_db()
    assert (treatment.icaht_early_grade, treatment.icaht_early_rule) == (3, "early_anc_100_days")
    assert treatment.icaht_early_params == {"days_500": 13, "days_100": 13, "until_day": 12}
    assert treatment.icaht_early_reason == (
        "ANC at or below 100/µL on 13 days of days 0-30. Counted to day 12: a death, a relapse "
        "or the next therapy ends the follow-up there."
    )
    with translation.override("zh-hans"):
        assert treatment.icaht_early_reason == (
            "第 0-30 天中有 13 天 ANC ≤ 100/µL。计数至第 12 天：死亡、复发或后续治疗使观察期在此结束。"
        )
    assert (treatment.icaht_late_rule, treatment.icaht_late_params) == (
        "late_no_window",
        {"censor_day": 12},
    )
    assert treatment.history.latest("history_id").history_change_reason == "ward call"

    services.record_delete(Death.objects.get(pk=death.pk), user=administrator, reason="wrong")
    treatment.refresh_from_db()
    assert (treatment.icaht_early_grade, treatment.icaht_early_rule) == (None, "early_days_missing")


def test_a_death_dated_again_derives_the_grade_again(treatment, nurse):
    save(treatment, nurse, rows_of({n: 50 for n in range(13)}))
    death = services.death_record(
        patient=treatment.patient, user=nurse, date=day(13), cause="infection"
    )
    treatment.refresh_from_db()
    # day 13, the day of the death, has no count: 13 or 14 days at or below 100
    assert (treatment.icaht_early_grade, treatment.icaht_early_params["days"]) == (None, "13")

    services.record_update(death, user=nurse, reason="date from the certificate", date=day(12))
    treatment.refresh_from_db()
    assert (treatment.icaht_early_grade, treatment.icaht_early_params["until_day"]) == (3, 12)
    assert treatment.history.latest("history_id").history_change_reason == (
        "date from the certificate"
    )


def moved_to_another_patient(record, user, site) -> None:
    """The record moved to a new patient of the site (as the admin and the API can)."""
    other = factories.patient(user=user, site=site, study_id="P2")
    services.record_update(
        record, user=user, reason="entered under the wrong patient", patient=other
    )


def test_a_treatment_moved_to_another_patient_gives_back_the_late_window_it_ended(
    treatment, nurse, site
):
    save(treatment, nurse, rows_of({40: 3000, 59: 3000, 60: 50, 65: 50}))
    later = factories.treatment(user=nurse, patient=treatment.patient, day0=day(60))
    treatment.refresh_from_db()
    assert treatment.icaht_late_grade == 0
    moved_to_another_patient(later, nurse, site)
    treatment.refresh_from_db()
    assert treatment.icaht_late_grade == 4


def test_a_death_moved_to_another_patient_gives_back_the_days_it_ended(treatment, nurse, site):
    save(treatment, nurse, rows_of({n: 50 for n in range(13)}))
    death = services.death_record(
        patient=treatment.patient, user=nurse, date=day(12), cause="infection"
    )
    treatment.refresh_from_db()
    assert treatment.icaht_early_grade == 3
    moved_to_another_patient(death, nurse, site)
    treatment.refresh_from_db()
    assert (treatment.icaht_early_grade, treatment.icaht_early_rule) == (None, "early_days_missing")


def test_a_write_that_does_not_change_the_grade_writes_no_treatment_history(treatment, nurse):
    save(treatment, nurse, rows_of(neutropenic_days(7)))
    history = treatment.history.count()
    save(treatment, nurse, [{"date": day(45), "platelets_10e9_l": 150}])
    assert treatment.history.count() == history


def test_the_grade_is_not_typed_over_by_a_treatment_save(treatment, nurse):
    save(treatment, nurse, rows_of(neutropenic_days(7)))
    treatment.icaht_early_grade = 4
    services.record_update(treatment, user=nurse, reason="typo", product="x")
    treatment.refresh_from_db()
    assert treatment.icaht_early_grade == 2


def test_the_treatment_version_is_not_raised_by_a_derived_grade(treatment, nurse):
    version = Treatment.objects.get(pk=treatment.pk).version
    save(treatment, nurse, rows_of(neutropenic_days(7)))
    assert Treatment.objects.get(pk=treatment.pk).version == version


def test_day_0_cannot_move_after_a_laboratory_value(treatment, nurse):
    save(treatment, nurse, rows_of({5: 300}))
    with pytest.raises(ValidationError) as refused:
        services.record_update(treatment, user=nurse, reason="typo", day0=day(6))
    assert "laboratory value" in refused.value.message_dict["day0"][0]


# --- cost --------------------------------------------------------------------------------


def test_each_more_row_costs_its_insert_and_its_audit_row_only(treatment, nurse, site):
    def queries(rows: int) -> int:
        patient = factories.patient(user=nurse, site=site, study_id=f"Q{rows}")
        target = factories.treatment(user=nurse, patient=patient)
        with CaptureQueriesContext(connection) as captured:
            save(target, nurse, [{"date": day(1 + n), "anc_per_ul": 300} for n in range(rows)])
        return len(captured)

    assert queries(20) - queries(10) == 2 * 10


def test_the_treatments_audit_row_carries_the_reason_of_the_write_that_changed_its_grade(
    treatment, nurse
):
    save(treatment, nurse, rows_of({40: 3000, 59: 3000, 60: 50, 65: 50}))
    services.record_create(
        Relapse, user=nurse, reason="ward letter", treatment=treatment, date=day(60), kind="mrd"
    )
    assert treatment.history.latest("history_id").history_change_reason == "ward letter"


def test_a_day_0_typed_as_text_is_read_as_its_date_before_the_grade_is_derived(treatment, nurse):
    save(treatment, nurse, rows_of(neutropenic_days(7)))
    services.record_update(treatment, user=nurse, reason="typo", day0=DAY0.isoformat())
    treatment.refresh_from_db()
    assert treatment.icaht_early_grade == 2


# --- derive_icaht: every treatment's grades derived again ---------------------------------------


def test_derive_icaht_sets_what_the_series_gives_audits_the_change_and_leaves_the_rest(
    treatment, nurse, site
):
    save(treatment, nurse, rows_of(neutropenic_days(14)))
    untouched = factories.treatment(
        user=nurse, patient=factories.patient(user=nurse, site=site, study_id="P2")
    )
    expected = {name: getattr(treatment, name) for name in services.ICAHT_FIELDS}
    Treatment.objects.filter(pk=treatment.pk).update(icaht_early_grade=1, icaht_early_rule="x")
    data_version = type(site).objects.get(pk=site.pk).data_version
    history = Treatment.history.count()
    out = io.StringIO()
    call_command("derive_icaht", "--reason", "grading rules 2.1", stdout=out)
    assert "for 2 treatments; 1 changed" in out.getvalue()
    treatment.refresh_from_db()
    assert {name: getattr(treatment, name) for name in services.ICAHT_FIELDS} == expected
    assert Treatment.history.count() == history + 1
    assert treatment.history.first().history_change_reason == "grading rules 2.1"
    assert type(site).objects.get(pk=site.pk).data_version > data_version
    untouched_before = untouched.history.count()
    call_command("derive_icaht", stdout=io.StringIO())  # nothing left to change
    assert (
        Treatment.history.count() == history + 1 and untouched.history.count() == untouched_before
    )


def test_derive_icaht_ends_the_days_counted_at_the_death(treatment, nurse):
    save(treatment, nurse, rows_of({n: 50 for n in range(13)}))
    services.death_record(patient=treatment.patient, user=nurse, date=day(12), cause="infection")
    expected = {
        name: getattr(Treatment.objects.get(pk=treatment.pk), name)
        for name in services.ICAHT_FIELDS
    }
    Treatment.objects.filter(pk=treatment.pk).update(icaht_early_grade=None, icaht_early_rule="")
    services.icaht_derive_all(user=None, reason="test", chunk=1)
    after = Treatment.objects.get(pk=treatment.pk)
    assert {name: getattr(after, name) for name in services.ICAHT_FIELDS} == expected
    assert after.icaht_early_grade == 3


def test_derive_icaht_ends_the_late_window_at_a_relapse_or_the_next_treatment(treatment, nurse):
    save(treatment, nurse, rows_of({**neutropenic_days(3, last=30), 45: 400, 60: 450, 90: 420}))
    services.record_create(
        Relapse, user=nurse, treatment=treatment, date=day(50), kind="morphologic"
    )
    before = Treatment.objects.get(pk=treatment.pk)
    Treatment.objects.filter(pk=treatment.pk).update(icaht_late_grade=None, icaht_late_rule="")
    services.icaht_derive_all(user=None, reason="test", chunk=1)
    after = Treatment.objects.get(pk=treatment.pk)
    assert (after.icaht_late_grade, after.icaht_late_rule) == (
        before.icaht_late_grade,
        before.icaht_late_rule,
    )
    assert after.icaht_late_params == before.icaht_late_params
