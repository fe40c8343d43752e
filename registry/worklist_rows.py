"""The worklist's lines as the page shows them: every text and link of a row worked out once.

At 100,000 patients a site's worklist holds hundreds of visits due and overdue, and the page is
rendered again after every write at the site. Worked out per row in the template (an include,
two `{% url %}` and two `{% blocktranslate %}` a row, a filter per date) the rendering took
about 1 ms a row, most of the page's time. Here each link is made by registry.links (a route is
reversed once, not once a row), each visit label is translated once a page, and the rows of the
long tables (visits due and overdue) are put together here, every value escaped, in a few µs a
row instead of a template loop's hundred.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from html import escape

from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext

from registry.links import link_maker
from registry.models.quality import visit_label
from registry.selectors import WorklistLine


@dataclass(frozen=True, slots=True)
class WorklistRow:
    """One line of the worklist, ready to print: `record_url` is empty for a reader who may not
    record a contact (the link is not shown), `visit` empty when no visit is named."""

    study_id: str
    site: str
    patient_url: str
    visit: str
    opens: str
    closes: str
    last_seen: str
    record_url: str
    record_label: str


def worklist_rows(lines: Iterable[WorklistLine], *, may_edit: bool) -> list[WorklistRow]:
    """The rows of these lines, in the active language."""
    patient_url = link_maker("patient-detail")
    contact_url = link_maker("record-new", "contact")

    @cache
    def visit(name: str) -> str:
        return visit_label(name) if name else ""

    @cache
    def record_label(name: str) -> str:
        if not name:
            return gettext("Record follow-up")
        return gettext("Record follow-up (%(visit)s)") % {"visit": visit(name)}

    def day(value) -> str:
        return value.isoformat() if value else ""

    return [
        WorklistRow(
            study_id=line.study_id,
            site=line.site,
            patient_url=patient_url(line.patient_pk),
            visit=visit(line.visit),
            opens=day(line.opens),
            closes=day(line.closes),
            last_seen=day(line.last_seen),
            record_url=f"{contact_url(line.treatment_pk)}#id_date" if may_edit else "",
            record_label=record_label(line.visit),
        )
        for line in lines
    ]


BUTTON = ' role="button"'


def _record_link(row: WorklistRow, role: str = "") -> str:
    """The link to record the row's contact, escaped ("" for a reader who may not)."""
    if not row.record_url:
        return ""
    label = escape(row.record_label)
    return (
        f'<a{role} href="{escape(row.record_url)}" aria-label="{label}: '
        f'{escape(row.study_id)}">{label}</a>'
    )


def due_rows_html(rows: list[WorklistRow]) -> SafeString:
    """The <tr> of each visit due now: patient, site, visit, window, the link to record it.
    Every value is escaped by html.escape, as Django's `escape` does (it calls it)."""
    return mark_safe(  # every value escaped here
        "".join(
            f'<tr><td><a href="{escape(r.patient_url)}">{escape(r.study_id)}</a></td>'
            f"<td>{escape(r.site)}</td><td>{escape(r.visit)}</td>"
            f"<td>{escape(r.opens)} – {escape(r.closes)}</td>"
            f"<td>{_record_link(r, BUTTON)}</td></tr>\n"
            for r in rows
        )
    )


def overdue_rows_html(rows: list[WorklistRow]) -> SafeString:
    """The <tr> of each visit overdue: patient, site, visit, window closed, the link."""
    return mark_safe(  # every value escaped here
        "".join(
            f'<tr><td><a href="{escape(r.patient_url)}">{escape(r.study_id)}</a></td>'
            f"<td>{escape(r.site)}</td><td>{escape(r.visit)}</td><td>{escape(r.closes)}</td>"
            f"<td>{_record_link(r)}</td></tr>\n"
            for r in rows
        )
    )
