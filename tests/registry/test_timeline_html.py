"""registry.timeline_html: each kind of record's line on the patient's page, in both languages,
every value escaped, the edit link only for someone who may edit. (That the page reads the right
records is tests/registry/test_patient_timeline.py; the nurse's page in a browser is
tests/browser.)"""

from __future__ import annotations

from datetime import date

import pytest
from django.urls import reverse
from django.utils import translation

from registry.models import (
    CarPersistence,
    CrsEpisode,
    Death,
    FollowUpContact,
    IcansEpisode,
    IecHsEpisode,
    Infection,
    IvigCourse,
    Relapse,
    ResponseAssessment,
    SecondCancer,
    Transplant,
    Treatment,
)
from registry.selectors import TIMELINE_RECORDS, TimelineEntry
from registry.timeline_html import SUMMARIES, timeline_html

DAY0 = date(2024, 3, 1)


def _first_choice(model, name: str):
    return model._meta.get_field(name).choices[0][0]


def _line(record, kind: str, *, day: int = 5, can_edit: bool = False) -> str:
    entry = TimelineEntry(date(2024, 3, 1 + day), day, kind, record)
    return str(timeline_html([entry], can_edit=can_edit))


def _records() -> dict:
    """One unsaved record of each kind, with a primary key, as the page reads them."""
    choice = _first_choice
    return {
        "treatment": Treatment(
            pk=1, arm="car_t", day0=DAY0, product="tisagenlecleucel",
            disease_burden=choice(Treatment, "disease_burden"),
            relapse_status=choice(Treatment, "relapse_status"),
            crs_status="yes", icans_status="no",
        ),
        "crs": CrsEpisode(pk=2, onset=DAY0, derived_grade=2),
        "icans": IcansEpisode(pk=3, onset=DAY0, recorded_grade=1),
        "response": ResponseAssessment(
            pk=4, date=DAY0, response=choice(ResponseAssessment, "response"),
            mrd_status=choice(ResponseAssessment, "mrd_status"),
        ),
        "transplant": Transplant(pk=5, date=DAY0, type=choice(Transplant, "type")),
        "relapse": Relapse(
            pk=6, date=DAY0, kind=choice(Relapse, "kind"),
            cd19_status=choice(Relapse, "cd19_status"),
        ),
        "contact": FollowUpContact(
            pk=7, date=DAY0, disease_status=choice(FollowUpContact, "disease_status"),
            b_cell_aplasia="yes",
        ),
        "infection": Infection(
            pk=8, onset=DAY0, site=choice(Infection, "site"),
            organism_class=choice(Infection, "organism_class"), ctcae_grade=3,
        ),
        "iec_hs": IecHsEpisode(pk=9, onset=DAY0, recorded_grade=2),
        "ivig": IvigCourse(pk=10, start=DAY0, stop=date(2024, 5, 2)),
        "persistence": CarPersistence(
            pk=11, date=DAY0, detected=True, method=choice(CarPersistence, "method")
        ),
        "second_cancer": SecondCancer(
            pk=12, date=DAY0, cancer_type="T-cell lymphoma", t_cell_malignancy=True,
            car_transgene_tested="yes", car_transgene_detected="no",
        ),
        "death": Death(pk=13, date=DAY0, cause=choice(Death, "cause")),
    }  # fmt: skip


def test_every_kind_on_the_timeline_has_its_line():
    kinds = {kind for kind, _model, _dated_by in TIMELINE_RECORDS} | {"treatment", "death"}
    assert set(SUMMARIES) == kinds == set(_records())


EXPECTED = {
    "en": {
        "treatment": ["<strong>Treatment</strong> tisagenlecleucel", "CRS: Yes", "ICANS: No"],
        "crs": ['<span class="badge grade-2">grade 2</span>', "(ASTCT 2019, derived)"],
        "icans": ['<span class="badge grade-1">grade 1</span>'],
        "response": ["<strong>Response</strong>"],
        "transplant": ["<strong>Transplant</strong>"],
        "relapse": ["<strong>Relapse</strong>"],
        "contact": ["<strong>Follow-up contact</strong>", "B-cell aplasia: "],
        "infection": ['<span class="badge grade-3">CTCAE grade 3</span>'],
        "iec_hs": ['<span class="badge grade-2">grade 2</span> (as recorded)'],
        "ivig": ["<strong>Immunoglobulin replacement</strong> until 2024-05-02"],
        "persistence": ["<strong>CAR persistence</strong> detected ("],
        "second_cancer": [
            "T-cell lymphoma · T-cell malignancy · CAR transgene tested: ",
            " · detected: ",
        ],
        "death": ["<strong>Death</strong> "],
    },
    "zh-hans": {
        "treatment": ["<strong>治疗</strong> tisagenlecleucel"],
        "crs": ["2 级", "ASTCT 2019"],
        "infection": ["CTCAE 3 级"],
        "ivig": ["2024-05-02"],
    },
}


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_each_line_says_what_its_record_holds_in_the_readers_language(language):
    with translation.override(language):
        for kind, record in _records().items():
            line = _line(record, kind)
            assert line.startswith(f'<li data-kind="{kind}">'), line
            assert '<time datetime="2024-03-06">2024-03-06</time>' in line
            for text in EXPECTED[language].get(kind, []):
                assert text in line, (kind, line)
            if language == "zh-hans":
                assert "day 5" not in line and "第" in line, line


