"""The patient page's timeline as the page shows it: each record's line put together once, here.

A patient's page lists every record of each treatment, about fourteen at 100,000 patients and
more for a patient followed for years. Worked out in the template (a `{% with %}`, a branch per
kind, a `{% blocktranslate %}`, a `{% url %}` and two or three labels a line) a line took about
135 µs, the largest part of the page's time (docs/PERFORMANCE.md). Here each kind's line is a
small function of the record and of the timeline's words in the reader's language, every value
escaped as Django's `escape` escapes it.

The language is looked up once per timeline, not at each text: each `gettext` and each choice
label found the active language again through a thread-local (asgiref), and with format_html's
checks for lazy text that was two thirds of the timeline's time (docs/PERFORMANCE.md, session
12). The words are translated once per language with the project's own messages.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from html import escape

from django.db.models import Model
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import get_language, gettext, gettext_noop

from registry.links import MARK, link
from registry.models.base import choice_label
from registry.selectors import TimelineEntry

# Every text of the timeline (marked for makemessages, translated by _words).
MESSAGES = (
    gettext_noop("day %(day)s"),
    gettext_noop("Edit"),
    gettext_noop("edit"),
    gettext_noop("Treatment"),
    gettext_noop("CRS"),
    gettext_noop("ICANS"),
    gettext_noop("Follow-up contact"),
    gettext_noop("B-cell aplasia"),
    gettext_noop("ASTCT 2019, derived"),
    gettext_noop("grade %(grade)s"),
    gettext_noop("CTCAE grade %(grade)s"),
    gettext_noop("Response"),
    gettext_noop("Transplant"),
    gettext_noop("Relapse"),
    gettext_noop("Infection"),
    gettext_noop("IEC-HS"),
    gettext_noop("as recorded"),
    gettext_noop("Immunoglobulin replacement"),
    gettext_noop("until %(stop)s"),
    gettext_noop("ongoing"),
    gettext_noop("CAR persistence"),
    gettext_noop("detected"),
    gettext_noop("not detected"),
    gettext_noop("Second cancer"),
    gettext_noop("T-cell malignancy"),
    gettext_noop("CAR transgene tested"),
    gettext_noop("Death"),
)


@functools.cache
def _translated(language: str | None) -> dict[str, str]:
    """MESSAGES translated into this language (the active one when asked)."""
    return {message: gettext(message) for message in MESSAGES}


@functools.cache
def _words(language: str | None) -> dict[str, str]:
    """MESSAGES translated into this language, escaped."""
    return {message: escape(text) for message, text in _translated(language).items()}


class _Reader:
    """What a line needs in the reader's language: its words (`words` escaped, `texts` not:
    for a message with a placeholder, filled in before it is escaped) and the choices' labels."""

    def __init__(self, language: str | None) -> None:
        self.language = language
        self.texts = _translated(language)
        self.words = _words(language)

    def label(self, record: Model, name: str) -> str:
        """The choice's label of the record's field `name`, escaped; nothing if not recorded."""
        field = record._meta.get_field(name)
        return _e(choice_label(record, field, self.language))

    def graded(self, grade: int | None, message: str) -> str:
        """A grade's badge; "?" for a grade not known (never for grade 0)."""
        shown = _e(self.texts[message] % {"grade": "?" if grade is None else grade})
        return f'<span class="badge grade-{_e(grade)}">{shown}</span>'


def _e(value) -> str:
    """A value as the line shows it, escaped as Django's `escape` does (a SafeString kept):
    nothing for a value not recorded."""
    if value is None:
        return ""
    if hasattr(value, "__html__"):
        return value.__html__()
    return escape(str(value))


def _treatment(r: Model, t: _Reader) -> str:
    w = t.words
    return (
        f"<strong>{w['Treatment']}</strong> {_e(r.product)} · {t.label(r, 'disease_burden')} · "
        f"{t.label(r, 'relapse_status')} · {w['CRS']}: {t.label(r, 'crs_status')} · "
        f"{w['ICANS']}: {t.label(r, 'icans_status')}"
    )


def _contact(r: Model, t: _Reader) -> str:
    w = t.words
    aplasia = ""
    if r.b_cell_aplasia != "unknown":
        aplasia = f" · {w['B-cell aplasia']}: {t.label(r, 'b_cell_aplasia')}"
    return f"<strong>{w['Follow-up contact']}</strong> {t.label(r, 'disease_status')}{aplasia}"


