"""Parsing a Table's cells: each cell's value by its column's kind (CellError says what would be
valid), the header's columns checked, the rules within one row (required and paired cells),
and every problem kept as `row R, column C: message`.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from registry.cohort_file.cells import import_text
from registry.cohort_file.columns import (
    COLUMNS,
    LAB_COLUMNS,
    LAB_VALUE_REQUIRED,
    PAIRED,
    VALUE_REQUIRED,
    Column,
)
from registry.cohort_file.limits import Message
from registry.cohort_file.reading import text_of
from registry.cohort_file.xlsx_reading import Formula

FORMULA = _("a formula is not a value: type the value itself")


class CellError(ValueError):
    pass


DATE_FORM = re.compile(r"^\d{4}-\d{2}-\d{2}$")
WHOLE_NUMBER = re.compile(r"^[+-]?\d+(\.0*)?$")


def parse_cell(column: Column, cell: Any) -> Any:
    """The value of one cell, or None when blank; CellError says what would be valid."""
    text = text_of(cell)
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
            if index >= width and text_of(cell):
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
