"""The nurse's lab grid of a treatment (/treatments/<pk>/labs/): who sees and who edits it,
pasting a series from a spreadsheet, saving it as one write through services.lab_series_save,
every refusal shown at its row and column with nothing saved, and the ANC curve and ICAHT
grades beside it."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import translation

from registry import services
from registry.domain.vocabulary import Role
from registry.lab_grid import anc_curve, merged_into_grid, parse_pasted, pasted_date
from registry.models import LabValue, Treatment
from registry.models.labs import LAB_FIELDS
from tests import factories
from tests.factories import DAY0

pytestmark = pytest.mark.django_db
COLUMNS = ("date", *LAB_FIELDS)


def day(n: int) -> date:
    return DAY0 + timedelta(days=n)


def url(treatment) -> str:
    return reverse("treatment-labs", args=[treatment.pk])


def grid_data(rows: list[dict], **extra) -> dict:
    """A POST of the grid as the page sends it: the management form, then each row's cells."""
    data = {
        "lab-TOTAL_FORMS": str(len(rows)),
        "lab-INITIAL_FORMS": "0",
        "lab-MIN_NUM_FORMS": "0",
        "lab-MAX_NUM_FORMS": "400",
        "reason": "",
        "pasted": "",
    }
    for index, row in enumerate(rows):
        for name in ("id", "version", *COLUMNS):
            value = row.get(name, "")
            data[f"lab-{index}-{name}"] = "" if value is None else str(value)
        if row.get("delete"):  # a ticked box; an unticked one is not sent
            data[f"lab-{index}-delete"] = "on"
    return data | extra


def posted_grid(response) -> list[dict]:
    """The rows of the grid a page shows, as it would post them back."""
    return [form.values() for form in response.context["grid"].forms]


def state() -> tuple:
    return (
        list(LabValue.objects.order_by("pk").values()),
        LabValue.history.count(),
        list(Treatment.objects.order_by("pk").values()),
        Treatment.history.count(),
    )


def series(days: int, *, neutropenic: int = 7) -> str:
    """A spreadsheet's copy: a header row, then one line a day from day 0, tab-separated."""
    lines = ["Date\tANC\tPLT\tHb\tCRP\tFerritin\tIgG\tCD19"]
    for n in range(days):
        anc = 300 if 1 <= n <= neutropenic else 3000
        lines.append(f"{day(n).isoformat()}\t{anc}\t{40 + n}\t8.{n % 10}\t12.5\t900\t5.1\t0")
    return "\n".join(lines)


@pytest.fixture
def pi(users):
    return users[Role.PI]


@pytest.fixture
def elsewhere(other_site, administrator):
    patient = factories.patient(user=administrator, site=other_site, study_id="X001")
    treatment = factories.treatment(user=administrator, patient=patient)
    services.lab_series_save(
        treatment=treatment, rows=[{"date": day(1), "anc_per_ul": 999}], user=administrator
    )
    return treatment


# --- who sees it, who edits it -----------------------------------------------------------


def test_the_patient_page_links_each_treatment_to_its_lab_grid(client, nurse, treatment):
    client.force_login(nurse)
    page = client.get(reverse("patient-detail", args=[treatment.patient.pk])).content.decode()
    assert url(treatment) in page


def test_a_nurse_sees_the_saved_rows_and_empty_rows_to_add(client, nurse, treatment):
    services.lab_series_save(
        treatment=treatment, rows=[{"date": day(2), "anc_per_ul": 450}], user=nurse
    )
    client.force_login(nurse)
    response = client.get(url(treatment))
    assert response.status_code == 200
    rows = posted_grid(response)
    assert rows[0]["date"] == day(2).isoformat() and rows[0]["anc_per_ul"] == "450"
    assert rows[0]["id"] == str(LabValue.objects.get().pk)
    assert len(rows) == 1 + 5 and not any(row["date"] for row in rows[1:])
    page = response.content.decode()
    assert 'name="lab-0-anc_per_ul"' in page and 'name="reason"' in page
    assert 'aria-labelledby="lab-col-anc_per_ul lab-0-row"' in page


