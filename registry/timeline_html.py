"""The patient page's timeline as the page shows it: each record's line put together once, here.

A patient's page lists every record of each treatment, about fourteen at 100,000 patients and
more for a patient followed for years. Worked out in the template (a `{% with %}`, a branch per
kind, a `{% blocktranslate %}`, a `{% url %}` and two or three labels a line) a line took about
135 µs, the largest part of the page's time (docs/PERFORMANCE.md). Here each kind's line is a
small function, every value escaped by Django's `escape` (through format_html), every text
translated in the active language with the template's own messages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from django.db.models import Model
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext

from registry.links import link
from registry.selectors import TimelineEntry


def _text(value) -> str:
    """A value as the line shows it: nothing for a value not recorded."""
    return "" if value is None else str(value)


def _graded(grade: int | None, message: str) -> SafeString:
    """A grade's badge; "?" for a grade not known (never for grade 0)."""
    label = message % {"grade": "?" if grade is None else grade}
    return format_html('<span class="badge grade-{}">{}</span>', _text(grade), label)


def _treatment(r: Model) -> SafeString:
    return format_html(
        "<strong>{}</strong> {} · {} · {} · {}: {} · {}: {}",
        gettext("Treatment"),
        _text(r.product),
        _text(r.get_disease_burden_display()),
        _text(r.get_relapse_status_display()),
        gettext("CRS"),
        _text(r.get_crs_status_display()),
        gettext("ICANS"),
        _text(r.get_icans_status_display()),
    )


def _contact(r: Model) -> SafeString:
    aplasia = ""
    if r.b_cell_aplasia != "unknown":
        aplasia = f" · {gettext('B-cell aplasia')}: {r.get_b_cell_aplasia_display()}"
    return format_html(
        "<strong>{}</strong> {}{}",
        gettext("Follow-up contact"),
        _text(r.get_disease_status_display()),
        aplasia,
    )


def _crs(r: Model) -> SafeString:
    if r.derived_grade is not None:
        system = gettext("ASTCT 2019, derived")
    else:
        system = _text(r.get_grading_system_display())
    return format_html(
        "<strong>{}</strong> {} ({})",
        gettext("CRS"),
        _graded(r.grade, gettext("grade %(grade)s")),
        system,
    )


def _icans(r: Model) -> SafeString:
    return format_html(
        "<strong>{}</strong> {}", gettext("ICANS"), _graded(r.grade, gettext("grade %(grade)s"))
    )


def _response(r: Model) -> SafeString:
    mrd = f" · {r.get_mrd_status_display()}" if r.mrd_status else ""
    return format_html(
        "<strong>{}</strong> {}{}", gettext("Response"), _text(r.get_response_display()), mrd
    )


def _transplant(r: Model) -> SafeString:
    return format_html("<strong>{}</strong> {}", gettext("Transplant"), _text(r.get_type_display()))


def _relapse(r: Model) -> SafeString:
    return format_html(
        "<strong>{}</strong> {} · {}",
        gettext("Relapse"),
        _text(r.get_kind_display()),
        _text(r.get_cd19_status_display()),
    )


def _infection(r: Model) -> SafeString:
    return format_html(
        "<strong>{}</strong> {} · {} · {}",
        gettext("Infection"),
        _text(r.get_site_display()),
        _text(r.get_organism_class_display()),
        _graded(r.ctcae_grade, gettext("CTCAE grade %(grade)s")),
    )


def _iec_hs(r: Model) -> SafeString:
    return format_html(
        "<strong>{}</strong> {} ({})",
        gettext("IEC-HS"),
        _graded(r.recorded_grade, gettext("grade %(grade)s")),
        gettext("as recorded"),
    )


def _ivig(r: Model) -> SafeString:
    if r.stop:
        until = gettext("until %(stop)s") % {"stop": r.stop.isoformat()}
    else:
        until = gettext("ongoing")
    return format_html("<strong>{}</strong> {}", gettext("Immunoglobulin replacement"), until)


def _persistence(r: Model) -> SafeString:
    return format_html(
        "<strong>{}</strong> {} ({})",
        gettext("CAR persistence"),
        gettext("detected") if r.detected else gettext("not detected"),
        _text(r.get_method_display()),
    )


def _second_cancer(r: Model) -> SafeString:
    details = ""
    if r.t_cell_malignancy:
        details = (
            f" · {gettext('T-cell malignancy')} · {gettext('CAR transgene tested')}: "
            f"{r.get_car_transgene_tested_display()}"
        )
        if r.car_transgene_tested == "yes":
            details += f" · {gettext('detected')}: {r.get_car_transgene_detected_display()}"
    return format_html(
        "<strong>{}</strong> {}{}", gettext("Second cancer"), _text(r.cancer_type), details
    )


def _death(r: Model) -> SafeString:
    return format_html("<strong>{}</strong> {}", gettext("Death"), _text(r.get_cause_display()))


# What each kind of entry says (registry.selectors.TIMELINE_RECORDS, its treatment and death).
SUMMARIES: dict[str, Callable[[Model], SafeString]] = {
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
    day = gettext("day %(day)s")
    edit_label, edit_text = gettext("Edit"), gettext("edit")
    lines = []
    for entry in entries:
        iso = entry.date.isoformat()
        edit = ""
        if can_edit:
            edit = format_html(
                ' · <a href="{}" aria-label="{}">{}</a>',
                link("record-edit", entry.kind, entry.record.pk),
                edit_label,
                edit_text,
            )
        lines.append(
            format_html(
                '<li data-kind="{}"><span class="day">{}</span> '
                '<time datetime="{}">{}</time> · {}{}</li>\n',
                entry.kind,
                day % {"day": entry.day},
                iso,
                iso,
                SUMMARIES[entry.kind](entry.record),
                edit,
            )
        )
    return mark_safe("".join(lines))  # each line built by format_html, every value escaped
