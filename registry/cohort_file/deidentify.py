"""De-identification (docs/DEIDENTIFICATION.md): the columns of an identified and of a
de-identified file, each de-identified column with the reason it may be there, and the rows of
the cohort file and of its laboratory file de-identified (random codes, days from day 0, age).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any

from registry.cohort_file.columns import (
    COLUMN_BY_NAME,
    COLUMNS,
    LAB_COLUMNS,
    LAB_LABEL_PREFIX,
    Column,
)
from registry.models.labs import LAB_FIELDS

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