def test_a_reader_who_may_not_edit_sees_the_values_without_inputs_and_may_not_post(
    client, nurse, pi, treatment
):
    services.lab_series_save(
        treatment=treatment, rows=[{"date": day(2), "anc_per_ul": 450}], user=nurse
    )
    client.force_login(pi)
    page = client.get(url(treatment)).content.decode()
    assert "450" in page and 'name="lab-0-anc_per_ul"' not in page
    before = state()
    response = client.post(url(treatment), grid_data([{"date": day(3), "anc_per_ul": 100}]))
    assert response.status_code == 403
    assert state() == before


def test_another_sites_treatment_is_not_found_to_a_nurse(client, nurse, elsewhere):
    client.force_login(nurse)
    assert client.get(url(elsewhere)).status_code == 404
    before = state()
    response = client.post(url(elsewhere), grid_data([{"date": day(3), "anc_per_ul": 100}]))
    assert response.status_code == 404
    assert state() == before


def test_anonymous_visitors_are_sent_to_sign_in(client, treatment):
    response = client.get(url(treatment))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# --- pasting and saving ------------------------------------------------------------------


def test_thirty_pasted_days_fill_the_grid_and_are_saved_in_one_write(client, nurse, treatment):
    client.force_login(nurse)
    pasted = client.post(url(treatment), grid_data([{}] * 5, pasted=series(30), paste="1"))

    assert pasted.status_code == 200
    assert not LabValue.objects.exists()  # filled, not saved yet
    rows = [row for row in posted_grid(pasted) if row["date"]]
    assert len(rows) == 30
    assert rows[3] | {"id": "", "version": ""} == {
        "id": "",
        "version": "",
        "date": day(3).isoformat(),
        "anc_per_ul": "300",
        "platelets_10e9_l": "43",
        "haemoglobin_g_dl": "8.3",
        "crp_mg_l": "12.5",
        "ferritin_ng_ml": "900",
        "igg_g_l": "5.1",
        "cd19_b_cells_per_ul": "0",
    }
    assert "30 pasted rows are in the grid" in pasted.content.decode()

    history = LabValue.history.count()
    saved = client.post(url(treatment), grid_data(posted_grid(pasted), save="1"))
    assert saved.status_code == 302 and saved["Location"] == url(treatment)
    assert LabValue.objects.filter(treatment=treatment).count() == 30
    assert LabValue.history.count() - history == 30
    treatment.refresh_from_db()
    assert treatment.icaht_early_grade == 2

    page = client.get(url(treatment)).content.decode()
    assert "Saved 30 rows." in page
    assert "grade 2" in page and "ANC at or below 500/µL on 7 days of days 0-30." in page
    assert 'data-testid="anc-curve"' in page and "500/µL" in page and "100/µL" in page


def test_day_numbers_without_a_header_are_counted_from_day_0(client, nurse, treatment):
    client.force_login(nurse)
    text = "0,3000,50\n1,400\nD2,80\n"
    pasted = client.post(url(treatment), grid_data([], pasted=text, paste="1"))
    rows = [row for row in posted_grid(pasted) if row["date"]]
    assert [(row["date"], row["anc_per_ul"]) for row in rows] == [
        (day(0).isoformat(), "3000"),
        (day(1).isoformat(), "400"),
        (day(2).isoformat(), "80"),
    ]
    assert rows[0]["platelets_10e9_l"] == "50"


def test_a_pasted_day_already_in_the_grid_fills_that_row(client, nurse, treatment):
    services.lab_series_save(
        treatment=treatment, rows=[{"date": day(2), "anc_per_ul": 450}], user=nurse
    )
    client.force_login(nurse)
    shown = client.get(url(treatment))
    pasted = client.post(
        url(treatment),
        grid_data(posted_grid(shown), pasted="day\tplt\n2\t33\n3\t30", paste="1"),
    )
    rows = [row for row in posted_grid(pasted) if row["date"]]
    assert [(r["date"], r["anc_per_ul"], r["platelets_10e9_l"]) for r in rows] == [
        (day(2).isoformat(), "450", "33"),
        (day(3).isoformat(), "", "30"),
    ]
    assert rows[0]["id"] == str(LabValue.objects.get().pk)