def _crs(r: Model, t: _Reader) -> str:
    w = t.words
    if r.derived_grade is not None:
        system = w["ASTCT 2019, derived"]
    else:
        system = t.label(r, "grading_system")
    return f"<strong>{w['CRS']}</strong> {t.graded(r.grade, 'grade %(grade)s')} ({system})"


def _icans(r: Model, t: _Reader) -> str:
    return f"<strong>{t.words['ICANS']}</strong> {t.graded(r.grade, 'grade %(grade)s')}"


def _response(r: Model, t: _Reader) -> str:
    mrd = f" · {t.label(r, 'mrd_status')}" if r.mrd_status else ""
    return f"<strong>{t.words['Response']}</strong> {t.label(r, 'response')}{mrd}"


def _transplant(r: Model, t: _Reader) -> str:
    return f"<strong>{t.words['Transplant']}</strong> {t.label(r, 'type')}"


def _relapse(r: Model, t: _Reader) -> str:
    return (
        f"<strong>{t.words['Relapse']}</strong> {t.label(r, 'kind')} · {t.label(r, 'cd19_status')}"
    )


def _infection(r: Model, t: _Reader) -> str:
    return (
        f"<strong>{t.words['Infection']}</strong> {t.label(r, 'site')} · "
        f"{t.label(r, 'organism_class')} · {t.graded(r.ctcae_grade, 'CTCAE grade %(grade)s')}"
    )


def _iec_hs(r: Model, t: _Reader) -> str:
    w = t.words
    return (
        f"<strong>{w['IEC-HS']}</strong> {t.graded(r.recorded_grade, 'grade %(grade)s')} "
        f"({w['as recorded']})"
    )


def _ivig(r: Model, t: _Reader) -> str:
    w = t.words
    stop = {"stop": r.stop.isoformat()} if r.stop else None
    until = _e(t.texts["until %(stop)s"] % stop) if stop else w["ongoing"]
    return f"<strong>{w['Immunoglobulin replacement']}</strong> {until}"


def _persistence(r: Model, t: _Reader) -> str:
    w = t.words
    detected = w["detected"] if r.detected else w["not detected"]
    return f"<strong>{w['CAR persistence']}</strong> {detected} ({t.label(r, 'method')})"


def _second_cancer(r: Model, t: _Reader) -> str:
    w = t.words
    details = ""
    if r.t_cell_malignancy:
        details = (
            f" · {w['T-cell malignancy']} · {w['CAR transgene tested']}: "
            f"{t.label(r, 'car_transgene_tested')}"
        )
        if r.car_transgene_tested == "yes":
            details += f" · {w['detected']}: {t.label(r, 'car_transgene_detected')}"
    return f"<strong>{w['Second cancer']}</strong> {_e(r.cancer_type)}{details}"


def _death(r: Model, t: _Reader) -> str:
    return f"<strong>{t.words['Death']}</strong> {t.label(r, 'cause')}"


# What each kind of entry says (registry.selectors.TIMELINE_RECORDS, its treatment and death).
SUMMARIES: dict[str, Callable[[Model, _Reader], str]] = {
    "treatment": _treatment,
    "crs": _crs,
    "icans": _icans,
    "response": _response,
    "transplant": _transplant,
    "relapse": _relapse,
    "contact": _contact,
    "infection": _infection,
    "iec_hs": _iec_hs,
    "ivig": _ivig,
    "persistence": _persistence,
    "second_cancer": _second_cancer,
    "death": _death,
}


def timeline_html(entries: Iterable[TimelineEntry], *, can_edit: bool) -> SafeString:
    """The <li> of each entry of a treatment's timeline, in the active language: its day, its
    date, what it says, and for someone who may edit at the patient's site its edit link."""
    reader = _Reader(get_language())
    w = reader.words
    day = reader.texts["day %(day)s"]
    edit_links: dict[str, str] = {}  # by kind: the route reversed once, MARK for the key
    lines = []
    for entry in entries:
        iso = entry.date.isoformat()
        edit = ""
        if can_edit:
            if entry.kind not in edit_links:
                edit_links[entry.kind] = _e(link("record-edit", entry.kind, MARK))
            url = edit_links[entry.kind].replace(str(MARK), str(int(entry.record.pk)))
            edit = f' · <a href="{url}" aria-label="{w["Edit"]}">{w["edit"]}</a>'
        lines.append(
            f'<li data-kind="{_e(entry.kind)}"><span class="day">'
            f"{_e(day % {'day': entry.day})}</span> "
            f'<time datetime="{iso}">{iso}</time> · {SUMMARIES[entry.kind](entry.record, reader)}'
            f"{edit}</li>\n"
        )
    return mark_safe("".join(lines))  # every value escaped by _e, every word by _words
