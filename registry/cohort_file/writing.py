"""Writing rows to a file in each export format: CSV (line by line, for a file or a streaming
response), .xlsx (the cohort, labs and codebook sheets), SPSS .sav and Stata .dta. Every text
cell goes through cells.export_value.
"""

from __future__ import annotations

import csv
from array import array
from collections.abc import Callable, Iterable, Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from registry.cohort_file.cells import cell_text, export_value
from registry.cohort_file.codebook import CODEBOOK_HEADER, codebook, codes_of
from registry.cohort_file.columns import LABS_SHEET, Column
from registry.cohort_file.deidentify import lab_columns

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


def write_csv(path: Path, rows: Iterable[dict[str, Any]], columns: list[Column]) -> None:
    with Path(path).open("w", encoding="utf-8", newline="") as stream:
        for line in csv_lines(rows, columns):
            stream.write(line)