def test_the_save_costs_one_insert_and_one_audit_row_a_row_more(client, nurse, site):
    client.force_login(nurse)

    def queries(rows: int) -> int:
        patient = factories.patient(user=nurse, site=site, study_id=f"Q{rows}")
        target = factories.treatment(user=nurse, patient=patient)
        grid = [{"date": day(n), "anc_per_ul": 300} for n in range(rows)]
        client.get(url(target))  # the session is warm
        with CaptureQueriesContext(connection) as captured:
            assert client.post(url(target), grid_data(grid, save="1")).status_code == 302
        return len(captured)

    assert queries(30) - queries(10) == 2 * 20


def test_the_page_costs_the_same_queries_for_3_or_40_saved_rows(client, nurse, treatment, site):
    client.force_login(nurse)
    other = factories.treatment(
        user=nurse, patient=factories.patient(user=nurse, site=site, study_id="P2")
    )
    services.lab_series_save(
        treatment=treatment, rows=[{"date": day(n), "anc_per_ul": 300} for n in range(3)],
        user=nurse,
    )  # fmt: skip
    services.lab_series_save(
        treatment=other, rows=[{"date": day(n), "anc_per_ul": 300} for n in range(40)], user=nurse
    )
    client.get(url(treatment))
    with CaptureQueriesContext(connection) as few:
        client.get(url(treatment))
    with CaptureQueriesContext(connection) as many:
        client.get(url(other))
    assert len(many) == len(few)


# --- refusals ----------------------------------------------------------------------------


def test_every_error_is_shown_at_its_row_and_column_naming_the_field_and_nothing_is_saved(
    client, nurse, treatment
):
    services.lab_series_save(
        treatment=treatment, rows=[{"date": day(2), "anc_per_ul": 450}], user=nurse
    )
    client.force_login(nurse)
    before = state()
    rows = [
        {"date": day(3), "anc_per_ul": 300},
        {"date": day(4), "anc_per_ul": "abc"},
        {"date": day(5), "platelets_10e9_l": "-5", "haemoglobin_g_dl": "8.1"},
        {"date": "", "crp_mg_l": "3"},
    ]
    response = client.post(url(treatment), grid_data(rows, save="1"))

    assert response.status_code == 200
    assert state() == before
    grid = response.context["grid"]
    assert grid.forms[0].errors == {}
    assert list(grid.forms[1].errors) == ["anc_per_ul"]
    assert "platelets_10e9_l" in grid.forms[2].errors
    assert "date" in grid.forms[3].errors
    page = response.content.decode()
    assert "Nothing was saved." in page
    assert "day 4 · ANC (cells/µL):" in page
    assert "day 5 · Platelets (×10⁹/L):" in page
    assert "new row 4 · Date:" in page
    assert 'id="id_lab-1-anc_per_ul_error"' in page
    assert 'aria-invalid="true"' in page
    assert 'href="#id_lab-1-anc_per_ul"' in page


def test_a_forged_row_of_another_treatment_is_refused_and_nothing_changes(
    client, nurse, treatment, elsewhere
):
    theirs = LabValue.objects.get(treatment=elsewhere)
    client.force_login(nurse)
    before = state()
    rows = [
        {"date": day(3), "anc_per_ul": 300},
        {"id": theirs.pk, "version": theirs.version, "date": day(1), "anc_per_ul": 1},
    ]
    response = client.post(url(treatment), grid_data(rows, reason="x", save="1"))
    assert response.status_code == 200
    assert state() == before
    assert "not a laboratory value of this treatment" in response.content.decode()
    assert response.context["grid"].forms[1].non_field_errors()


def test_a_tampered_row_count_is_refused_and_nothing_changes(client, nurse, treatment):
    client.force_login(nurse)
    before = state()
    data = grid_data([{"date": day(3), "anc_per_ul": 300}], save="1")
    data["lab-TOTAL_FORMS"] = "100000"
    response = client.post(url(treatment), data)
    assert response.status_code == 200
    assert state() == before
    assert "Nothing was saved." in response.content.decode()

    del data["lab-TOTAL_FORMS"]
    response = client.post(url(treatment), data)
    assert response.status_code == 200 and state() == before
    assert "The grid was sent incomplete" in response.content.decode()


