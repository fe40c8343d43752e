"""The codebook: one line per exported variable (name, label, type, allowed values, the codes of
.sav and .dta files, units), the cohort file's and then the laboratory file's.
"""

from __future__ import annotations

import csv
from typing import IO

from registry.cohort_file.cells import export_value
from registry.cohort_file.columns import Column
from registry.cohort_file.deidentify import export_columns, lab_only_columns
from registry.domain.ranges import RANGES
from registry.models.labs import LAB_FIELDS


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
