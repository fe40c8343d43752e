"""registry.worklist_rows: the worklist's rows carry exactly what the template tags gave."""

from __future__ import annotations

from datetime import date

import pytest
from django.urls import reverse
from django.utils import translation

from registry.models.quality import visit_label
from registry.selectors import WorklistLine
from registry.worklist_rows import due_rows_html, overdue_rows_html, worklist_rows


def _line(visit: str) -> WorklistLine:
    return WorklistLine(
        3, "AHP-C000003", "AHP", 8, "car_t", date(2024, 1, 2), visit,
        date(2024, 4, 1), date(2024, 5, 1), "due", None,
    )  # fmt: skip


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_rows_name_the_visit_in_the_readers_language(language):
    with translation.override(language):
        (row,) = worklist_rows([_line("month6")], may_edit=True)
        assert row.visit == visit_label("month6") and "month6" not in row.record_label
        assert row.visit in row.record_label
    assert row.patient_url == reverse("patient-detail", args=[3])
    assert row.record_url == reverse("record-new", args=[8, "contact"]) + "#id_date"
    assert (row.opens, row.closes, row.last_seen) == ("2024-04-01", "2024-05-01", "")


def test_a_reader_who_may_not_record_a_contact_gets_no_link():
    (row,) = worklist_rows([_line("")], may_edit=False)
    assert row.record_url == "" and row.visit == ""


def test_the_rows_put_together_escape_every_value():
    hostile = WorklistLine(
        3, 'AHP-<script>"x"', "A&B", 8, "car_t", date(2024, 1, 2), "day100",
        date(2024, 4, 1), date(2024, 5, 1), "due", None,
    )  # fmt: skip
    rows = worklist_rows([hostile], may_edit=True)
    for html in (due_rows_html(rows), overdue_rows_html(rows)):
        assert "<script>" not in html and "AHP-&lt;script&gt;&quot;x&quot;" in html
        assert "A&amp;B" in html and html.count("<tr>") == 1
    assert 'role="button"' in due_rows_html(rows) and 'role="button"' not in overdue_rows_html(rows)
    assert (
        "<a" not in overdue_rows_html(worklist_rows([hostile], may_edit=False)).split("</td>")[-2]
    )