def test_changing_a_saved_row_needs_a_reason_that_goes_into_the_audit_trail(
    client, nurse, treatment
):
    services.lab_series_save(
        treatment=treatment, rows=[{"date": day(2), "anc_per_ul": 450}], user=nurse
    )
    client.force_login(nurse)
    rows = posted_grid(client.get(url(treatment)))
    rows[0]["anc_per_ul"] = "45"
    before = state()
    refused = client.post(url(treatment), grid_data(rows, save="1"))
    assert refused.status_code == 200 and state() == before
    assert refused.context["form"].errors["reason"]

    saved = client.post(url(treatment), grid_data(rows, reason="lab corrected", save="1"))
    assert saved.status_code == 302
    lab = LabValue.objects.get()
    assert lab.anc_per_ul == 45
    assert lab.history.latest("history_id").history_change_reason == "lab corrected"


def test_a_stale_row_is_refused(client, nurse, treatment):
    services.lab_series_save(
        treatment=treatment, rows=[{"date": day(2), "anc_per_ul": 450}], user=nurse
    )
    client.force_login(nurse)
    rows = posted_grid(client.get(url(treatment)))
    lab = LabValue.objects.get()
    services.lab_series_save(
        treatment=treatment,
        rows=[{"id": lab.pk, "version": lab.version, "date": day(2), "anc_per_ul": 400}],
        user=nurse,
        reason="other nurse",
    )
    rows[0]["anc_per_ul"] = "45"
    response = client.post(url(treatment), grid_data(rows, reason="mine", save="1"))
    assert response.status_code == 200
    assert LabValue.objects.get().anc_per_ul == 400
    assert "changed by someone else" in response.content.decode()


def test_an_administrator_deletes_a_row_with_a_reason_and_the_grade_is_derived_again(
    client, nurse, administrator, treatment
):
    services.lab_series_save(
        treatment=treatment,
        rows=[{"date": day(n), "anc_per_ul": 300 if 1 <= n <= 7 else 3000} for n in range(31)],
        user=nurse,
    )
    treatment.refresh_from_db()
    assert treatment.icaht_early_grade == 2
    client.force_login(administrator)
    page = client.get(url(treatment))
    assert 'id="lab-col-delete"' in page.content.decode()
    rows = posted_grid(page)
    day_7 = next(row for row in rows if row["date"] == day(7).isoformat())
    day_7["delete"] = True
    day_7["anc_per_ul"] = "not a number"  # a row deleted is not checked

    before = state()
    refused = client.post(url(treatment), grid_data(rows, save="1"))
    assert refused.status_code == 200 and state() == before
    assert refused.context["form"].errors["reason"]

    deleted = client.post(url(treatment), grid_data(rows, reason="wrong patient", save="1"))
    assert deleted.status_code == 302
    assert not LabValue.objects.filter(date=day(7)).exists()
    assert LabValue.objects.count() == 30
    gone = LabValue.history.filter(history_type="-").get()
    assert (gone.history_user, gone.history_change_reason) == (administrator, "wrong patient")
    treatment.refresh_from_db()
    assert treatment.icaht_early_grade is None  # day 7 missing inside the neutropenia
    assert "Deleted 1 row." in client.get(url(treatment)).content.decode()


def test_a_nurse_has_no_delete_box_and_a_forged_deletion_is_refused_on_its_row(
    client, nurse, treatment
):
    services.lab_series_save(
        treatment=treatment, rows=[{"date": day(2), "anc_per_ul": 450}], user=nurse
    )
    client.force_login(nurse)
    page = client.get(url(treatment))
    assert "lab-col-delete" not in page.content.decode()
    assert "lab-0-delete" not in page.content.decode()
    rows = posted_grid(page)
    rows[0]["delete"] = True
    before = state()
    response = client.post(url(treatment), grid_data(rows, reason="typo", save="1"))
    # the box is not a field of a nurse's grid: the row is an unchanged saved row
    assert response.status_code == 302 and state() == before

    # sent to the services as a deletion, it is refused on its row, in the nurse's language
    with pytest.raises(services.LabSeriesRefused) as refused:
        services.lab_series_save(
            treatment=treatment,
            rows=[{"id": rows[0]["id"], "delete": True}],
            user=nurse,
            reason="typo",
        )
    assert "Only administrators" in refused.value.rows[0]["delete"][0]
    with translation.override("zh-hans"):
        with pytest.raises(services.LabSeriesRefused) as refused:
            services.lab_series_save(
                treatment=treatment,
                rows=[{"id": rows[0]["id"], "delete": True}],
                user=nurse,
                reason="typo",
            )
        assert "管理员" in refused.value.rows[0]["delete"][0]


