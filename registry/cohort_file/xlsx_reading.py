"""Reading one sheet of an .xlsx workbook as a stream: the zip's directory checked before anything
is unpacked, then the sheet's rows parsed one at a time within the bounds (openpyxl's parts,
not load_workbook), formula cells as Formula, never as their cached values.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext_lazy as _

from registry.cohort_file.limits import (
    Deadline,
    ImportLimits,
    LimitExceeded,
    NoSuchSheet,
    UnreadableFile,
    number_text,
    too_wide,
)

XLSX_RATIO_FLOOR = 1024 * 1024  # smaller parts may compress as well as they like
XLSX_MAX_PARTS = 10_000


@dataclass(frozen=True)
class Formula:
    """A formula cell of an .xlsx: its text, never its cached value (a problem, not a value)."""

    text: str

    def __str__(self) -> str:
        return self.text


XLSX_UNREADABLE = _("The .xlsx file cannot be read: %(error)s.")


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
                ratio=number_text(part.file_size // packed),
                limit=number_text(limits.max_xlsx_ratio),
            )
    stream.seek(0)


def xlsx_lines(
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
                                limit=number_text(XLSX_MAX_CELLS_PER_ROW),
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
        too_wide(number, width, limits)
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
