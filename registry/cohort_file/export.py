"""export_cohort: who may export what, the export's log (registry.models.ExportLog), and the
cohort file, its laboratory file and its codebook, each written whole or not at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.exceptions import PermissionDenied

from registry.cohort_file.analysis_set import analysis_patients, analysis_rows, lab_rows
from registry.cohort_file.codebook import write_codebook
from registry.cohort_file.deidentify import (
    deidentified,
    deidentified_labs,
    export_columns,
    lab_columns,
)
from registry.cohort_file.writing import write_csv, write_stat_file, write_xlsx
from registry.files import written_whole
from registry.models import ExportLog, Site, User
from registry.permissions import Action, can, user_site_ids

EXPORT_FORMATS = ("csv", "xlsx", "sav", "dta")


def labs_path_of(path: Path, fmt: str) -> Path:
    """The laboratory file beside a cohort file (none for .xlsx: a sheet of the workbook)."""
    suffix = fmt if fmt in ("sav", "dta") else "csv"
    return path.with_name(f"{path.stem}-labs.{suffix}")


def export_allowed(user: User, *, deidentify: bool) -> bool:
    action = Action.EXPORT_DEIDENTIFIED if deidentify else Action.EXPORT_IDENTIFIED
    return can(user, action)


def export_rows(
    *, user: User, deidentify: bool, codes: dict[tuple[str, str], str] | None = None
) -> Iterator[dict[str, Any]]:
    rows = analysis_rows(user=user)
    return deidentified(rows, codes) if deidentify else rows


def export_lab_rows(
    *, user: User, deidentify: bool, codes: dict[tuple[str, str], str] | None = None
) -> Iterator[dict[str, Any]]:
    """The laboratory file's rows; de-identified with the `codes` that the cohort file's rows,
    read first, gave each patient."""
    rows = lab_rows(user=user)
    if not deidentify:
        return rows
    if codes is None:
        raise ValueError("a de-identified laboratory file needs the cohort file's codes")
    return deidentified_labs(rows, codes)


@dataclass
class ExportResult:
    log: ExportLog
    path: Path
    codebook_path: Path
    labs_path: Path | None = None  # None for an .xlsx: its sheet "labs"


def log_export(*, user: User, fmt: str, deidentify: bool, file_name: str, via: str) -> ExportLog:
    sites = user_site_ids(user)
    scope = (
        "all"
        if sites is None
        else ",".join(
            Site.objects.filter(pk__in=sites).order_by("code").values_list("code", flat=True)
        )
    )
    return ExportLog.objects.create(
        user=user,
        format=fmt,
        identified=not deidentify,
        scope=scope[:500],
        rows=analysis_patients(user=user).count(),
        file_name=file_name[:255],
        via=via,
    )


def write_export(
    path: Path, *, user: User, fmt: str, deidentify: bool, labs_path: Path | None = None
) -> None:
    """Write the user's analysis set to `path` in one of EXPORT_FORMATS (not logged here), and
    its laboratory file to `labs_path` in the same format (CSV, .sav, .dta; an .xlsx always has
    it on its sheet "labs"). The cohort rows are written first: a de-identified laboratory
    file takes the patients' codes from them."""
    columns = export_columns(deidentify=deidentify)
    codes: dict[tuple[str, str], str] | None = {} if deidentify else None
    rows = export_rows(user=user, deidentify=deidentify, codes=codes)

    def labs() -> Iterator[dict[str, Any]]:
        return export_lab_rows(user=user, deidentify=deidentify, codes=codes)

    if fmt == "csv":
        write_csv(path, rows, columns)
        if labs_path is not None:
            write_csv(labs_path, labs(), lab_columns(deidentify=deidentify))
    elif fmt == "xlsx":
        write_xlsx(path, rows, columns, deidentify=deidentify, labs=labs)
    elif fmt in ("sav", "dta"):
        write_stat_file(path, rows, columns, fmt=fmt)
        if labs_path is not None:
            write_stat_file(labs_path, labs(), lab_columns(deidentify=deidentify), fmt=fmt)
    else:
        raise ValueError(f"unknown export format {fmt!r}")


def check_export_allowed(user: User, *, deidentify: bool) -> None:
    if not export_allowed(user, deidentify=deidentify):
        raise PermissionDenied(
            "You may not export de-identified data."
            if deidentify
            else "You may not export identified data (only de-identified)."
        )


def export_cohort(
    path: Path, *, user: User, fmt: str = "csv", deidentify: bool = False, via: str = "command"
) -> ExportResult:
    """Write the analysis set to `path`, its laboratory file beside it (`<stem>-labs.csv`,
    `.sav` or `.dta`; an .xlsx has a sheet "labs") and its codebook (`<stem>_codebook.csv`)."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}")
    check_export_allowed(user, deidentify=deidentify)
    path = Path(path)
    log = log_export(user=user, fmt=fmt, deidentify=deidentify, file_name=path.name, via=via)
    labs_path = None if fmt == "xlsx" else labs_path_of(path, fmt)
    # Each file whole or not at all (a full disk leaves no truncated export under its name).
    with written_whole(path) as temporary, _whole_or_none(labs_path) as labs_temporary:
        write_export(temporary, user=user, fmt=fmt, deidentify=deidentify, labs_path=labs_temporary)
    codebook_path = path.with_name(f"{path.stem}_codebook.csv")
    with (
        written_whole(codebook_path) as temporary,
        temporary.open("w", encoding="utf-8", newline="") as stream,
    ):
        write_codebook(stream, deidentify=deidentify)
    return ExportResult(log, path, codebook_path, labs_path)


@contextmanager
def _whole_or_none(path: Path | None) -> Iterator[Path | None]:
    if path is None:
        yield None
        return
    with written_whole(path) as temporary:
        yield temporary