def test_the_delete_column_speaks_chinese(client, administrator, treatment):
    services.lab_series_save(
        treatment=treatment, rows=[{"date": day(2), "anc_per_ul": 450}], user=administrator
    )
    administrator.language = "zh-hans"
    administrator.save()
    client.force_login(administrator)
    page = client.get(url(treatment), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert '<th scope="col" id="lab-col-delete">删除</th>' in page


def test_more_rows_keeps_what_was_typed(client, nurse, treatment):
    client.force_login(nurse)
    response = client.post(
        url(treatment), grid_data([{"date": day(1), "anc_per_ul": "12"}], more="1")
    )
    rows = posted_grid(response)
    assert rows[0]["anc_per_ul"] == "12" and len(rows) == 1 + 10
    assert not LabValue.objects.exists()


def test_the_page_speaks_chinese(client, nurse, treatment):
    nurse.language = "zh-hans"
    nurse.save()
    client.force_login(nurse)
    with translation.override("zh-hans"):
        heading = translation.gettext("Laboratory values and ICAHT")
        gradable = translation.gettext("not gradable")
    assert heading != "Laboratory values and ICAHT" and gradable != "not gradable"
    page = client.get(url(treatment), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert heading in page and gradable in page


# --- the pure parts ----------------------------------------------------------------------


def test_a_date_cell_is_a_date_or_a_day_number():
    assert pasted_date("2022-03-05", DAY0) == date(2022, 3, 5)
    assert pasted_date("2022/3/5", DAY0) == date(2022, 3, 5)
    assert pasted_date("7", DAY0) == day(7)
    assert pasted_date("D7", DAY0) == day(7)
    assert pasted_date("day 7", DAY0) == day(7)
    assert pasted_date("-3", DAY0) == day(-3)
    assert pasted_date("2022-02-30", DAY0) is None
    assert pasted_date("yesterday", DAY0) is None


def test_a_header_names_the_columns_in_any_order_and_unknown_ones_are_reported():
    pasted = parse_pasted("Hb;ANC (cells/µL);day;Notes\n8.1;300;3;ok\n", day0=DAY0)
    assert pasted.rows == [
        {"haemoglobin_g_dl": "8.1", "anc_per_ul": "300", "date": day(3).isoformat()}
    ]
    assert len(pasted.problems) == 1 and "Notes" in pasted.problems[0]


def test_a_line_without_a_date_is_left_out_and_named():
    pasted = parse_pasted("1\t300\nsoon\t200\n", day0=DAY0)
    assert [row["date"] for row in pasted.rows] == [day(1).isoformat()]
    assert "Line 2" in pasted.problems[0]


def test_an_empty_pasted_cell_leaves_the_grids_value():
    grid = [{"id": "4", "date": "2022-03-03", "anc_per_ul": "100", "igg_g_l": "5"}, {}]
    merged = merged_into_grid(grid, [{"date": "2022-03-03", "anc_per_ul": "", "igg_g_l": "6"}])
    assert merged == [{"id": "4", "date": "2022-03-03", "anc_per_ul": "100", "igg_g_l": "6"}]


def test_the_curve_shows_days_0_to_30_and_to_day_100_when_later_counts_exist():
    early = anc_curve([(0, 3000), (5, 50), (10, 0)])
    assert early["last_day"] == 30 and early["count"] == 3 and early["lowest"] == (10, 0.0)
    assert "500/µL" in early["svg"] and "100/µL" in early["svg"]
    assert anc_curve([(0, 3000), (60, 900)])["last_day"] == 100
    assert anc_curve([])["count"] == 0
