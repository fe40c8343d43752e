"""The export download page (INTERFACES.md sections 2 and 5): the analysis set as a file.

Data managers export identified or de-identified data of their sites, PIs de-identified only,
administrators everything. Every download is logged (registry.models.ExportLog). CSV streams
row by row; the other formats are written to a temporary file and streamed from disk. With the
laboratory values, an .xlsx has them on its sheet "labs"; CSV, .sav and .dta come as a zip of
the cohort file, its laboratory file and the codebook.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_http_methods

from registry import cohort_file
from registry.clock import today

CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "sav": "application/x-spss-sav",
    "dta": "application/x-stata-dta",
    "zip": "application/zip",
}
FORMAT_LABELS = {
    "csv": _("CSV (re-importable)"),
    "xlsx": _("Excel .xlsx (re-importable, codebook on a second sheet)"),
    "sav": _("SPSS .sav (variable and value labels)"),
    "dta": _("Stata .dta (variable and value labels)"),
}


class ExportForm(forms.Form):
    format = forms.ChoiceField(
        label=_("Format"), choices=[(f, FORMAT_LABELS[f]) for f in cohort_file.EXPORT_FORMATS]
    )
    deidentify = forms.BooleanField(
        label=_("De-identified: random codes for study IDs, days from day 0 for dates"),
        required=False,
        initial=True,
    )
    labs = forms.BooleanField(
        label=_(
            "With the laboratory values: CSV, .sav and .dta as a zip of the cohort file, its "
            "laboratory file and the codebook (an .xlsx has them on a sheet of its own)"
        ),
        required=False,
    )


def _allowed(request: HttpRequest) -> tuple[bool, bool]:
    """(may export identified, may export de-identified)."""
    user = request.user
    return (
        cohort_file.export_allowed(user, deidentify=False),
        cohort_file.export_allowed(user, deidentify=True),
    )


@login_required
@require_http_methods(["GET", "POST"])
def export_page(request: HttpRequest) -> HttpResponse:
    identified, deidentified = _allowed(request)
    if not deidentified:
        raise PermissionDenied(_("You may not export data."))
    form = ExportForm(request.POST or None)
    if not identified:
        form.fields["deidentify"].disabled = True
        form.fields["deidentify"].initial = True
    if request.method == "POST" and form.is_valid():
        deidentify = form.cleaned_data["deidentify"] or not identified
        fmt = form.cleaned_data["format"]
        if form.cleaned_data["labs"] and fmt != "xlsx":
            return _zip_download(request, fmt, deidentify=deidentify)
        return _download(request, fmt, deidentify=deidentify)
    return render(
        request,
        "registry/exchange/export.html",
        {
            "form": form,
            "identified": identified,
            "columns": [list(line.values()) for line in cohort_file.codebook()],
        },
    )


def _download(request: HttpRequest, fmt: str, *, deidentify: bool) -> HttpResponse:
    user = request.user
    cohort_file.check_export_allowed(user, deidentify=deidentify)
    suffix = "_deidentified" if deidentify else ""
    name = f"immunoreg_cohort_{today().isoformat()}{suffix}.{fmt}"
    cohort_file.log_export(user=user, fmt=fmt, deidentify=deidentify, file_name=name, via="web")
    if fmt == "csv":
        columns = cohort_file.export_columns(deidentify=deidentify)
        rows = cohort_file.export_rows(user=user, deidentify=deidentify)
        response: HttpResponse = StreamingHttpResponse(
            cohort_file.csv_lines(rows, columns), content_type=CONTENT_TYPES[fmt]
        )
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
    directory = tempfile.mkdtemp(prefix="immunoreg-export-")
    path = Path(directory) / name
    try:
        cohort_file.write_export(path, user=user, fmt=fmt, deidentify=deidentify)
        handle = path.open("rb")
    finally:
        # The open handle keeps the data readable; nothing is left on disk.
        if path.exists():
            path.unlink()
        os.rmdir(directory)
    return FileResponse(handle, as_attachment=True, filename=name, content_type=CONTENT_TYPES[fmt])


def _zip_download(request: HttpRequest, fmt: str, *, deidentify: bool) -> HttpResponse:
    """The cohort file, its laboratory file (the same patient codes when de-identified) and the
    codebook, in one zip written to a temporary directory and streamed from disk."""
    user = request.user
    cohort_file.check_export_allowed(user, deidentify=deidentify)
    stem = f"immunoreg_cohort_{today().isoformat()}{'_deidentified' if deidentify else ''}"
    name = f"{stem}.zip"
    cohort_file.log_export(user=user, fmt=fmt, deidentify=deidentify, file_name=name, via="web")
    directory = Path(tempfile.mkdtemp(prefix="immunoreg-export-"))
    try:
        cohort = directory / f"{stem}.{fmt}"
        labs = cohort_file.labs_path_of(cohort, fmt)
        cohort_file.write_export(cohort, user=user, fmt=fmt, deidentify=deidentify, labs_path=labs)
        codebook = directory / f"{stem}_codebook.csv"
        with codebook.open("w", encoding="utf-8", newline="") as stream:
            cohort_file.write_codebook(stream, deidentify=deidentify)
        archive = directory / name
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
            for part in (cohort, labs, codebook):
                bundle.write(part, arcname=part.name)
        handle = archive.open("rb")
    finally:
        # The open handle keeps the data readable; nothing is left on disk.
        shutil.rmtree(directory)
    return FileResponse(
        handle, as_attachment=True, filename=name, content_type=CONTENT_TYPES["zip"]
    )


@login_required
@require_GET
def export_codebook(request: HttpRequest) -> HttpResponse:
    """The codebook (variable, label, type, allowed values, units): it holds no patient data."""
    if not _allowed(request)[1]:
        raise PermissionDenied(_("You may not export data."))
    deidentify = request.GET.get("deidentify", "") in ("1", "true", "yes", "on")
    response = HttpResponse(content_type=CONTENT_TYPES["csv"])
    name = "immunoreg_codebook_deidentified.csv" if deidentify else "immunoreg_codebook.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    cohort_file.write_codebook(response, deidentify=deidentify)
    return response
