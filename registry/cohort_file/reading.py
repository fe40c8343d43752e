"""Reading a file into a Table: the header and the non-blank rows of a UTF-8 CSV (line by line)
or of an .xlsx sheet (xlsx_reading), numbered as a spreadsheet shows them, within ImportLimits;
and finding the laboratory file that goes with a cohort file.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import IO, Any

from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext_lazy as _

from registry.cohort_file.columns import COLUMNS, LABS_SHEET
from registry.cohort_file.limits import (
    Deadline,
    ImportLimits,
    LimitExceeded,
    NoSuchSheet,
    UnreadableFile,
    cell_too_long,
    number_text,
    too_wide,
)
from registry.cohort_file.xlsx_reading import Formula, xlsx_lines

XLSX_MAGIC = b"PK\x03\x04"


EMPTY = _("The file is empty.")


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
    stream = binary_stream(content)
    _check_size(stream, limits)
    start = stream.read(len(XLSX_MAGIC))
    stream.seek(0)
    if not start:
        raise UnreadableFile(EMPTY)
    if start == XLSX_MAGIC:
        lines = xlsx_lines(stream, limits, deadline, sheet=sheet)
    else:
        lines = _csv_lines(stream, limits)
    header: list[str] | None = None
    formulas: set[int] = set()
    rows: list[tuple[int, list[Any]]] = []
    try:
        for number, cells in lines:
            deadline.check()
            if not any(text_of(cell) for cell in cells):
                continue
            _check_row(number, cells, limits)
            if header is None:
                formulas = {i for i, cell in enumerate(cells) if isinstance(cell, Formula)}
                header = [text_of(cell).lower() for cell in cells]
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
                    limit=number_text(limits.max_lab_rows),
                )
            if not labs and len(rows) > limits.max_rows:
                raise LimitExceeded(
                    _(
                        "The file has more than %(limit)s patient rows; an import takes at "
                        "most %(limit)s. Split the file into smaller ones."
                    ),
                    limit=number_text(limits.max_rows),
                )
    finally:
        lines.close()
    if header is None:
        raise UnreadableFile(EMPTY)
    if not rows and not labs:
        raise UnreadableFile(_("The file has a header but no patient rows."))
    return Table(header, rows, formulas)


def binary_stream(content: bytes | IO[bytes]) -> IO[bytes]:
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
    while width and not text_of(cells[width - 1]):
        width -= 1
    if width > limits.max_columns:
        too_wide(number, width, limits)
    for index, cell in enumerate(cells[:width]):
        if isinstance(cell, str | Formula) and len(str(cell)) > limits.max_cell_chars:
            cell_too_long(number, index + 1, limits)


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
            limit=number_text(limits.max_columns),
            known=len(COLUMNS),
        )
    for index, cell in enumerate(cells):
        if len(cell) > limits.max_cell_chars:
            cell_too_long(number, index + 1, limits)
    raise LimitExceeded(
        _("Row %(row)s is longer than %(limit)s characters; a cell may hold at most %(chars)s."),
        row=number,
        limit=number_text(limits.max_line_chars),
        chars=number_text(limits.max_cell_chars),
    )


def text_of(cell: Any) -> str:
    if cell is None:
        return ""
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    if isinstance(cell, datetime):
        return cell.date().isoformat()
    if isinstance(cell, date):
        return cell.isoformat()
    return str(cell).strip()


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
    stream = binary_stream(labs)
    if _is_xlsx(stream):
        try:
            return read_table(stream, limits=limits, deadline=deadline, sheet=LABS_SHEET, labs=True)
        except NoSuchSheet:
            pass
    return read_table(stream, limits=limits, deadline=deadline, labs=True)
