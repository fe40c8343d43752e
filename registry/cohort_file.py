"""The flat cohort file of INTERFACES.md section 3: import it, and export the analysis set in it.

Import. The file (UTF-8 CSV, or the first sheet of an .xlsx) is read and every cell parsed
first; then, inside one transaction, each row becomes the patient's records written through
registry.services (the same rules, derivations and audit as the forms), and every problem is
collected as `row R, column C: message`, not only the first. Any problem rolls everything back;
a dry run rolls back too. Each record's history names the import run and the user.

Export. The analysis set (SAP.md section 1: each patient's first index treatment by day 0),
one row per patient in the same columns, so that an exported file imports again. The rows are
read in chunks with a fixed number of queries per chunk, and written as they are read. A
de-identified export (docs/DEIDENTIFICATION.md) replaces study IDs by random codes, dates by
days from day 0 and the year of birth by the age at day 0, leaves out free text, and shuffles
the rows. Every text cell of every format goes through export_value (no live formula). Every
export is logged (registry.models.ExportLog).
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import re
import secrets
import time
import zipfile
from array import array
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any, NamedTuple

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError, IntegrityError, models, transaction
from django.db.models import Exists, Max, Min, OuterRef, Q
from django.template.defaultfilters import filesizeformat
from django.utils import timezone, translation
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from registry import import_runs, services
from registry.domain import mrd
from registry.domain.identifiers import identifier_key, written_form
from registry.domain.ranges import RANGES
from registry.domain.vocabulary import (
    Arm,
    DeathCause,
    DiseaseBurden,
    DiseaseStatus,
    GradingSystem,
    MrdStatus,
    PhStatus,
    RelapseKind,
    RelapseStatus,
    Response,
    Role,
    Sex,
    TransplantType,
    YesNoUnknown,
)
from registry.files import written_whole
from registry.models import (
    CrsEpisode,
    Death,
    ExportLog,
    FollowUpContact,
    IcansEpisode,
    ImportRun,
    LabValue,
    Patient,
    Relapse,
    ResponseAssessment,
    Site,
    Transplant,
    Treatment,
    User,
)
from registry.models.base import validate_identifier
from registry.models.labs import LAB_FIELDS
from registry.permissions import Action, can, user_site_ids
from registry.selectors import records_visible_to

# SAP.md section 1: the best response between day 0 and day 90 counts.
RESPONSE_WINDOW_DAYS = 90
EXPORT_FORMATS = ("csv", "xlsx", "sav", "dta")
XLSX_MAGIC = b"PK\x03\x04"


# --- the columns -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    name: str
    label: str
    kind: str  # text, site, enum, integer, grade, number, date; in de-identified files also days
    required: bool = False
    values: tuple[str, ...] = ()
    units: str = ""


def _values(enum) -> tuple[str, ...]:
    return tuple(member.value for member in enum)


YES_NO = ("yes", "no")
GRADES = tuple(str(grade) for grade in range(6))

COLUMNS: tuple[Column, ...] = (
    Column("study_id", "Study ID (unique within the site)", "text", required=True),
    Column("site", "Site code", "site", required=True),
    Column("sex", "Sex", "enum", True, _values(Sex)),
    Column("year_of_birth", "Year of birth", "integer", required=True, units="year"),
    Column("ph_status", "Ph (BCR::ABL1) status", "enum", values=_values(PhStatus)),
    Column("arm", "Treatment arm", "enum", True, _values(Arm)),
    Column(
        "treatment_start",
        "Day 0: first day of blinatumomab cycle 1, or the CAR-T infusion",
        "date",
        required=True,
    ),
    Column("product", "Product / construct", "text"),
    Column("disease_burden", "Disease burden at day 0", "enum", True, _values(DiseaseBurden)),
    Column("bm_blast_pct", "Marrow blasts at day 0", "number", units="%"),
    Column("relapse_status", "Relapse status at day 0", "enum", True, _values(RelapseStatus)),
    Column("prior_hsct", "Previous allogeneic HSCT", "enum", values=YES_NO),
    Column("crs_grade", "Worst CRS grade (blank: CRS status unknown)", "grade", values=GRADES),
    Column(
        "crs_grading_system",
        "Grading system of the CRS grade (default astct2019)",
        "enum",
        values=_values(GradingSystem),
    ),
    Column(
        "icans_grade", "Worst ICANS grade (blank: ICANS status unknown)", "grade", values=GRADES
    ),
    Column("response", "Best response by day 90", "enum", values=_values(Response)),
    Column("response_date", "Date of the response assessment", "date"),
    Column("mrd_negative", "MRD negative (< 0.01%) at that assessment", "enum", values=YES_NO),
    Column(
        "hsct_type", "Allogeneic HSCT after treatment: type", "enum", values=_values(TransplantType)
    ),
    Column("hsct_date", "Allogeneic HSCT after treatment: date", "date"),
    Column("relapse_date", "First relapse or progression", "date"),
    Column("death_date", "Date of death", "date"),
    Column("death_cause", "Cause of death", "enum", values=_values(DeathCause)),
    Column(
        "last_contact_date",
        "Last contact (the date of death for a patient who died)",
        "date",
        required=True,
    ),
)
COLUMN_BY_NAME = {column.name: column for column in COLUMNS}

# INTERFACES.md section 3: a required column must be in the header, but a blank cell means
# unknown there too. These cells cannot be unknown: the patient or treatment needs them.
VALUE_REQUIRED = frozenset({"study_id", "site", "sex", "year_of_birth", "arm", "treatment_start"})

# Columns that go together: the second is required when the first is given, and vice versa.
PAIRED = (("response", "response_date"), ("hsct_type", "hsct_date"), ("death_date", "death_cause"))

# De-identified files: random codes for study IDs, days from day 0 for dates, age for birth year.
DAYS_FROM_DAY0 = ("response_date", "hsct_date", "relapse_date", "death_date", "last_contact_date")
PATIENT_CODE = Column("patient_code", "Random patient code (this export only)", "text")
DEIDENTIFIED_RENAMES: dict[str, Column | None] = {
    "study_id": PATIENT_CODE,
    "year_of_birth": Column(
        "age_at_day0", "Age at day 0 (from the year of birth)", "integer", units="years"
    ),
    "treatment_start": None,  # day 0 is the origin of every other time
    **{
        name: Column(
            name.removesuffix("_date") + "_day",
            COLUMN_BY_NAME[name].label + ", days from day 0",
            "days",
            units="days",
        )
        for name in DAYS_FROM_DAY0
    },
}


# Every column of a de-identified file, each with the reason it may be there (docs/
# DEIDENTIFICATION.md says the same): coded values only. No free text (product, and every
# CharField/TextField without choices of the models: tests/registry/test_export_leaks.py),
# no calendar date, no study ID.
DEIDENTIFIED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("patient_code", "random per export (secrets), not derived from the study ID"),
    ("site", "the site's registry code, needed to analyse by site (no patient data)"),
    ("sex", "coded M/F"),
    ("age_at_day0", "whole years at day 0 instead of the year of birth"),
    ("ph_status", "coded"),
    ("arm", "coded"),
    ("disease_burden", "coded"),
    ("bm_blast_pct", "a number 0-100"),
    ("relapse_status", "coded"),
    ("prior_hsct", "coded yes/no"),
    ("crs_grade", "a grade 0-5"),
    ("crs_grading_system", "coded"),
    ("icans_grade", "a grade 0-5"),
    ("response", "coded"),
    ("response_day", "days from day 0 instead of a date"),
    ("mrd_negative", "coded yes/no"),
    ("hsct_type", "coded"),
    ("hsct_day", "days from day 0 instead of a date"),
    ("relapse_day", "days from day 0 instead of a date"),
    ("death_day", "days from day 0 instead of a date"),
    ("death_cause", "coded"),
    ("last_contact_day", "days from day 0 instead of a date"),
)
# Left out of a de-identified file: free text typed by a person can hold anything (a name, a
# hospital number, a birth date were found in it).
DEIDENTIFIED_DROPPED = frozenset({"product"})


# --- the laboratory file ----------------------------------------------------------------------
# The flat file has one row per patient and cannot carry a series: the laboratory values of the
# exported patients' index treatments travel in a companion file (`<stem>-labs.csv`, a sheet
# "labs" of an .xlsx, `<stem>-labs.sav` / `.dta`), one row per value row of the treatment.
LAB_LABELS = {
    "anc_per_ul": "Absolute neutrophil count",
    "platelets_10e9_l": "Platelets",
    "haemoglobin_g_dl": "Haemoglobin",
    "crp_mg_l": "C-reactive protein",
    "ferritin_ng_ml": "Ferritin",
    "igg_g_l": "IgG",
    "cd19_b_cells_per_ul": "CD19+ B cells",
}
LAB_LABEL_PREFIX = "Laboratory file: "


def _lab_value_column(name: str) -> Column:
    model_field = LabValue._meta.get_field(name)
    kind = "integer" if isinstance(model_field, models.IntegerField) else "number"
    return Column(
        name,
        LAB_LABEL_PREFIX + LAB_LABELS[name],
        kind,
        units=RANGES[("LabValue", name)].unit,
    )


LAB_COLUMNS: tuple[Column, ...] = (
    Column("study_id", "Study ID (unique within the site)", "text", required=True),
    Column("site", "Site code", "site", required=True),
    Column("date", LAB_LABEL_PREFIX + "date of the sample", "date", required=True),
    *(_lab_value_column(name) for name in LAB_FIELDS),
)
LAB_COLUMN_BY_NAME = {column.name: column for column in LAB_COLUMNS}
LAB_VALUE_REQUIRED = frozenset({"study_id", "site", "date"})
LAB_DEIDENTIFIED_RENAMES: dict[str, Column] = {
    "study_id": PATIENT_CODE,
    "date": Column(
        "day", LAB_LABEL_PREFIX + "day of the sample, days from day 0", "days", units="days"
    ),
}
# docs/DEIDENTIFICATION.md: every column of a de-identified laboratory file and its reason.
LAB_DEIDENTIFIED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("patient_code", "the same random code as the patient's row of the cohort file"),
    ("site", "the site's registry code, as in the cohort file"),
    ("day", "days from day 0 instead of a date"),
    *((name, "a measured number") for name in LAB_FIELDS),
)


def lab_columns(*, deidentify: bool) -> list[Column]:
    if not deidentify:
        return list(LAB_COLUMNS)
    return [LAB_DEIDENTIFIED_RENAMES.get(column.name, column) for column in LAB_COLUMNS]


def lab_only_columns(*, deidentify: bool) -> list[Column]:
    """The columns of the laboratory file that the cohort file does not have (the codebook's)."""
    names = {column.name for column in export_columns(deidentify=deidentify)}
    return [column for column in lab_columns(deidentify=deidentify) if column.name not in names]


def labs_path_of(path: Path, fmt: str) -> Path:
    """The laboratory file beside a cohort file (none for .xlsx: a sheet of the workbook)."""
    suffix = fmt if fmt in ("sav", "dta") else "csv"
    return path.with_name(f"{path.stem}-labs.{suffix}")


def export_columns(*, deidentify: bool) -> list[Column]:
    if not deidentify:
        return list(COLUMNS)
    columns = []
    for column in COLUMNS:
        if column.name in DEIDENTIFIED_DROPPED:
            continue
        replacement = DEIDENTIFIED_RENAMES.get(column.name, column)
        if replacement is not None:
            columns.append(replacement)
    return columns


def codes_of(column: Column) -> dict[int, str]:
    """The numeric codes of an enumeration in .sav and .dta files (1, 2, ... in codebook order)."""
    if column.kind != "enum":
        return {}
    return {number: value for number, value in enumerate(column.values, start=1)}


CODEBOOK_HEADER = (
    "variable",
    "label",
    "type",
    "required",
    "allowed values",
    "codes (sav/dta)",
    "units",
)
TYPE_NAMES = {
    "text": "text",
    "site": "text (site code)",
    "enum": "category",
    "integer": "integer",
    "grade": "integer 0-5",
    "number": "number",
    "date": "date (YYYY-MM-DD)",
    "days": "integer (days)",
}


def codebook(*, deidentify: bool = False) -> list[dict[str, str]]:
    """One line per exported variable: name, label, type, allowed values, units; the cohort
    file's, then those the laboratory file adds (labelled "Laboratory file: ...")."""
    rows = []
    for column in (
        *export_columns(deidentify=deidentify),
        *lab_only_columns(deidentify=deidentify),
    ):
        codes = codes_of(column)
        allowed = ", ".join(column.values)
        if column.name == "bm_blast_pct":
            allowed = "0-100"
        elif column.name in LAB_FIELDS:
            limits = RANGES[("LabValue", column.name)]
            allowed = f"{_plain(limits.low)}-{_plain(limits.high)}"
        rows.append(
            dict(
                zip(
                    CODEBOOK_HEADER,
                    (
                        column.name,
                        column.label,
                        TYPE_NAMES[column.kind],
                        "yes" if column.required else "no",
                        allowed,
                        "; ".join(f"{code}={value}" for code, value in codes.items()),
                        column.units,
                    ),
                    strict=True,
                )
            )
        )
    return rows


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def write_codebook(stream: IO[str], *, deidentify: bool = False) -> None:
    writer = csv.DictWriter(stream, fieldnames=CODEBOOK_HEADER, lineterminator="\n")
    writer.writeheader()
    for line in codebook(deidentify=deidentify):
        writer.writerow({name: export_value(text) for name, text in line.items()})


# --- reading a file ----------------------------------------------------------------------------
# Every bound of an import, in one place (settings IMMUNOREG_IMPORT_*, read when a file is
# imported). A file beyond one is refused as soon as that is known, with a message naming the
# bound and its value; nothing of it is saved. The file is read as a stream: never all of it in
# memory at once, and never more than the first max_rows + 1 patient rows.
@dataclass(frozen=True)
class ImportLimits:
    max_bytes: int = 50 * 1024 * 1024  # the file as uploaded (IMMUNOREG_MAX_UPLOAD_BYTES)
    max_rows: int = 20_000  # patient rows (blank rows do not count)
    max_lab_rows: int = 200_000  # rows of the laboratory file that goes with it
    max_columns: int = 100  # cells up to the last non-blank one, in any row
    max_cell_chars: int = 1_000
    max_xlsx_bytes: int = 50 * 1024 * 1024  # an .xlsx workbook's parts, unpacked, together
    max_xlsx_ratio: int = 100  # unpacked / packed size of any part over XLSX_RATIO_FLOOR
    # The shared strings are read whole before the first row (openpyxl): a tighter bound.
    max_xlsx_strings_bytes: int = 10 * 1024 * 1024
    max_seconds: float = 100.0  # reading, checking and writing (gunicorn's timeout is 120 s)
    max_problems_shown: int = 200  # on the upload page; the run's log keeps as many

    @classmethod
    def from_settings(cls) -> ImportLimits:
        defaults = cls()
        return cls(
            max_bytes=getattr(settings, "IMMUNOREG_MAX_UPLOAD_BYTES", defaults.max_bytes),
            **{
                name: getattr(settings, f"IMMUNOREG_IMPORT_{name.upper()}", value)
                for name, value in vars(defaults).items()
                if name != "max_bytes"
            },
        )

    @property
    def max_line_chars(self) -> int:
        """The longest CSV row: every column at its longest, quoted, and a line break."""
        return self.max_columns * (self.max_cell_chars + 3) + 2


XLSX_RATIO_FLOOR = 1024 * 1024  # smaller parts may compress as well as they like
XLSX_MAX_PARTS = 10_000


class Deadline:
    """The time an import may take (ImportLimits.max_seconds); `clock` is injectable for tests."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self.clock = seconds, clock
        self.ends = clock() + seconds

    def expired(self) -> bool:
        return self.clock() > self.ends

    def check(self) -> None:
        if self.expired():
            raise LimitExceeded(TOO_SLOW, seconds=_number(self.seconds))


class Message:
    """A translatable message and its values, rendered in the language active when shown (the
    upload page in the reader's language; the run's log and the command in English)."""

    def __init__(self, text: str, **values: Any) -> None:
        self.text, self.values = text, values

    def __str__(self) -> str:
        return str(self.text) % self.values if self.values else str(self.text)

    def __eq__(self, other: object) -> bool:
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


class UnreadableFile(Exception):
    """Not a UTF-8 CSV or an .xlsx, nothing in it, or beyond a bound (exit status 2)."""

    def __init__(self, message: str, **values: Any) -> None:
        self.message = Message(message, **values)
        super().__init__(self.message)

    def __str__(self) -> str:
        return str(self.message)


class LimitExceeded(UnreadableFile):
    """The file is beyond one of the ImportLimits: refused before it is read any further."""


class NoSuchSheet(UnreadableFile):
    """The .xlsx workbook has no sheet of the name asked for."""


@dataclass(frozen=True)
class Formula:
    """A formula cell of an .xlsx: its text, never its cached value (a problem, not a value)."""

    text: str

    def __str__(self) -> str:
        return self.text


FORMULA = _("a formula is not a value: type the value itself")
TOO_SLOW = _(
    "The import took longer than %(seconds)s seconds and was stopped; nothing was saved. "
    "Split the file into smaller ones."
)
EMPTY = _("The file is empty.")
XLSX_UNREADABLE = _("The .xlsx file cannot be read: %(error)s.")


@dataclass
class Table:
    header: list[str]
    rows: list[tuple[int, list[Any]]]  # (spreadsheet row number, cells)
    formulas: set[int] = field(default_factory=set)  # header cells that hold a formula


def read_table(
    content: bytes | IO[bytes],
    *,
    limits: ImportLimits | None = None,
    deadline: Deadline | None = None,
    sheet: str | None = None,
    labs: bool = False,
) -> Table:
    """The header and the non-blank rows of a CSV or .xlsx file, numbered as a spreadsheet shows.

    Raises LimitExceeded as soon as the file is known to be beyond one of `limits`. `sheet`
    names the sheet of an .xlsx to read (NoSuchSheet without it; default the first); `labs`:
    a laboratory file, of at most max_lab_rows rows, which may have a header alone.
    """
    limits = limits or ImportLimits.from_settings()
    deadline = deadline or Deadline(limits.max_seconds)
    stream = _binary_stream(content)
    _check_size(stream, limits)
    start = stream.read(len(XLSX_MAGIC))
    stream.seek(0)
    if not start:
        raise UnreadableFile(EMPTY)
    if start == XLSX_MAGIC:
        lines = _xlsx_lines(stream, limits, deadline, sheet=sheet)
    else:
        lines = _csv_lines(stream, limits)
    header: list[str] | None = None
    formulas: set[int] = set()
    rows: list[tuple[int, list[Any]]] = []
    try:
        for number, cells in lines:
            deadline.check()
            if not any(_text(cell) for cell in cells):
                continue
            _check_row(number, cells, limits)
            if header is None:
                formulas = {i for i, cell in enumerate(cells) if isinstance(cell, Formula)}
                header = [_text(cell).lower() for cell in cells]
                while header and header[-1] == "":
                    header.pop()
                if number != 1:
                    raise UnreadableFile(_("The first row must name the columns; it is empty."))
                continue
            rows.append((number, list(cells)))
            if labs and len(rows) > limits.max_lab_rows:
                raise LimitExceeded(
                    _(
                        "The laboratory file has more than %(limit)s rows; an import takes at "
                        "most %(limit)s. Split the files into smaller ones."
                    ),
                    limit=_number(limits.max_lab_rows),
                )
            if not labs and len(rows) > limits.max_rows:
                raise LimitExceeded(
                    _(
                        "The file has more than %(limit)s patient rows; an import takes at "
                        "most %(limit)s. Split the file into smaller ones."
                    ),
                    limit=_number(limits.max_rows),
                )
    finally:
        lines.close()
    if header is None:
        raise UnreadableFile(EMPTY)
    if not rows and not labs:
        raise UnreadableFile(_("The file has a header but no patient rows."))
    return Table(header, rows, formulas)


def _binary_stream(content: bytes | IO[bytes]) -> IO[bytes]:
    if isinstance(content, bytes | bytearray | memoryview):
        return io.BytesIO(content)
    content.seek(0)
    return content


def stream_size(stream: IO[bytes]) -> int:
    stream.seek(0, io.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    return size


def _check_size(stream: IO[bytes], limits: ImportLimits) -> None:
    size = stream_size(stream)
    if size > limits.max_bytes:
        raise LimitExceeded(
            _("The file is %(size)s, larger than the limit of %(limit)s."),
            size=filesizeformat(size),
            limit=filesizeformat(limits.max_bytes),
        )


def _check_row(number: int, cells: list[Any], limits: ImportLimits) -> None:
    """Refuse a row wider than max_columns or with a cell longer than max_cell_chars."""
    width = len(cells)
    while width and not _text(cells[width - 1]):
        width -= 1
    if width > limits.max_columns:
        _too_wide(number, width, limits)
    for index, cell in enumerate(cells[:width]):
        if isinstance(cell, str | Formula) and len(str(cell)) > limits.max_cell_chars:
            _cell_too_long(number, index + 1, limits)


def _too_wide(row: int, width: int, limits: ImportLimits) -> None:
    raise LimitExceeded(
        _(
            "Row %(row)s has %(count)s columns; a cohort file has at most %(limit)s "
            "(it names %(known)s)."
        ),
        row=row,
        count=_number(width),
        limit=_number(limits.max_columns),
        known=len(COLUMNS),
    )


def _cell_too_long(row: int, column: int, limits: ImportLimits) -> None:
    raise LimitExceeded(
        _(
            "Row %(row)s, column %(column)s holds more than %(limit)s characters, the most a "
            "cell may hold."
        ),
        row=row,
        column=column,
        limit=_number(limits.max_cell_chars),
    )


def _number(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


NOT_UTF8 = re.compile("[\udc80-\udcff]")  # bytes that are not UTF-8, as errors="surrogateescape"


def _csv_lines(stream: IO[bytes], limits: ImportLimits) -> Iterator[tuple[int, list[str]]]:
    """The CSV's records, read a line at a time: no line (or quoted record) longer than a
    row of max_columns cells of max_cell_chars each is ever held."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    longest = limits.max_line_chars
    record = {"number": 1, "chars": 0}  # the record being read, and its characters so far

    def lines() -> Iterator[str]:
        while line := text.readline(longest + 1):
            record["chars"] += len(line)
            if "\x00" in line:
                raise UnreadableFile(
                    _("This is not a CSV file (it holds binary data); use CSV or .xlsx.")
                )
            if NOT_UTF8.search(line):
                raise UnreadableFile(
                    _("The file is not UTF-8 text (row %(row)s); save it as UTF-8 CSV or .xlsx."),
                    row=record["number"],
                )
            if record["chars"] > longest:
                _csv_row_too_long(record["number"], line, limits)
            yield line

    try:
        for cells in csv.reader(lines()):
            yield record["number"], cells
            record["number"] += 1
            record["chars"] = 0
    except csv.Error as error:
        raise UnreadableFile(
            _("The CSV file cannot be read (row %(row)s): %(error)s."),
            row=record["number"],
            error=str(error),
        ) from error
    finally:
        text.detach()  # the caller's stream stays open


def _csv_row_too_long(number: int, line: str, limits: ImportLimits) -> None:
    """Say which bound a row over max_line_chars breaks, from the part of it that was read."""
    try:
        cells = next(csv.reader([line]), [])
    except csv.Error:
        cells = []
    if len(cells) > limits.max_columns:
        raise LimitExceeded(
            _(
                "Row %(row)s has more than %(limit)s columns; a cohort file has at most "
                "%(limit)s (it names %(known)s)."
            ),
            row=number,
            limit=_number(limits.max_columns),
            known=len(COLUMNS),
        )
    for index, cell in enumerate(cells):
        if len(cell) > limits.max_cell_chars:
            _cell_too_long(number, index + 1, limits)
    raise LimitExceeded(
        _("Row %(row)s is longer than %(limit)s characters; a cell may hold at most %(chars)s."),
        row=number,
        limit=_number(limits.max_line_chars),
        chars=_number(limits.max_cell_chars),
    )


def _check_workbook_archive(stream: IO[bytes], limits: ImportLimits) -> None:
    """Refuse a zip that is not a workbook, or that unpacks to more than the limits allow,
    from its directory alone: before any part is unpacked. (Python's zipfile never unpacks more
    of a part than its directory entry says, so the sizes checked are the sizes read.)"""
    try:
        with zipfile.ZipFile(stream) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as error:
        raise UnreadableFile(XLSX_UNREADABLE, error=str(error)) from error
    names = {part.filename for part in parts}
    if "[Content_Types].xml" not in names or "xl/workbook.xml" not in names:
        raise UnreadableFile(
            _("The file is a zip archive but not an .xlsx workbook; use CSV or .xlsx.")
        )
    total = sum(part.file_size for part in parts)
    if len(parts) > XLSX_MAX_PARTS or total > limits.max_xlsx_bytes:
        raise LimitExceeded(
            _("The .xlsx workbook unpacks to %(size)s, more than the limit of %(limit)s."),
            size=filesizeformat(total),
            limit=filesizeformat(limits.max_xlsx_bytes),
        )
    for part in parts:
        packed = max(part.compress_size, 1)
        if part.file_size > XLSX_RATIO_FLOOR and part.file_size > packed * limits.max_xlsx_ratio:
            raise LimitExceeded(
                _(
                    "The .xlsx workbook's part %(part)s unpacks to %(ratio)s times its packed "
                    "size (at most %(limit)s): it is not an ordinary spreadsheet."
                ),
                part=part.filename[:100],
                ratio=_number(part.file_size // packed),
                limit=_number(limits.max_xlsx_ratio),
            )
    stream.seek(0)


def _xlsx_lines(
    stream: IO[bytes], limits: ImportLimits, deadline: Deadline, *, sheet: str | None = None
) -> Iterator[tuple[int, list[Any]]]:
    """The first sheet's rows (or those of the sheet named `sheet`), streamed, formulas as
    Formula.

    openpyxl's parts are used one by one rather than load_workbook: in read-only mode that
    reads every sheet once more to size it when the sheet does not say its size (a pass over
    all of its XML before the first row, and no row limit or deadline can stop it), and pads
    each row to the width the sheet declares. Here each row is checked (its width first) as
    it is parsed, and reading stops at the first bound broken.
    """
    _check_workbook_archive(stream, limits)
    # Imported here: only .xlsx files need them.
    from openpyxl.reader.excel import ExcelReader
    from openpyxl.styles.stylesheet import apply_stylesheet
    from openpyxl.worksheet._reader import WorkSheetParser
    from openpyxl.xml.constants import SHARED_STRINGS

    try:
        # data_only=False: a formula cell reads as its formula (data type "f"), never as the
        # value a spreadsheet program last cached, or as blank when none was cached.
        reader = ExcelReader(stream, read_only=True, data_only=False, keep_links=False)
        reader.read_manifest()
        strings = reader.package.find(SHARED_STRINGS)
        if strings is not None:
            size = reader.archive.getinfo(strings.PartName[1:]).file_size
            if size > limits.max_xlsx_strings_bytes:
                raise LimitExceeded(
                    _(
                        "The .xlsx workbook's shared strings unpack to %(size)s, more than the "
                        "limit of %(limit)s."
                    ),
                    size=filesizeformat(size),
                    limit=filesizeformat(limits.max_xlsx_strings_bytes),
                )
        reader.read_strings()
        reader.read_workbook()
        apply_stylesheet(reader.archive, reader.wb)
        target = next(
            (
                rel.target
                for found, rel in reader.parser.find_sheets()
                if rel.target in reader.valid_files
                and "chartsheet" not in rel.Type
                and (sheet is None or str(found.name).strip().lower() == sheet)
            ),
            None,
        )
    except UnreadableFile:
        raise
    except Exception as error:  # openpyxl raises many kinds for a damaged workbook
        raise UnreadableFile(XLSX_UNREADABLE, error=str(error)[:200]) from error
    try:
        if target is None and sheet is not None:
            raise NoSuchSheet(_("The .xlsx file has no sheet %(name)s."), name=sheet)
        if target is None:
            raise UnreadableFile(_("The .xlsx file has no sheet."))
        with reader.archive.open(target) as source:
            parser = _bounded_sheet_parser(WorkSheetParser, deadline)(
                source,
                reader.shared_strings,
                data_only=False,
                epoch=reader.wb.epoch,
                date_formats=reader.wb._date_formats,
                timedelta_formats=reader.wb._timedelta_formats,
            )
            for number, cells in parser.parse():
                yield number, _xlsx_row(number, cells, limits)
    except UnreadableFile:
        raise
    except Exception as error:  # a damaged sheet, found as it is read
        raise UnreadableFile(XLSX_UNREADABLE, error=str(error)[:200]) from error
    finally:
        reader.archive.close()


XLSX_MAX_CELLS_PER_ROW = 16_384  # Excel's own limit; each cell's parts count too (x 8)


def _bounded_sheet_parser(base: type, deadline: Deadline) -> type:
    """openpyxl's sheet parser, parsing rows only, in bounded memory.

    Its own parse() keeps every element outside the rows it has read (ElementTree's iterparse
    builds the tree as it goes), so that a sheet of millions of empty elements fills memory,
    and builds a whole row before it yields it. This one drops each element outside a row once
    read, and refuses a row of more than XLSX_MAX_CELLS_PER_ROW cells as soon as it has them;
    it checks the deadline as it goes, rows or not.
    """
    from openpyxl.worksheet._reader import CELL_TAG, ROW_TAG
    from openpyxl.xml.functions import iterparse

    class BoundedSheetParser(base):
        def parse(self) -> Iterator[tuple[int, list[dict[str, Any]]]]:
            stack: list[Any] = []
            in_row, cells, parts, number = False, 0, 0, 0
            for events, (event, element) in enumerate(
                iterparse(self.source, events=("start", "end")), start=1
            ):
                if events % 4096 == 0:
                    deadline.check()
                if event == "start":
                    stack.append(element)
                    if element.tag == ROW_TAG:
                        in_row, cells, parts = True, 0, 0
                        r = element.get("r", "")
                        number = int(r) if r.isdigit() else self.row_counter + 1
                    elif in_row:
                        parts += 1
                        cells += element.tag == CELL_TAG
                        if cells > XLSX_MAX_CELLS_PER_ROW or parts > 16 * XLSX_MAX_CELLS_PER_ROW:
                            raise LimitExceeded(
                                _(
                                    "Row %(row)s of the .xlsx sheet holds more than %(limit)s "
                                    "cells: it is not an ordinary spreadsheet."
                                ),
                                row=number,
                                limit=_number(XLSX_MAX_CELLS_PER_ROW),
                            )
                    continue
                stack.pop()
                if element.tag == ROW_TAG:
                    in_row = False
                    row = self.parse_row(element)
                    self.row_dimensions.clear()  # kept for each formatted row: not needed
                    yield row
                if not in_row and stack:
                    stack[-1].clear()  # the parent's children read so far: all done with

    return BoundedSheetParser


def _xlsx_row(number: int, cells: list[dict[str, Any]], limits: ImportLimits) -> list[Any]:
    """A parsed row's values by column, up to its last non-blank cell (refused when wider)."""
    width = max((c["column"] for c in cells if c["value"] not in (None, "")), default=0)
    if width > limits.max_columns:
        _too_wide(number, width, limits)
    values: list[Any] = [None] * width
    for cell in cells:
        if 1 <= cell["column"] <= width:
            values[cell["column"] - 1] = _xlsx_value(cell)
    return values


def _xlsx_value(cell: dict[str, Any]) -> Any:
    value = cell["value"]
    if value is None or cell["data_type"] != "f":
        return value
    # A formula: "=1+4", or an array or data-table formula object.
    text = value if isinstance(value, str) else getattr(value, "text", None) or "="
    return Formula(str(text))


def _text(cell: Any) -> str:
    if cell is None:
        return ""
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    if isinstance(cell, datetime):
        return cell.date().isoformat()
    if isinstance(cell, date):
        return cell.isoformat()
    return str(cell).strip()


# --- parsing cells -----------------------------------------------------------------------------
class CellError(ValueError):
    pass


DATE_FORM = re.compile(r"^\d{4}-\d{2}-\d{2}$")
WHOLE_NUMBER = re.compile(r"^[+-]?\d+(\.0*)?$")


def parse_cell(column: Column, cell: Any) -> Any:
    """The value of one cell, or None when blank; CellError says what would be valid."""
    text = _text(cell)
    if text == "":
        return None
    match column.kind:
        case "text" | "site":
            return import_text(text)  # the ' an export put before a formula-like text
        case "enum":
            for value in column.values:
                if text.lower() == value.lower():
                    return value
            raise CellError(f'"{text}" is not one of: {", ".join(column.values)}')
        case "integer" | "grade":
            if not WHOLE_NUMBER.match(text):
                raise CellError(f'"{text}" is not a whole number')
            number = int(float(text))
            if column.kind == "grade" and not 0 <= number <= 5:
                raise CellError(f"{number} is not a grade: give 0 to 5 (blank if unknown)")
            return number
        case "number":
            try:
                number = Decimal(text)
            except InvalidOperation:
                number = None
            if number is None or not number.is_finite():
                raise CellError(f'"{text}" is not a number')
            return number
        case "date":
            if isinstance(cell, datetime):
                return cell.date()
            if isinstance(cell, date):
                return cell
            if not DATE_FORM.match(text):
                raise CellError(f'"{text}" is not a date in the form YYYY-MM-DD')
            try:
                return date.fromisoformat(text)
            except ValueError as error:
                raise CellError(f"{text} is not a real date ({error})") from error
    raise AssertionError(column.kind)


# --- problems ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    row: int
    column: str
    message: str | Message  # a Message (or lazy text) shows in the reader's language
    labs: bool = False  # a problem of the laboratory file: "labs row R, column C: ..."

    def __str__(self) -> str:
        # The run's log and the command print problems in English (see import_cohort).
        with translation.override("en"):
            where = "labs row" if self.labs else "row"
            return f"{where} {self.row}, column {self.column}: {self.message}"


@dataclass
class ParsedRow:
    number: int
    values: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    # Required columns missing from the header: reported once, against row 1.
    absent: set[str] = field(default_factory=set)
    labs: bool = False  # a row of the laboratory file

    def add(self, column: str, message: str | Message) -> None:
        if not isinstance(message, Message | Promise):
            message = str(message)
        if any(p.column == column and p.message == message for p in self.problems):
            return
        self.problems.append(Problem(self.number, column, message, labs=self.labs))

    def reported(self, column: str) -> bool:
        return column in self.absent or any(problem.column == column for problem in self.problems)

    def get(self, column: str) -> Any:
        return self.values.get(column)


def check_header(
    header: list[str], *, formulas: Collection[int] = (), labs: bool = False
) -> tuple[list[Problem], dict[int, Column]]:
    """Unknown, unnamed, repeated and missing columns; and which cell index is which column.

    `formulas` are the indexes of header cells that hold a formula (an .xlsx): each a problem.
    `labs`: the header of the laboratory file (LAB_COLUMNS).
    """
    columns = LAB_COLUMNS if labs else COLUMNS
    by_name = {column.name: column for column in columns}
    problems: list[Problem] = []
    positions: dict[int, Column] = {}
    seen: set[str] = set()

    def problem(column: str, message: str | Message) -> None:
        problems.append(Problem(1, column, message, labs=labs))

    for index, name in enumerate(header):
        label = name or f"{index + 1}"
        if index in formulas:
            problem(f"{index + 1}", Message(FORMULA))
        elif name == "":
            problem(label, "this column has no name")
        elif name in seen:
            problem(label, "this column appears twice")
        elif name not in by_name:
            problem(
                label,
                "unknown column (a typo would silently drop data); the columns are: "
                + ", ".join(by_name),
            )
        else:
            positions[index] = by_name[name]
        seen.add(name)
    for column in columns:
        if column.required and column.name not in seen:
            problem(column.name, "required column missing from the header")
    return problems, positions


def _parse_cells(
    row: ParsedRow, cells: list[Any], positions: dict[int, Column], *, width: int
) -> None:
    for index, cell in enumerate(cells):
        column = positions.get(index)
        if isinstance(cell, Formula):
            row.add(column.name if column else str(index + 1), Message(FORMULA))
            continue
        if column is None:
            if index >= width and _text(cell):
                row.add(str(index + 1), "a value beyond the last column of the header")
            continue
        try:
            row.values[column.name] = parse_cell(column, cell)
        except CellError as error:
            row.add(column.name, str(error))


def parse_lab_row(
    number: int, cells: list[Any], positions: dict[int, Column], *, width: int
) -> ParsedRow:
    """The values of one row of the laboratory file (LAB_COLUMNS)."""
    row = ParsedRow(number, labs=True)
    _parse_cells(row, cells, positions, width=width)
    present = {column.name for column in positions.values()}
    row.absent = {column.name for column in LAB_COLUMNS if column.required} - present
    for name in LAB_VALUE_REQUIRED:
        if name in present and row.get(name) is None and not row.reported(name):
            row.add(name, "a value is required")
    return row


def parse_row(
    number: int, cells: list[Any], positions: dict[int, Column], *, width: int
) -> ParsedRow:
    """The values of one row; `width` is the number of columns the header names."""
    row = ParsedRow(number)
    _parse_cells(row, cells, positions, width=width)
    present = {column.name for column in positions.values()}
    row.absent = {column.name for column in COLUMNS if column.required} - present
    for column in COLUMNS:
        missing = column.name in present and row.values.get(column.name) is None
        if column.name in VALUE_REQUIRED and missing and not row.reported(column.name):
            row.add(column.name, "a value is required")
    for first, second in PAIRED:
        for given, missing in ((first, second), (second, first)):
            if row.get(given) is not None and row.get(missing) is None:
                if not row.reported(missing) and missing in present:
                    row.add(missing, f"required with {given}")
                elif missing not in present:
                    row.add(given, f"needs the column {missing}")
    mrd_alone = row.get("mrd_negative") is not None and row.get("response") is None
    if mrd_alone and not row.reported("response"):
        row.add("mrd_negative", "belongs to a response assessment: give response and its date")
    death_date, last_contact = row.get("death_date"), row.get("last_contact_date")
    if death_date and last_contact and last_contact > death_date:
        row.add(
            "last_contact_date",
            f"for a patient who died this is the date of death ({death_date.isoformat()}) "
            "or earlier",
        )
    return row


# --- import ------------------------------------------------------------------------------------
# Which file column each model field's messages belong to; "" is the record's own column.
FIELD_COLUMNS: dict[type[models.Model], dict[str, str]] = {
    Patient: {
        "": "study_id",
        "site": "site",
        "sex": "sex",
        "year_of_birth": "year_of_birth",
        "ph_status": "ph_status",
    },
    Treatment: {
        "": "treatment_start",
        "patient": "study_id",
        "day0": "treatment_start",
        "arm": "arm",
        "product": "product",
        "disease_burden": "disease_burden",
        "bm_blast_pct": "bm_blast_pct",
        "relapse_status": "relapse_status",
        "prior_hsct": "prior_hsct",
        "crs_status": "crs_grade",
        "icans_status": "icans_grade",
    },
    CrsEpisode: {
        "": "crs_grade",
        "grade": "crs_grade",
        "grading_system": "crs_grading_system",
        "cause": "death_cause",
    },
    IcansEpisode: {"": "icans_grade", "grade": "icans_grade", "cause": "death_cause"},
    ResponseAssessment: {
        "": "response",
        "date": "response_date",
        "mrd_reported": "mrd_negative",
    },
    Transplant: {"": "hsct_type", "date": "hsct_date"},
    Relapse: {"": "relapse_date"},
    FollowUpContact: {"": "last_contact_date"},
    Death: {"": "death_date", "cause": "death_cause"},
}
# The columns each record is built from: when one of them is already reported, the record is
# checked but not saved.
RECORD_COLUMNS: dict[type[models.Model], tuple[str, ...]] = {
    Patient: ("study_id", "site", "sex", "year_of_birth", "ph_status"),
    Treatment: (
        "arm",
        "treatment_start",
        "product",
        "disease_burden",
        "bm_blast_pct",
        "relapse_status",
        "prior_hsct",
        "crs_grade",
        "icans_grade",
    ),
    CrsEpisode: ("crs_grade", "crs_grading_system"),
    IcansEpisode: ("icans_grade",),
    ResponseAssessment: ("response", "response_date", "mrd_negative"),
    Transplant: ("hsct_type", "hsct_date"),
    Relapse: ("relapse_date",),
    FollowUpContact: ("last_contact_date",),
    Death: ("death_date", "death_cause"),
}
PARENT_FIELDS = {"patient", "treatment", "site"}


@dataclass
class ImportResult:
    run: ImportRun
    problems: list[Problem]
    rows: int
    patients_created: int
    dry_run: bool
    lab_rows: int = 0  # rows of the laboratory file (None read: 0)
    lab_values_created: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def system_user(username: str) -> User:
    """The administrator that commands write as when no --user is given (nobody signs in as it)."""
    user, created = User.objects.get_or_create(
        username=username, defaults={"role": Role.ADMINISTRATOR}
    )
    if created:
        user.set_unusable_password()
        user.save()
    elif not user.is_administrator:
        raise PermissionDenied(
            f"User {username!r} exists and is not an administrator: name the user with --user."
        )
    return user


logger = logging.getLogger(__name__)

CONCURRENT_IMPORT = (
    "another import saved the same patients meanwhile: nothing of this file was saved"
)


def import_cohort(
    content: bytes | IO[bytes],
    *,
    name: str,
    user: User,
    dry_run: bool = False,
    create_sites: bool = False,
    via: str = "command",
    limits: ImportLimits | None = None,
    deadline: Deadline | None = None,
    labs: bytes | IO[bytes] | None = None,
    labs_name: str = "",
    labs_sheet: bool = True,
) -> ImportResult:
    """Import a cohort file, all or nothing; raises UnreadableFile (logged) for a bad file.

    `content` is the file's bytes or a seekable binary stream (an upload, an open file), read
    as a stream within `limits` (default: the settings) and `deadline` (from them). `labs` is
    the laboratory file that goes with it (LAB_COLUMNS; `labs_name` its name), imported after
    the patients in the same transaction; without one, an .xlsx's sheet "labs" is it (unless
    `labs_sheet` is False).
    """
    if not can(user, Action.IMPORT):
        raise PermissionDenied("Only data managers and administrators may import a cohort file.")
    limits = limits or ImportLimits.from_settings()
    deadline = deadline or Deadline(limits.max_seconds)
    stream = _binary_stream(content)
    run = import_runs.start(
        user=user,
        file_name=Path(name).name[:255],
        file_sha256=_sha256(stream, limits),
        dry_run=dry_run,
        create_sites=create_sites,
        via=via,
    )
    try:
        table = read_table(stream, limits=limits, deadline=deadline)
    except UnreadableFile as error:
        _finish(run, ImportRun.Outcome.UNREADABLE, [Problem(1, "-", error.message)], rows=0)
        raise
    try:
        labs_table = read_labs(stream, labs, limits=limits, deadline=deadline, sheet=labs_sheet)
    except UnreadableFile as error:
        problem = Problem(1, "-", error.message, labs=True)
        _finish(run, ImportRun.Outcome.UNREADABLE, [problem], rows=len(table.rows))
        raise UnreadableFile(
            LABS_UNREADABLE, name=Path(labs_name or name).name, error=error.message
        ) from error
    reason = f"import of {run.file_name} (run {run.pk}) by {user.username}"
    # Messages are stored and printed in English, like the data-quality queries.
    with translation.override("en"):
        try:
            problems, created, lab_values = _import_table(
                table,
                user=user,
                reason=reason,
                dry_run=dry_run,
                create_sites=create_sites,
                deadline=deadline,
                labs_table=labs_table,
            )
        except IntegrityError:
            # Another import saved the same patients meanwhile (the database's unique
            # constraint refused them here): this one is rejected, nothing of it saved.
            problems, created, lab_values = [Problem(1, "study_id", CONCURRENT_IMPORT)], 0, 0
        except BaseException:
            _finish_failed(run, rows=len(table.rows))
            raise
    if problems:
        outcome, created, lab_values = ImportRun.Outcome.REJECTED, 0, 0
    elif dry_run:
        outcome, created, lab_values = ImportRun.Outcome.VALIDATED, 0, 0
    else:
        outcome = ImportRun.Outcome.IMPORTED
    _finish(run, outcome, problems, rows=len(table.rows), created=created)
    lab_rows = len(labs_table.rows) if labs_table is not None else 0
    return ImportResult(run, problems, len(table.rows), created, dry_run, lab_rows, lab_values)


LABS_SHEET = "labs"
LABS_UNREADABLE = _("The laboratory file %(name)s: %(error)s")


def _is_xlsx(stream: IO[bytes]) -> bool:
    stream.seek(0)
    start = stream.read(len(XLSX_MAGIC))
    stream.seek(0)
    return start == XLSX_MAGIC


def read_labs(
    main: IO[bytes],
    labs: bytes | IO[bytes] | None,
    *,
    limits: ImportLimits,
    deadline: Deadline,
    sheet: bool = True,
) -> Table | None:
    """The laboratory file's table: `labs` (its sheet "labs" if it is a workbook that has one,
    else its first sheet), or without it (and with `sheet`) the cohort workbook's sheet "labs";
    None for none."""
    if labs is None:
        if not sheet or not _is_xlsx(main):
            return None
        try:
            return read_table(main, limits=limits, deadline=deadline, sheet=LABS_SHEET, labs=True)
        except NoSuchSheet:
            return None
    stream = _binary_stream(labs)
    if _is_xlsx(stream):
        try:
            return read_table(stream, limits=limits, deadline=deadline, sheet=LABS_SHEET, labs=True)
        except NoSuchSheet:
            pass
    return read_table(stream, limits=limits, deadline=deadline, labs=True)


def _finish(
    run: ImportRun, outcome: str, problems: list[Problem], *, rows: int, created: int = 0
) -> None:
    run.outcome = outcome
    run.finished_at = timezone.now()
    run.rows = rows
    run.patients_created = created
    run.problem_count = len(problems)
    run.problems = "\n".join(str(problem) for problem in problems[:200])
    try:
        run.save()
    finally:
        import_runs.release(run)


def _finish_failed(run: ImportRun, *, rows: int) -> None:
    """The import failed (the database went away, a bug): its transaction rolled back. If the
    database cannot record that either, the run is closed later (import_runs.close_abandoned)
    and the import's own error is the one raised."""
    try:
        _finish(run, ImportRun.Outcome.FAILED, [], rows=rows)
    except DatabaseError:
        logger.warning("import run %s failed; the database did not record it: closed later", run.pk)


def _sha256(stream: IO[bytes], limits: ImportLimits) -> str:
    """The file's SHA-256, read in chunks; blank for a file over the size limit (refused)."""
    if stream_size(stream) > limits.max_bytes:
        return ""
    digest = hashlib.sha256()
    while chunk := stream.read(1024 * 1024):
        digest.update(chunk)
    stream.seek(0)
    return digest.hexdigest()


def _import_table(
    table: Table,
    *,
    user: User,
    reason: str,
    dry_run: bool,
    create_sites: bool,
    deadline: Deadline | None = None,
    labs_table: Table | None = None,
) -> tuple[list[Problem], int, int]:
    """(problems, patients created, laboratory values created) of the file, written in one
    transaction, rolled back on any problem or for a dry run."""
    deadline = deadline or Deadline(ImportLimits.from_settings().max_seconds)
    header_problems, positions = check_header(table.header, formulas=table.formulas)
    width = len(table.header)
    parsed = []
    for number, cells in table.rows:
        if deadline.expired():
            too_slow = Message(TOO_SLOW, seconds=_number(deadline.seconds))
            return [Problem(number, "-", too_slow)], 0, 0
        parsed.append(parse_row(number, cells, positions, width=width))
    problems = list(header_problems)
    created = lab_values = 0
    stopped = False
    # All or nothing: one transaction, no savepoint per record, the audit rows and the
    # data-quality queries written together at the end (registry.services).
    with (
        transaction.atomic(),
        services.batched_writes(),
        services.queries_refreshed_together(),
    ):
        sites = _Sites(user=user, create=create_sites)
        first_row: dict[tuple[str, str], int] = {}
        imports: dict[tuple[str, str], _RowImport] = {}  # by (site, study ID) key
        for row in parsed:
            if deadline.expired():
                # The transaction is not held past the time an import may take: stopped here,
                # and (a problem) everything rolled back.
                problems.append(
                    Problem(row.number, "-", Message(TOO_SLOW, seconds=_number(deadline.seconds)))
                )
                stopped = True
                break
            site = sites.resolve(row)
            study_id = row.get("study_id")
            if study_id is not None and row.get("site") is not None:
                key = (identifier_key(row.get("site")), identifier_key(study_id))
                if key in first_row:
                    row.add(
                        "study_id",
                        f"study ID {study_id} appears twice in the file (first on row "
                        f"{first_row[key]})",
                    )
                    problems += row.problems
                    continue
                first_row[key] = row.number
            row_import, patient = _RowImport(row, user=user, reason=reason), None
            if study_id is not None and row.get("site") is not None:
                imports[key] = row_import
            try:
                # The rules across the patient's records, once the row's records are written.
                with services.patient_checks_deferred():
                    patient = row_import.run(site)
            except ValidationError as error:
                row_import.report_patient_rules(error)
            if patient is not None and not row.problems:
                created += 1
            problems += row.problems
        if labs_table is not None and not stopped:
            labs_import = _LabsImport(
                labs_table, imports, sites=sites, user=user, reason=reason, deadline=deadline
            )
            lab_problems, lab_values = labs_import.run()
            problems += lab_problems
        if problems or dry_run:
            transaction.set_rollback(True)
    return problems, created, lab_values


class _Sites:
    """Site codes of the file, matched case-insensitively; created with --create-sites."""

    def __init__(self, *, user: User, create: bool) -> None:
        self.user, self.create = user, create
        self.by_code = {identifier_key(site.code): site for site in Site.objects.all()}

    def resolve(self, row: ParsedRow) -> Site | None:
        code = row.get("site")
        if code is None:
            return None
        site = self.by_code.get(identifier_key(code))
        if site is None:
            if not self.create:
                row.add(
                    "site", f"no site has the code {code} (import with --create-sites to add it)"
                )
                return None
            if not can(self.user, Action.MANAGE_USERS):
                row.add("site", f"no site has the code {code}; only an administrator may add sites")
                return None
            try:
                validate_identifier(code)
            except ValidationError as error:
                row.add("site", error.messages[0])
                return None
            site = Site.objects.create(code=written_form(code), name=written_form(code))
            self.by_code[identifier_key(code)] = site
        if not can(self.user, Action.IMPORT, site.pk):
            row.add("site", f"you may not import patients at site {site.code}")
            return None
        return site


class _RowImport:
    """One file row: its records written through registry.services, each problem kept."""

    def __init__(self, row: ParsedRow, *, user: User, reason: str) -> None:
        self.row, self.user, self.reason = row, user, reason
        # The row's treatment (its laboratory values hang off it), and whether it was saved.
        self.treatment: Treatment | None = None
        self.treatment_saved = False
        # A cell that did not parse has its message; the model's "cannot be blank" would repeat it.
        self.unparsed = {problem.column for problem in row.problems} | row.absent

    def run(self, site: Site | None) -> Patient | None:
        v = self.row.get
        patient = Patient(
            site=site,
            study_id=v("study_id") or "",
            sex=v("sex") or "",
            year_of_birth=v("year_of_birth"),
            ph_status=v("ph_status") or PhStatus.UNKNOWN,
        )
        patient_saved = self._save(patient, parent_saved=site is not None)
        crs_grade, icans_grade = v("crs_grade"), v("icans_grade")
        treatment = Treatment(
            patient=patient,
            arm=v("arm") or "",
            day0=v("treatment_start"),
            product=v("product") or "",
            disease_burden=v("disease_burden") or "",
            bm_blast_pct=v("bm_blast_pct"),
            relapse_status=v("relapse_status") or "",
            prior_hsct=_yes_no(v("prior_hsct")),
            crs_status=_status(crs_grade),
            icans_status=_status(icans_grade),
        )
        saved = self._save(treatment, parent_saved=patient_saved is not None)
        self.treatment, self.treatment_saved = treatment, saved is not None
        fatal = None
        cause = v("death_cause")
        for model, grade in ((CrsEpisode, crs_grade), (IcansEpisode, icans_grade)):
            if not grade:
                continue
            episode = model(
                treatment=treatment,
                onset=treatment.day0,  # the file holds no onset: day 0 is the earliest it can be
                recorded_grade=grade,
                grading_system=(
                    v("crs_grading_system") or GradingSystem.ASTCT2019
                    if model is CrsEpisode
                    else GradingSystem.ASTCT2019
                ),
            )
            if grade == 5 and cause == (
                DeathCause.CRS if model is CrsEpisode else DeathCause.ICANS
            ):
                # DOMAIN.md: grade 5 if and only if death from it. services.death_record saves
                # the fatal episode with the death, in one transaction; version 0 + 1 = 1.
                episode.version = 0
                fatal = episode
                continue
            if saved is not None:  # an episode with no saved treatment says nothing more
                self._save(episode, parent_saved=True)
        if v("response") is not None:
            self._save(
                ResponseAssessment(
                    treatment=treatment,
                    date=v("response_date"),
                    response=v("response"),
                    mrd_reported=_mrd_reported(v("mrd_negative")),
                ),
                parent_saved=saved is not None,
            )
        if v("hsct_type") is not None:
            self._save(
                Transplant(treatment=treatment, date=v("hsct_date"), type=v("hsct_type")),
                parent_saved=saved is not None,
            )
        if v("relapse_date") is not None:
            self._save(
                Relapse(treatment=treatment, date=v("relapse_date"), kind=RelapseKind.MORPHOLOGIC),
                parent_saved=saved is not None,
            )
        death_date, last_contact = v("death_date"), v("last_contact_date")
        if last_contact is not None and (death_date is None or last_contact < death_date):
            self._save(
                FollowUpContact(
                    treatment=treatment, date=last_contact, disease_status=self._disease_status()
                ),
                parent_saved=saved is not None,
            )
        if death_date is not None:
            death = Death(patient=patient, date=death_date, cause=cause or "")
            if patient_saved is None or (fatal is not None and saved is None):
                self._check_unsaved(death)
            else:
                self._death(death, fatal=fatal)
        return patient_saved

    def report_patient_rules(self, error: ValidationError) -> None:
        """Grade 5 and the cause of death, checked once the row's records are written (the
        messages are in English here: see import_cohort)."""
        for field_name, messages in error.message_dict.items():
            for message in messages:
                if field_name == "cause":
                    column = "death_cause"
                elif "ICANS" in message:
                    column = "icans_grade"
                else:
                    column = "crs_grade"
                self.row.add(column, message)

    def _disease_status(self) -> str:
        response = self.row.get("response")
        if self.row.get("relapse_date") is not None or response == Response.NR:
            return DiseaseStatus.RELAPSED
        if response in (None, Response.NOT_EVALUABLE):
            return DiseaseStatus.UNKNOWN
        return DiseaseStatus.REMISSION

    def _save(self, record: models.Model, *, parent_saved: bool) -> Any:
        """Save through the services; with a failed parent or cell, only check the record."""
        model = type(record)
        if not parent_saved or any(self.row.reported(c) for c in RECORD_COLUMNS[model]):
            self._check_unsaved(record)
            return None
        try:
            return services.record_save(record, user=self.user, reason=self.reason)
        except ValidationError as error:
            self._report(model, error)
        except PermissionDenied as error:
            self.row.add("site", str(error))
        return None  # refused before it was written

    def _death(self, death: Death, *, fatal: CrsEpisode | IcansEpisode | None) -> None:
        if any(self.row.reported(column) for column in RECORD_COLUMNS[Death]):
            self._check_unsaved(death)
            return
        try:
            services.death_record(
                patient=death.patient,
                user=self.user,
                date=death.date,
                cause=death.cause,
                reason=self.reason,
                fatal_episode=fatal,
            )
        except ValidationError as error:
            self._report(Death, error)
        except PermissionDenied as error:
            self.row.add("site", str(error))

    def _check_unsaved(self, record: models.Model) -> None:
        """The record's own rules, when it cannot be saved (its parent or a cell failed)."""
        try:
            services.full_validate(record)
        except ValidationError as error:
            self._report(type(record), error, skip=PARENT_FIELDS)
        except (ValueError, models.ObjectDoesNotExist):
            pass  # a rule that needs the saved parent: the parent's problem is reported

    def _report(self, model: type, error: ValidationError, *, skip: Iterable[str] = ()) -> None:
        columns = FIELD_COLUMNS[model]
        messages = error.message_dict if hasattr(error, "error_dict") else {"": error.messages}
        for field_name, field_messages in messages.items():
            if field_name in skip:
                continue
            column = columns.get(field_name)
            if column is None and field_name == "grade":
                column = "crs_grade" if self.row.get("crs_grade") == 5 else "icans_grade"
            column = column or columns[""]
            if column in self.unparsed:
                continue
            for message in field_messages:
                self.row.add(column, message)


class _LabsImport:
    """The laboratory file: its rows grouped by patient, each patient's series written through
    services.lab_series_save (one audited write per treatment, ICAHT derived on it), every
    problem kept as `labs row R, column C: message`. A row must name a patient of the cohort
    file (the file carries their series, not other patients')."""

    def __init__(
        self,
        table: Table,
        imports: dict[tuple[str, str], _RowImport],
        *,
        sites: _Sites,
        user: User,
        reason: str,
        deadline: Deadline,
    ) -> None:
        self.table, self.imports, self.sites = table, imports, sites
        self.user, self.reason, self.deadline = user, reason, deadline

    def run(self) -> tuple[list[Problem], int]:
        header_problems, positions = check_header(
            self.table.header, formulas=self.table.formulas, labs=True
        )
        width = len(self.table.header)
        parsed: list[ParsedRow] = []
        series: dict[tuple[str, str], list[ParsedRow]] = {}
        for number, cells in self.table.rows:
            if self.deadline.expired():
                return [self._too_slow(number)], 0
            row = parse_lab_row(number, cells, positions, width=width)
            parsed.append(row)
            site, study_id = row.get("site"), row.get("study_id")
            if site is None or study_id is None:
                continue
            key = (identifier_key(site), identifier_key(study_id))
            if key in self.imports:
                series.setdefault(key, []).append(row)
            else:
                row.add("study_id", self._not_in_the_file(site, study_id))
        created = 0
        for key, rows in series.items():
            if self.deadline.expired():
                return [self._too_slow(rows[0].number)], 0
            created += self._series(self.imports[key], [row for row in rows if not row.problems])
        problems = header_problems + [problem for row in parsed for problem in row.problems]
        return problems, created

    def _too_slow(self, number: int) -> Problem:
        message = Message(TOO_SLOW, seconds=_number(self.deadline.seconds))
        return Problem(number, "-", message, labs=True)

    def _not_in_the_file(self, site: str, study_id: str) -> str:
        known = self.sites.by_code.get(identifier_key(site))
        if known is not None and can(self.user, Action.VIEW, known.pk):
            exists = Patient.objects.filter(
                site=known, study_id_key=identifier_key(study_id)
            ).exists()
            if exists:
                return (
                    f"patient {study_id} at site {site} is in the registry but not in the cohort "
                    "file: the laboratory file carries the series of the file's own patients "
                    "(enter the others on the treatment's page or through the API)"
                )
        return f"no patient {study_id} at site {site} in the cohort file"

    def _series(self, row_import: _RowImport, rows: list[ParsedRow]) -> int:
        """Write one patient's rows (those whose cells parsed); the number of values written."""
        if not rows:
            return 0
        values = [{name: row.get(name) for name in ("date", *LAB_FIELDS)} for row in rows]
        treatment = row_import.treatment
        if not row_import.treatment_saved or treatment is None:
            # The patient's row was refused: its laboratory values are checked, not written.
            if treatment is not None:
                for row, fields in zip(rows, values, strict=True):
                    self._check_unsaved(row, LabValue(treatment=treatment, **fields))
            return 0
        try:
            written = services.lab_series_save(
                treatment=treatment, rows=values, user=self.user, reason=self.reason
            )
        except services.LabSeriesRefused as refused:
            for index, columns in refused.rows.items():
                for column, messages in columns.items():
                    for message in messages:
                        rows[index].add(_lab_column(column), message)
            return 0
        except ValidationError as error:  # a rule across the patient's records
            for column, messages in error.message_dict.items():
                for message in messages:
                    rows[0].add(_lab_column(column), message)
            return 0
        except PermissionDenied as error:
            rows[0].add("site", str(error))
            return 0
        return len(written)

    def _check_unsaved(self, row: ParsedRow, lab: LabValue) -> None:
        try:
            services.full_validate(lab)
        except ValidationError as error:
            for column, messages in error.message_dict.items():
                if column in PARENT_FIELDS:
                    continue
                for message in messages:
                    row.add(_lab_column(column), message)
        except (ValueError, TypeError, models.ObjectDoesNotExist):
            pass  # a rule that needs the saved treatment: the patient's row is refused anyway


def _lab_column(field_name: str) -> str:
    """The laboratory file's column of a LabValue field's message (the row's date otherwise)."""
    return field_name if field_name in LAB_COLUMN_BY_NAME else "date"


def _yes_no(value: str | None) -> bool | None:
    return None if value is None else value == "yes"


def _status(grade: int | None) -> str:
    if grade is None:
        return YesNoUnknown.UNKNOWN
    return YesNoUnknown.YES if grade >= 1 else YesNoUnknown.NO


def _mrd_reported(value: str | None) -> str:
    if value is None:
        return ""
    return MrdStatus.NEGATIVE if value == "yes" else MrdStatus.POSITIVE


# --- export ------------------------------------------------------------------------------------
EXPORT_CHUNK = 2000
RESPONSE_RANK = {
    Response.CR: 0,
    Response.CRI: 1,
    Response.PR: 2,
    Response.NR: 3,
    Response.NOT_EVALUABLE: 4,
}


def export_allowed(user: User, *, deidentify: bool) -> bool:
    action = Action.EXPORT_DEIDENTIFIED if deidentify else Action.EXPORT_IDENTIFIED
    return can(user, action)


def analysis_patients(*, user: User) -> models.QuerySet[Patient]:
    """The user's patients with an index treatment, in a stable order."""
    return (
        records_visible_to(Patient, user=user)
        .filter(Exists(Treatment.objects.filter(patient=OuterRef("pk"))))
        .order_by("site__code", "study_id", "pk")
    )


def analysis_rows(*, user: User) -> Iterator[dict[str, Any]]:
    """One row per patient of the analysis set, in the order of analysis_patients.

    The patients are read in keyset pages of EXPORT_CHUNK (site by site in code order, then by
    study ID, which is unique within a site), and each page's records with one `.values_list()`
    query per table, filtered by the page's range of study IDs: a fixed number of queries per
    page, and memory that does not grow with the registry.
    """
    patients = analysis_patients(user=user)
    sites = (
        Site.objects.filter(pk__in=patients.values("site_id"))
        .order_by("code", "pk")
        .values_list("pk", "code")
    )
    for site_id, code in sites:
        in_site = patients.filter(site_id=site_id).order_by("study_id", "pk")
        last_study_id = None
        while True:
            page = in_site if last_study_id is None else in_site.filter(study_id__gt=last_study_id)
            fields = ("pk", "study_id", "sex", "year_of_birth", "ph_status")
            page_patients = list(page.values_list(*fields)[:EXPORT_CHUNK])
            if not page_patients:
                break
            # The page is every patient of the site with a study ID in (last_study_id, its
            # last]: its records are found by that range (3 parameters, not a list of IDs).
            page_range = {"site_id": site_id, "study_id__lte": page_patients[-1][1]}
            if last_study_id is not None:
                page_range["study_id__gt"] = last_study_id
            records = _PageRecords.read(page_range)
            for patient in page_patients:
                yield analysis_row(patient, code, records)
            if len(page_patients) < EXPORT_CHUNK:
                break
            last_study_id = page_patients[-1][1]


# The records of a page as plain tuples; the field names are those of the models, so that the
# rules below read them as they would read model instances.
class Episode(NamedTuple):
    pk: int
    derived_grade: int | None
    recorded_grade: int | None
    grading_system: str

    # The grade analytics use, defined once on the model (ToxicityEpisode.grade).
    grade = CrsEpisode.grade


class Assessment(NamedTuple):
    pk: int
    date: date
    response: str
    mrd_status: str


class HsctRecord(NamedTuple):
    pk: int
    date: date
    type: str


TREATMENT_FIELDS = (
    "pk",
    "patient_id",
    "arm",
    "day0",
    "product",
    "disease_burden",
    "bm_blast_pct",
    "relapse_status",
    "prior_hsct",
    "crs_status",
    "icans_status",
)


@dataclass
class _PageRecords:
    """A page of patients' records, keyed by patient (or by their first treatment)."""

    first_treatments: dict[int, tuple]  # patient pk -> TREATMENT_FIELDS, earliest day 0 first
    deaths: dict[int, tuple[date, str]]
    crs: dict[int, list[Episode]]
    icans: dict[int, list[Episode]]
    responses: dict[int, list[Assessment]]
    transplants: dict[int, list[HsctRecord]]
    first_relapses: dict[int, date]  # treatment pk -> its first relapse
    last_contacts: dict[int, date]  # patient pk -> the last contact under any of its treatments

    @classmethod
    def read(cls, patients: dict[str, Any]) -> _PageRecords:
        """The records of the patients selected by `patients` (lookups on Patient).

        Records of patients outside the page (none, or some that analysis_patients leaves
        out) are read but not looked up: the rows are those of the page's patients.
        """

        def of(model: type[models.Model], path: str) -> models.QuerySet:
            return model.objects.filter(**{f"{path}__{k}": v for k, v in patients.items()})

        first: dict[int, tuple] = {}
        patient_of: dict[int, int] = {}
        for treatment in (
            of(Treatment, "patient")
            .order_by("patient_id", "day0", "pk")
            .values_list(*TREATMENT_FIELDS)
        ):
            patient_of[treatment[0]] = treatment[1]
            first.setdefault(treatment[1], treatment)
        last_contacts: dict[int, date] = {}
        for treatment_id, last in (
            of(FollowUpContact, "treatment__patient")
            .order_by()
            .values("treatment_id")
            .annotate(last=Max("date"))
            .values_list("treatment_id", "last")
        ):
            patient = patient_of[treatment_id]
            if patient not in last_contacts or last > last_contacts[patient]:
                last_contacts[patient] = last
        grades = ("treatment_id", "pk", "derived_grade", "recorded_grade", "grading_system")

        def by_treatment(model: type[models.Model], fields: tuple[str, ...], record: type):
            """The model's rows as `record` tuples (all fields but the first), by treatment."""
            grouped: dict[int, list] = {}
            rows = of(model, "treatment__patient").order_by().values_list(*fields)
            for treatment_id, *values in rows:
                grouped.setdefault(treatment_id, []).append(record(*values))
            return grouped

        return cls(
            first_treatments=first,
            deaths={
                patient: (day, cause)
                for patient, day, cause in of(Death, "patient").values_list(
                    "patient_id", "date", "cause"
                )
            },
            crs=by_treatment(CrsEpisode, grades, Episode),
            icans=by_treatment(IcansEpisode, grades, Episode),
            responses=by_treatment(
                ResponseAssessment,
                ("treatment_id", "pk", "date", "response", "mrd_status"),
                Assessment,
            ),
            transplants=by_treatment(
                Transplant, ("treatment_id", "pk", "date", "type"), HsctRecord
            ),
            first_relapses=dict(
                of(Relapse, "treatment__patient")
                .order_by()
                .values("treatment_id")
                .annotate(first=Min("date"))
                .values_list("treatment_id", "first")
            ),
            last_contacts=last_contacts,
        )


def analysis_row(patient: tuple, site: str, records: _PageRecords) -> dict[str, Any]:
    """The flat-file values of one patient's first index treatment (SAP.md section 1).

    `patient` is (pk, study_id, sex, year_of_birth, ph_status) and `site` its site's code.
    """
    patient_id, study_id, sex, year_of_birth, ph_status = patient
    (
        treatment_id,
        _,
        arm,
        day0,
        product,
        disease_burden,
        bm_blast_pct,
        relapse_status,
        prior_hsct,
        crs_status,
        icans_status,
    ) = records.first_treatments[patient_id]
    death = records.deaths.get(patient_id)
    crs_grade, crs_system = worst_grade(crs_status, records.crs.get(treatment_id, ()))
    icans_grade, _ = worst_grade(icans_status, records.icans.get(treatment_id, ()))
    response = best_response(records.responses.get(treatment_id, []), day0=day0)
    transplant = min(
        records.transplants.get(treatment_id, ()), key=lambda t: (t.date, t.pk), default=None
    )
    # INTERFACES.md section 3: the date of death for a patient who died; blank (unknown) for
    # one with no follow-up contact recorded.
    last_contact = death[0] if death is not None else records.last_contacts.get(patient_id)
    return {
        "study_id": study_id,
        "site": site,
        "sex": sex,
        "year_of_birth": year_of_birth,
        "ph_status": ph_status,
        "arm": arm,
        "treatment_start": day0,
        "product": product,
        "disease_burden": disease_burden or None,
        "bm_blast_pct": bm_blast_pct,
        "relapse_status": relapse_status or None,
        "prior_hsct": None if prior_hsct is None else ("yes" if prior_hsct else "no"),
        "crs_grade": crs_grade,
        "crs_grading_system": crs_system,
        "icans_grade": icans_grade,
        "response": response.response if response else None,
        "response_date": response.date if response else None,
        "mrd_negative": mrd_negative(response),
        "hsct_type": transplant.type if transplant else None,
        "hsct_date": transplant.date if transplant else None,
        "relapse_date": records.first_relapses.get(treatment_id),
        "death_date": death[0] if death else None,
        "death_cause": death[1] if death else None,
        "last_contact_date": last_contact,
    }


def worst_grade(status: str, episodes: Iterable[Episode]) -> tuple[int | None, str | None]:
    """The grade analytics use (SAP.md section 3) of the worst episode, and its grading system.

    A derived ASTCT grade is exported under astct2019 (it is one); a recorded grade under the
    system it was recorded in. Status "no" is grade 0; unknown (or "yes" with no episode) blank.
    """
    if status == YesNoUnknown.NO:
        return 0, None
    graded = [e for e in episodes if e.grade is not None]
    if status != YesNoUnknown.YES or not graded:
        return None, None
    worst = max(graded, key=lambda e: (e.grade, -e.pk))
    system = GradingSystem.ASTCT2019 if worst.derived_grade is not None else worst.grading_system
    return worst.grade, system


def best_response(responses: list[Assessment], *, day0: date) -> Assessment | None:
    """SAP.md section 1: the best response between day 0 and day 90 (an MRD-negative CR first);
    with none in that window, the first assessment."""
    window = [r for r in responses if 0 <= (r.date - day0).days <= RESPONSE_WINDOW_DAYS]
    if not window:
        return min(responses, key=lambda r: (r.date, r.pk), default=None)
    return min(
        window,
        key=lambda r: (
            not mrd.mrd_negative_cr(r.response, r.mrd_status),
            RESPONSE_RANK[Response(r.response)],
            r.date,
            r.pk,
        ),
    )


def mrd_negative(response: Assessment | None) -> str | None:
    if response is None:
        return None
    return {MrdStatus.NEGATIVE: "yes", MrdStatus.POSITIVE: "no"}.get(response.mrd_status)


def deidentified(
    rows: Iterable[dict[str, Any]], codes: dict[tuple[str, str], str] | None = None
) -> Iterator[dict[str, Any]]:
    """docs/DEIDENTIFICATION.md: random codes for study IDs, days from day 0 for dates, age at
    day 0 for year of birth, no free text, and the rows in a random order.

    The rows are read in study-ID order (analysis_rows), so they are all held (as tuples of the
    de-identified columns) and shuffled with the operating system's randomness before the first
    is written: a row's position says nothing of its study ID. `codes`, when given, receives
    each patient's code by (site, study ID), for the laboratory file (deidentified_labs).
    """
    names = [column.name for column in export_columns(deidentify=True)]
    used: set[str] = set()
    held: list[tuple] = []
    for row in rows:
        day0: date = row.pop("treatment_start")
        for name in DEIDENTIFIED_DROPPED:
            del row[name]
        code = f"R{secrets.token_hex(4).upper()}"
        while code in used:
            code = f"R{secrets.token_hex(4).upper()}"
        used.add(code)
        if codes is not None:
            codes[(row["site"], row["study_id"])] = code
        row["study_id"] = code
        row["year_of_birth"] = day0.year - row["year_of_birth"]
        for name in DAYS_FROM_DAY0:
            value = row[name]
            row[name] = None if value is None else (value - day0).days
        renamed = {
            (DEIDENTIFIED_RENAMES[name].name if name in DEIDENTIFIED_RENAMES else name): value
            for name, value in row.items()
        }
        held.append(tuple(renamed[name] for name in names))
    secrets.SystemRandom().shuffle(held)
    for values in held:
        yield dict(zip(names, values, strict=True))


def export_rows(
    *, user: User, deidentify: bool, codes: dict[tuple[str, str], str] | None = None
) -> Iterator[dict[str, Any]]:
    rows = analysis_rows(user=user)
    return deidentified(rows, codes) if deidentify else rows


LAB_EXPORT_CHUNK = 5000


def lab_rows(*, user: User) -> Iterator[dict[str, Any]]:
    """One row per laboratory value row of the analysis set's treatments (each patient's first
    index treatment by day 0, as analysis_row), in site, study-ID and date order, with the
    treatment's day 0 under "day0" (for deidentified_labs). One query, read in chunks."""
    # An earlier treatment of the same patient (by day 0, then by entry): an anti-join.
    earlier = Treatment.objects.filter(patient_id=OuterRef("treatment__patient_id")).filter(
        Q(day0__lt=OuterRef("treatment__day0"))
        | Q(day0=OuterRef("treatment__day0"), pk__lt=OuterRef("treatment_id"))
    )
    values = (
        LabValue.objects.filter(treatment__patient__in=analysis_patients(user=user))
        .filter(~Exists(earlier))
        .order_by("treatment__patient__site__code", "treatment__patient__study_id", "date", "pk")
        .values_list(
            "treatment__patient__site__code",
            "treatment__patient__study_id",
            "treatment__day0",
            "date",
            *LAB_FIELDS,
        )
    )
    for site, study_id, day0, when, *numbers in values.iterator(chunk_size=LAB_EXPORT_CHUNK):
        yield {
            "study_id": study_id,
            "site": site,
            "day0": day0,
            "date": when,
            **dict(zip(LAB_FIELDS, numbers, strict=True)),
        }


def deidentified_labs(
    rows: Iterable[dict[str, Any]], codes: dict[tuple[str, str], str]
) -> Iterator[dict[str, Any]]:
    """The laboratory rows as the cohort file's de-identification leaves them: the patient's
    code of that export (`codes`, filled by deidentified), days from day 0 instead of the date,
    and the rows ordered by the random code and day, so that their order says nothing of the
    study IDs. A row of a patient the cohort file does not have is left out."""
    held = []
    for row in rows:
        code = codes.get((row["site"], row["study_id"]))
        if code is None:
            continue
        day = (row["date"] - row["day0"]).days
        held.append((code, row["site"], day, *(row[name] for name in LAB_FIELDS)))
    held.sort(key=lambda values: (values[0], values[2]))
    names = [column.name for column in lab_columns(deidentify=True)]
    for values in held:
        yield dict(zip(names, values, strict=True))


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


# --- the export cell writer (OWASP CSV injection) ---------------------------------------------
# A spreadsheet runs a cell whose text starts with one of these as a formula (or a DDE command),
# also after leading spaces or quotes: every exported text cell, in every format, goes through
# export_value, which puts a ' before such a text; the import takes exactly that ' away again
# (import_text), so that a file exported and imported again gives back the text as typed.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ESCAPE = "'"


def formula_like(text: str) -> bool:
    """Whether a spreadsheet could read `text` as a formula (OWASP: = + - @ TAB CR first,
    also after leading spaces and quotes)."""
    return text.lstrip(" \"'").startswith(FORMULA_STARTS)


def export_value(value: Any) -> Any:
    """The value of one exported cell: a formula-like text gets a ' in front, nothing else
    changes. Every export format writes its cells through this."""
    if isinstance(value, str) and formula_like(value):
        return ESCAPE + value
    return value


def import_text(text: str) -> str:
    """The text of an imported cell, the ' that export_value added taken away (only that one:
    a text that export_value would have left alone is kept as it is)."""
    if text.startswith(ESCAPE) and formula_like(text[1:]):
        return text[1:]
    return text


def cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        text = format(value, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    return str(value)


_CSV_AS_IS = frozenset({str, int, type(None)})


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_lines(rows: Iterable[dict[str, Any]], columns: list[Column]) -> Iterator[str]:
    """The CSV file line by line (for a file or a streaming HTTP response)."""
    # RFC 4180 line ends: the csv module then quotes a cell holding a CR (with "\n" alone it
    # would not, and a CR typed in a text would split its row in two when read back).
    writer = csv.writer(_Echo(), lineterminator="\r\n")
    names = [column.name for column in columns]
    yield writer.writerow(names)
    for row in rows:
        # The csv module writes these as cell_text does (None blank, int in decimal); the
        # check costs less than the call.
        yield writer.writerow(
            [
                export_value(value) if type(value) in _CSV_AS_IS else cell_text(value)
                for value in map(row.__getitem__, names)
            ]
        )


def write_xlsx(
    path: Path,
    rows: Iterable[dict[str, Any]],
    columns: list[Column],
    *,
    deidentify: bool,
    labs: Callable[[], Iterable[dict[str, Any]]] | None = None,
) -> None:
    """The cohort sheet, then (`labs`: called once the cohort rows are written) the sheet
    "labs" of the laboratory file, then the codebook."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    workbook = Workbook(write_only=True)

    def text_cell(sheet, text: str) -> WriteOnlyCell:
        """Text stored as text: openpyxl would store a text starting with = as a formula."""
        cell = WriteOnlyCell(sheet, value=None)
        cell.value, cell.data_type = export_value(text), "s"
        return cell

    def write_sheet(name: str, rows: Iterable[dict[str, Any]], columns: list[Column]) -> None:
        sheet = workbook.create_sheet(name)
        sheet.append([text_cell(sheet, column.name) for column in columns])
        for row in rows:
            cells = []
            for column in columns:
                value = row[column.name]
                if isinstance(value, str):
                    value = text_cell(sheet, value)
                elif isinstance(value, date):
                    cell = WriteOnlyCell(sheet, value=value)
                    cell.number_format = "yyyy-mm-dd"
                    value = cell
                elif isinstance(value, Decimal):
                    value = float(value)
                cells.append(value)
            sheet.append(cells)

    write_sheet("cohort", rows, columns)
    if labs is not None:
        write_sheet(LABS_SHEET, labs(), lab_columns(deidentify=deidentify))
    book = workbook.create_sheet("codebook")
    book.append([text_cell(book, name) for name in CODEBOOK_HEADER])
    for line in codebook(deidentify=deidentify):
        book.append([text_cell(book, text) for text in line.values()])
    workbook.save(path)


def write_stat_file(
    path: Path, rows: Iterable[dict[str, Any]], columns: list[Column], *, fmt: str
) -> None:
    """SPSS .sav or Stata .dta with variable labels and, for categories, value labels.

    pyreadstat writes a whole DataFrame, so this holds the analysis set in memory (the registry's
    records are still read in chunks): numbers and codes as 8-byte floats, not float objects.
    """
    import numpy as np
    import pandas as pd
    import pyreadstat

    numeric = ("enum", "integer", "grade", "days", "number")
    data: dict[str, Any] = {
        column.name: array("d") if column.kind in numeric else [] for column in columns
    }
    codes = {column.name: {v: k for k, v in codes_of(column).items()} for column in columns}
    for row in rows:
        for column in columns:
            value = row[column.name]
            if column.kind == "enum":
                value = float("nan") if value is None else float(codes[column.name][value])
            elif column.kind in numeric:
                value = float("nan") if value is None else float(value)
            elif column.kind in ("text", "site"):
                value = export_value(value or "")
            data[column.name].append(value)
    frame = pd.DataFrame(
        {
            name: np.frombuffer(values, dtype=np.float64) if isinstance(values, array) else values
            for name, values in data.items()
        },
        columns=[column.name for column in columns],
    )
    del data
    labels = {column.name: column.label[:80] for column in columns}
    value_labels = {column.name: codes_of(column) for column in columns if column.kind == "enum"}
    whole = "F8.0" if fmt == "sav" else "%8.0g"
    formats = {
        column.name: whole
        for column in columns
        if column.kind in ("enum", "integer", "grade", "days")
    }
    writer = pyreadstat.write_sav if fmt == "sav" else pyreadstat.write_dta
    writer(
        frame,
        str(path),
        column_labels=labels,
        variable_value_labels=value_labels,
        variable_format=formats,
    )


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


def write_csv(path: Path, rows: Iterable[dict[str, Any]], columns: list[Column]) -> None:
    with Path(path).open("w", encoding="utf-8", newline="") as stream:
        for line in csv_lines(rows, columns):
            stream.write(line)


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
