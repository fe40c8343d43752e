"""The bounds of an import (ImportLimits, from the settings IMMUNOREG_IMPORT_*; the Deadline), and
the exceptions that refuse a file beyond one of them or that cannot be read, each with a
translatable Message naming the bound and its value.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils.translation import gettext_lazy as _

from registry.cohort_file.columns import COLUMNS


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


class Deadline:
    """The time an import may take (ImportLimits.max_seconds); `clock` is injectable for tests."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self.clock = seconds, clock
        self.ends = clock() + seconds

    def expired(self) -> bool:
        return self.clock() > self.ends

    def check(self) -> None:
        if self.expired():
            raise LimitExceeded(TOO_SLOW, seconds=number_text(self.seconds))


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


TOO_SLOW = _(
    "The import took longer than %(seconds)s seconds and was stopped; nothing was saved. "
    "Split the file into smaller ones."
)


def too_wide(row: int, width: int, limits: ImportLimits) -> None:
    raise LimitExceeded(
        _(
            "Row %(row)s has %(count)s columns; a cohort file has at most %(limit)s "
            "(it names %(known)s)."
        ),
        row=row,
        count=number_text(width),
        limit=number_text(limits.max_columns),
        known=len(COLUMNS),
    )


def cell_too_long(row: int, column: int, limits: ImportLimits) -> None:
    raise LimitExceeded(
        _(
            "Row %(row)s, column %(column)s holds more than %(limit)s characters, the most a "
            "cell may hold."
        ),
        row=row,
        column=column,
        limit=number_text(limits.max_cell_chars),
    )


def number_text(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"
