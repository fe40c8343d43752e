"""One text cell, on its way out and back in (OWASP CSV injection): export_value puts a ' before a
text a spreadsheet would run as a formula, import_text takes exactly that ' away again; and
cell_text, the text of an exported value.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

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