def test_the_choices_are_shown_by_their_labels_in_the_readers_language():
    record = _records()["transplant"]
    for language in ("en", "zh-hans"):
        with translation.override(language):
            assert f"</strong> {record.get_type_display()}</li>" in _line(record, "transplant")


@pytest.mark.parametrize(("grade", "shown"), [(0, "grade 0"), (4, "grade 4"), (None, "grade ?")])
def test_a_grade_0_is_shown_as_0_and_only_an_unknown_grade_as_a_question_mark(grade, shown):
    line = _line(CrsEpisode(pk=2, onset=DAY0, derived_grade=grade, recorded_grade=None), "crs")
    assert f'<span class="badge grade-{"" if grade is None else grade}">{shown}</span>' in line


def test_a_value_not_recorded_is_left_out_not_written_none():
    treatment = _records()["treatment"]
    treatment.disease_burden = treatment.relapse_status = None
    assert "None" not in _line(treatment, "treatment")


def test_every_value_is_escaped():
    cancer = _records()["second_cancer"]
    cancer.cancer_type = '<script>alert("x")</script> & co'
    line = _line(cancer, "second_cancer")
    assert "<script>" not in line
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in line


def test_the_transgene_result_only_once_tested_and_nothing_without_a_t_cell_malignancy():
    cancer = _records()["second_cancer"]
    cancer.car_transgene_tested = "no"
    assert "detected" not in _line(cancer, "second_cancer")
    cancer.t_cell_malignancy = False
    assert "transgene" not in _line(cancer, "second_cancer")


def test_an_ongoing_course_and_a_persistence_not_detected():
    records = _records()
    records["ivig"].stop = None
    records["persistence"].detected = False
    assert "</strong> ongoing</li>" in _line(records["ivig"], "ivig")
    assert "</strong> not detected (" in _line(records["persistence"], "persistence")


def test_the_contact_names_b_cell_aplasia_only_when_it_was_assessed():
    contact = _records()["contact"]
    contact.b_cell_aplasia = "unknown"
    assert "B-cell aplasia" not in _line(contact, "contact")


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_the_edit_link_is_the_records_edit_page_and_only_for_an_editor(language):
    with translation.override(language):
        for kind, record in _records().items():
            url = reverse("record-edit", args=[kind, record.pk])
            edit = translation.gettext("Edit")
            assert f'<a href="{url}" aria-label="{edit}">' in _line(record, kind, can_edit=True)
            assert "<a " not in _line(record, kind, can_edit=False)


def test_a_translated_word_is_escaped_too(monkeypatch):
    """The words are translated once per language and escaped like the values: a translation
    holding markup shows as text (a placeholder filled in before escaping)."""
    from registry import timeline_html as module

    monkeypatch.setattr(module, "gettext", lambda message: f"<b>{message}</b> & co")
    module._translated.cache_clear()
    module._words.cache_clear()
    try:
        with translation.override("en"):
            records = _records()
            lines = [_line(records[kind], kind, can_edit=True) for kind in ("crs", "ivig")]
    finally:
        monkeypatch.undo()
        module._translated.cache_clear()
        module._words.cache_clear()
    for line in lines:
        assert "<b>" not in line and "&lt;b&gt;" in line and "&amp; co" in line
    assert "&lt;b&gt;day 5&lt;/b&gt;" in lines[0] and "&lt;b&gt;grade 2&lt;/b&gt;" in lines[0]
    assert "&lt;b&gt;until 2024-05-02&lt;/b&gt;" in lines[1]
    with translation.override("en"):  # the real words again
        assert '<span class="day">day 5</span>' in _line(records["crs"], "crs")
