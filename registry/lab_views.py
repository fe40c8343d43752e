"""The nurse's page of a treatment's laboratory values: a grid, one row a day, filled by typing
or by pasting a series from a spreadsheet, saved as one audited write
(services.lab_series_save, nothing else writes); beside it the ANC curve and the ICAHT grades
derived from the saved series, with the rule that gave each.

Read like every record page: a treatment of another site is a 404, and a reader who may not
edit at its site sees the values, the curve and the grades, without inputs.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from registry import services
from registry.forms import DateInput, field_label
from registry.lab_grid import PASTE_COLUMNS, anc_curve, merged_into_grid, parse_pasted, pasted_date
from registry.models import LabValue, Treatment
from registry.models.labs import LAB_FIELDS
from registry.permissions import Action, can
from registry.selectors import records_visible_to

PREFIX = "lab"
EMPTY_ROWS = 5  # new rows offered below the saved ones
MORE_ROWS = 10  # added by "More rows"
MAX_ROWS = 400  # a series to day 100 and more, several rows a day; a forged count is refused


class LabRowForm(forms.Form):
    """One row of the grid. The values are kept as typed: services.lab_series_save parses and
    checks them, so that every error of every row is found at once and shown at its cell."""

    id = forms.CharField(required=False, widget=forms.HiddenInput, max_length=20)
    version = forms.CharField(required=False, widget=forms.HiddenInput, max_length=20)
    date = forms.CharField(required=False, max_length=40, widget=DateInput())

    def __init__(self, *args, may_delete: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name in LAB_FIELDS:
            self.fields[name] = forms.CharField(
                required=False,
                max_length=40,
                widget=forms.TextInput(
                    attrs={"inputmode": "decimal", "autocomplete": "off", "size": 6}
                ),
            )
        # Deleting a saved row is for those who may delete clinical data (INTERFACES.md
        # section 5: administrators, with the reason below); a nurse corrects a row instead.
        if may_delete:
            self.fields["delete"] = forms.BooleanField(required=False, label=_("Delete"))
        # Each cell is named by its column's heading and its row's (the template's ids).
        for name in ("date", *LAB_FIELDS):
            self.fields[name].label = field_label(LabValue, name)
        for name in self.fields:
            self.fields[name].widget.attrs["aria-labelledby"] = f"lab-col-{name} {self.prefix}-row"

    def values(self) -> dict[str, str]:
        """The row as typed (bound) or as given (initial), every column a string."""
        return {
            name: "" if (value := self[name].value()) is None else str(value).strip()
            for name in ("id", "version", *PASTE_COLUMNS)
        }

    def marked_for_deletion(self) -> bool:
        return "delete" in self.fields and bool(self["delete"].value())

    def is_empty_new_row(self) -> bool:
        row = self.values()
        if not row["id"] and self.marked_for_deletion():
            return True  # a new row ticked for deletion is left out
        return not row["id"] and not any(row[name] for name in PASTE_COLUMNS)


LabRowFormSet = forms.formset_factory(
    LabRowForm, extra=0, max_num=MAX_ROWS, absolute_max=MAX_ROWS, validate_max=True
)


class LabGridForm(forms.Form):
    """The grid's own fields: the reason for changing saved rows, and the pasted text."""

    reason = forms.CharField(
        label=gettext_lazy("Reason for the change"),
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=gettext_lazy(
            "Required when you change or delete a saved row; it is kept in the audit trail."
        ),
    )
    pasted = forms.CharField(
        label=gettext_lazy("Paste from a spreadsheet"),
        required=False,
        max_length=100_000,
        widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false", "autocomplete": "off"}),
        help_text=gettext_lazy(
            "One line a day, cells separated by tabs or commas: the date (YYYY-MM-DD) or the "
            "day number from day 0, then ANC, platelets, Hb, CRP, ferritin, IgG, CD19+ B cells; "
            "or a header row naming the columns. An empty cell leaves the grid's value."
        ),
    )


def _saved_rows(labs: list[LabValue]) -> list[dict[str, str]]:
    rows = []
    for lab in labs:
        row = {"id": str(lab.pk), "version": str(lab.version), "date": lab.date.isoformat()}
        for name in LAB_FIELDS:
            value = getattr(lab, name)
            row[name] = "" if value is None else str(value)
        rows.append(row)
    return rows


def _grid(rows: list[dict[str, str]], empty: int, *, may_delete: bool) -> LabRowFormSet:
    return LabRowFormSet(
        prefix=PREFIX,
        initial=[*rows, *({} for _ in range(empty))],
        form_kwargs={"may_delete": may_delete},
    )


def _row_label(form: LabRowForm, treatment: Treatment, number: int) -> str:
    """The row's heading: its day from day 0, or its number when it has no date yet."""
    when = pasted_date(form.values()["date"], treatment.day0)
    if when is None:
        return _("new row %(number)s") % {"number": number}
    return _("day %(day)s") % {"day": (when - treatment.day0).days}


def _save(
    request: HttpRequest, treatment: Treatment, grid: LabRowFormSet, form: LabGridForm
) -> tuple[list[LabValue], int] | None:
    """Save the grid through the services: the rows written and the number deleted; None when
    refused, with every error put at its row and column (and listed above the grid, each
    naming its row and field)."""
    sent = [row for row in grid.forms if not row.is_empty_new_row()]
    rows: list[dict[str, Any]] = []
    for row in sent:
        values = row.values()
        if row.marked_for_deletion():  # its values, maybe half-edited, are not checked
            rows.append({"id": values["id"], "version": values["version"], "delete": True})
            continue
        if not values["id"]:
            values.pop("id")
            values.pop("version")
        rows.append(values)
    try:
        written = services.lab_series_save(
            treatment=treatment, rows=rows, user=request.user, reason=form.cleaned_data["reason"]
        )
    except services.LabSeriesRefused as refused:
        for index, columns in refused.rows.items():
            row = sent[index]
            for column, column_messages in columns.items():
                target = (
                    column
                    if column in row.fields and column not in ("id", "version", "delete")
                    else None
                )
                for message in column_messages:
                    row.add_error(target, message)
        return None
    except ValidationError as refused:
        for field, field_messages in refused.message_dict.items():
            for message in field_messages:
                if field == "reason":
                    form.add_error("reason", message)
                elif field == "__all__":
                    form.add_error(None, message)
                else:
                    form.add_error(None, f"{field_label(LabValue, field)}: {message}")
        return None
    return written, sum(row.marked_for_deletion() for row in sent)


def _error_summary(grid: LabRowFormSet, treatment: Treatment) -> list[dict[str, str]]:
    """Every error of the grid, each naming its row and its field, with a link to its cell."""
    summary = []
    for number, row in enumerate(grid.forms, start=1):
        label = _row_label(row, treatment, number)
        for message in row.non_field_errors():
            summary.append({"href": f"#{row['date'].auto_id}", "text": f"{label}: {message}"})
        for name in ("date", *LAB_FIELDS):
            for message in row[name].errors:
                summary.append(
                    {
                        "href": f"#{row[name].auto_id}",
                        "text": f"{label} · {row.fields[name].label}: {message}",
                    }
                )
    return summary


@login_required
def treatment_labs(request: HttpRequest, pk: int) -> HttpResponse:
    treatment = get_object_or_404(
        records_visible_to(Treatment, user=request.user).select_related("patient", "patient__site"),
        pk=pk,
    )
    may_edit = can(request.user, Action.EDIT, treatment.patient.site_id)
    may_delete = can(request.user, Action.DELETE, treatment.patient.site_id)
    if request.method == "POST" and not may_edit:
        raise PermissionDenied(_("You may read but not change data at this site."))
    labs = list(LabValue.objects.filter(treatment=treatment).order_by("date", "pk"))
    saved = _saved_rows(labs)
    form, grid, notes = LabGridForm(), None, []
    if request.method == "POST":
        form = LabGridForm(request.POST)
        grid = LabRowFormSet(request.POST, prefix=PREFIX, form_kwargs={"may_delete": may_delete})
        if not grid.management_form.is_valid():
            form.is_valid()
            form.add_error(None, _("The grid was sent incomplete; reload the page and try again."))
            grid = None
        elif not form.is_valid():  # a reason or a pasted text too long: shown at its field
            pass
        elif "paste" in request.POST or "more" in request.POST:
            current = [
                row.values() | ({"delete": "on"} if row.marked_for_deletion() else {})
                for row in grid.forms
            ]
            pasted = parse_pasted(form.cleaned_data["pasted"], day0=treatment.day0)
            notes = pasted.problems
            rows = merged_into_grid(current, pasted.rows)
            if "paste" in request.POST:
                notes.insert(
                    0,
                    ngettext(
                        "%(count)s pasted row is in the grid, not saved yet: check it and save.",
                        "%(count)s pasted rows are in the grid, not saved yet: check them and save.",
                        len(pasted.rows),
                    )
                    % {"count": len(pasted.rows)},
                )
            grid = _grid(
                rows, MORE_ROWS if "more" in request.POST else EMPTY_ROWS, may_delete=may_delete
            )
            form = LabGridForm(initial={"reason": form.cleaned_data["reason"]})
        elif not grid.is_valid():  # more rows than a grid holds
            for error in grid.non_form_errors():
                form.add_error(None, error)
        else:
            saved_rows = _save(request, treatment, grid, form)
            if saved_rows is not None:
                written, deleted = saved_rows
                if written or not deleted:
                    messages.success(
                        request,
                        ngettext("Saved %(count)s row.", "Saved %(count)s rows.", len(written))
                        % {"count": len(written)},
                    )
                if deleted:
                    messages.success(
                        request,
                        ngettext("Deleted %(count)s row.", "Deleted %(count)s rows.", deleted)
                        % {"count": deleted},
                    )
                return redirect("treatment-labs", treatment.pk)
    if grid is None:
        grid = _grid(saved, EMPTY_ROWS, may_delete=may_delete)
    rows = [
        {"form": row, "label": _row_label(row, treatment, number)}
        for number, row in enumerate(grid.forms, start=1)
    ]
    points = [
        ((lab.date - treatment.day0).days, lab.anc_per_ul)
        for lab in labs
        if lab.anc_per_ul is not None
    ]
    context = {
        "treatment": treatment,
        "patient": treatment.patient,
        "may_edit": may_edit,
        "may_delete": may_delete,
        "grid": grid,
        "rows": rows,
        "saved": saved,
        "saved_cells": [[row[name] for name in PASTE_COLUMNS] for row in saved],
        "form": form,
        "notes": notes,
        "errors": _error_summary(grid, treatment) if request.method == "POST" else [],
        "columns": [("date", field_label(LabValue, "date"))]
        + [(name, field_label(LabValue, name)) for name in LAB_FIELDS],
        "curve": anc_curve(points),
        "back": reverse("patient-detail", args=[treatment.patient.pk]),
    }
    return render(request, "registry/lab_grid.html", context)
