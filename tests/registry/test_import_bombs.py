"""Every import format against size and time bombs (issue #14, points 5 and 7): a file beyond
one of the import's bounds (cohort_file.ImportLimits) is refused early with a message naming the
bound and its value, nothing saved, in bounded memory; the command and the upload page go through
the same bounds. A formula cell of an .xlsx is a problem named by row and column, never a blank.

The files are made here, small on disk; the time bound is checked with an injectable clock."""

from __future__ import annotations

import hashlib
import io
import tracemalloc
import zipfile
from collections.abc import Iterable
from datetime import date

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings

from registry import cohort_file
from registry.cohort_file.reading import read_table
from registry.cohort_file.row_import import RowImport
from registry.models import ImportRun, Patient
from tests.registry.test_cohort_file import (
    ALIVE_CAR_T,
    DIED_OF_DISEASE,
    HEADER,
    csv_bytes,
    run_command,
)

pytestmark = pytest.mark.django_db
UPLOAD = "/admin/registry/importrun/upload/"
MB = 1024 * 1024


# --- making the files ----------------------------------------------------------------------------
SHEET_HEAD = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
)
SHEET_TAIL = "</sheetData></worksheet>"


def inline_row(number: int, values: Iterable[str]) -> str:
    from openpyxl.utils import get_column_letter

    cells = "".join(
        f'<c r="{get_column_letter(i)}{number}" t="inlineStr"><is><t>{value}</t></is></c>'
        for i, value in enumerate(values, start=1)
    )
    return f'<row r="{number}">{cells}</row>'


def xlsx_with_sheet(chunks: Iterable[str]) -> bytes:
    """A workbook openpyxl wrote, its first sheet's XML replaced by `chunks` (streamed into the
    zip, so that a part of many megabytes takes little memory and little room on disk)."""
    from openpyxl import Workbook

    base = io.BytesIO()
    Workbook().save(base)
    out = io.BytesIO()
    with (
        zipfile.ZipFile(base) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as target,
    ):
        for part in source.infolist():
            if part.filename == "xl/worksheets/sheet1.xml":
                with target.open(part.filename, "w", force_zip64=True) as sheet:
                    for chunk in chunks:
                        sheet.write(chunk.encode())
            else:
                target.writestr(part, source.read(part.filename))
    return out.getvalue()


def with_shared_strings(workbook: bytes, strings: str) -> bytes:
    """The workbook with a shared strings part holding `strings` (<si> elements)."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(workbook)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for part in source.infolist():
            data = source.read(part.filename)
            if part.filename == "[Content_Types].xml":
                data = data.replace(
                    b"</Types>",
                    b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
                    b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>',
                )
            target.writestr(part, data)
        target.writestr(
            "xl/sharedStrings.xml",
            '<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
            f"{strings}</sst>",
        )
    return out.getvalue()


def padding(megabytes: int) -> Iterable[str]:
    """Whitespace between the sheet's rows: a part that packs to almost nothing."""
    yield SHEET_HEAD
    yield inline_row(1, ["study_id"])
    for _ in range(megabytes):
        yield " " * MB
    yield SHEET_TAIL


def refused(status_output: tuple[int, str], message: str) -> None:
    status, output = status_output
    output = output.replace("\xa0", " ")  # sizes are written with a non-breaking space
    assert status == 2, output
    assert message in output, output
    assert len(output) < 1000, "one short message"
    run = ImportRun.objects.get()
    assert run.outcome == ImportRun.Outcome.UNREADABLE
    assert message in run.problems.replace("\xa0", " ")
    assert not Patient.objects.exists()


def peak_memory(function) -> int:
    """The most memory Python allocated while `function` ran (tracemalloc), in bytes."""
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --- .xlsx -------------------------------------------------------------------------------------
def test_an_xlsx_zip_bomb_is_refused_from_its_directory_before_it_is_unpacked(tmp_path, site):
    content = xlsx_with_sheet(padding(80))
    assert len(content) < 1 * MB

    memory = peak_memory(
        lambda: refused(
            run_command(tmp_path, content, name="bomb.xlsx"),
            "The .xlsx workbook unpacks to 80.0 MB, more than the limit of 50.0 MB.",
        )
    )

    assert memory < 20 * MB


def test_an_xlsx_part_packed_far_tighter_than_a_spreadsheet_is_refused(tmp_path, site):
    content = xlsx_with_sheet(padding(5))

    refused(
        run_command(tmp_path, content, name="bomb.xlsx"),
        "The .xlsx workbook's part xl/worksheets/sheet1.xml unpacks to",
    )
    assert "times its packed size (at most 100)" in ImportRun.objects.get().problems


@override_settings(IMMUNOREG_IMPORT_MAX_XLSX_STRINGS_BYTES=1024 * 1024)
def test_xlsx_shared_strings_over_their_limit_are_refused_before_they_are_read(tmp_path, site):
    strings = "".join(f"<si><t>s{n:07d}</t></si>" for n in range(100_000))
    content = with_shared_strings(xlsx_with_sheet(padding(0)), strings)

    refused(
        run_command(tmp_path, content, name="strings.xlsx"),
        "The .xlsx workbook's shared strings unpack to 2.3 MB, more than the limit of 1.0 MB.",
    )


@override_settings(IMMUNOREG_IMPORT_MAX_ROWS=1000)  # openpyxl reads 20,000 rows slowly
def test_a_small_xlsx_of_50000_rows_is_refused_at_the_row_limit(tmp_path, site):
    rows = (
        f'<row r="{n}"><c r="A{n}" t="inlineStr"><is><t>P{n}</t></is></c></row>'
        for n in range(2, 50_002)
    )
    content = xlsx_with_sheet([SHEET_HEAD, inline_row(1, ["study_id"]), *rows, SHEET_TAIL])
    assert len(content) < 1 * MB

    refused(
        run_command(tmp_path, content, name="rows.xlsx"),
        "The file has more than 1,000 patient rows; an import takes at most 1,000.",
    )


def test_an_xlsx_cell_longer_than_the_limit_is_refused_by_row_and_column(tmp_path, site):
    row = inline_row(2, ["AHP-1", "x" * 5000])
    content = xlsx_with_sheet([SHEET_HEAD, inline_row(1, ["study_id", "product"]), row, SHEET_TAIL])

    refused(
        run_command(tmp_path, content, name="cell.xlsx"),
        "Row 2, column 2 holds more than 1,000 characters, the most a cell may hold.",
    )


def test_an_xlsx_row_wider_than_the_limit_is_refused(tmp_path, site):
    content = xlsx_with_sheet([SHEET_HEAD, inline_row(1, ["c"] * 300), SHEET_TAIL])

    refused(
        run_command(tmp_path, content, name="wide.xlsx"),
        "Row 1 has 300 columns; a cohort file has at most 100",
    )


def test_an_xlsx_row_of_more_cells_than_excel_allows_is_refused_as_it_is_read(tmp_path, site):
    row = '<row r="2">' + '<c s="0"/>' * 20_000 + "</row>"
    content = xlsx_with_sheet([SHEET_HEAD, inline_row(1, ["study_id"]), row, SHEET_TAIL])

    refused(
        run_command(tmp_path, content, name="cells.xlsx"),
        "Row 2 of the .xlsx sheet holds more than 16,384 cells",
    )


def test_a_zip_that_is_not_a_workbook_is_refused_as_such(tmp_path, site):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zip_file:
        zip_file.writestr("notes.txt", "not a workbook")

    refused(
        run_command(tmp_path, archive.getvalue(), name="notes.xlsx"),
        "The file is a zip archive but not an .xlsx workbook",
    )


def formula_workbook(tmp_path, cells: dict[str, object]):
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.append(HEADER)
    values = ALIVE_CAR_T | {"year_of_birth": 1990, "bm_blast_pct": 40.5}
    values |= {"treatment_start": date(2022, 3, 1), "last_contact_date": date(2023, 3, 1)}
    sheet.append([(cells | values).get(name) or None for name in HEADER])
    for name, value in cells.items():
        sheet.cell(row=2, column=HEADER.index(name) + 1, value=value)
    path = tmp_path / "formulas.xlsx"
    workbook.save(path)
    return path.read_bytes()


def test_a_formula_cell_is_a_problem_named_by_row_and_column_not_a_blank(tmp_path, site):
    content = formula_workbook(
        tmp_path, {"crs_grade": "=1+4", "product": "='[other.xlsx]Sheet1'!A1"}
    )

    status, output = run_command(tmp_path, content, name="formulas.xlsx")

    assert status == 1, output
    assert "row 2, column crs_grade: a formula is not a value" in output
    assert "row 2, column product: a formula is not a value" in output
    assert not Patient.objects.exists()


def test_a_formula_with_a_cached_value_is_still_a_problem(tmp_path, site):
    header = inline_row(1, ["study_id", "crs_grade"])
    row = '<row r="2"><c r="A2" t="inlineStr"><is><t>AHP-1</t></is></c><c r="B2"><f>1+4</f><v>5</v></c></row>'
    content = xlsx_with_sheet([SHEET_HEAD, header, row, SHEET_TAIL])

    status, output = run_command(tmp_path, content, name="cached.xlsx")

    assert status == 1, output
    assert "row 2, column crs_grade: a formula is not a value" in output


def test_a_formula_in_the_header_is_a_problem_of_row_1(tmp_path, site):
    from openpyxl import Workbook

    workbook = Workbook()
    workbook.active.append([*HEADER, '="extra"'])
    workbook.active.append([ALIVE_CAR_T[name] or None for name in HEADER])
    path = tmp_path / "header.xlsx"
    workbook.save(path)

    status, output = run_command(tmp_path, path.read_bytes(), name="header.xlsx")

    assert status == 1, output
    assert f"row 1, column {len(HEADER) + 1}: a formula is not a value" in output


def test_the_formula_problem_is_in_the_readers_language_on_the_upload_page(
    client, site, data_manager, tmp_path
):
    client.force_login(data_manager)
    content = formula_workbook(tmp_path, {"crs_grade": "=1+4"})
    upload = SimpleUploadedFile("formulas.xlsx", content)

    response = client.post(UPLOAD, {"file": upload}, HTTP_ACCEPT_LANGUAGE="zh-hans")

    assert "第 2 行，crs_grade 列：公式不是数值" in response.content.decode()
    assert "row 2, column crs_grade: a formula is not a value" in ImportRun.objects.get().problems


# --- CSV ---------------------------------------------------------------------------------------
def test_a_csv_beyond_the_row_limit_is_refused(tmp_path, site):
    content = ("study_id\n" + "".join(f"P{n}\n" for n in range(50_000))).encode()

    refused(
        run_command(tmp_path, content),
        "The file has more than 20,000 patient rows; an import takes at most 20,000.",
    )


@override_settings(IMMUNOREG_IMPORT_MAX_ROWS=2000)  # tracemalloc makes each row slow
def test_a_10_mb_csv_is_refused_after_reading_only_as_far_as_the_row_limit(tmp_path, site):
    line = ",".join(DIED_OF_DISEASE[name] for name in HEADER) + "\n"
    content = (",".join(HEADER) + "\n" + line * 60_000).encode()
    assert len(content) > 9 * MB

    memory = peak_memory(
        lambda: refused(
            run_command(tmp_path, content),
            "The file has more than 2,000 patient rows; an import takes at most 2,000.",
        )
    )

    assert memory < 20 * MB


def test_a_header_of_200000_columns_gives_one_short_message(tmp_path, site):
    content = (",".join(f"c{i}" for i in range(200_000)) + "\n").encode()

    refused(
        run_command(tmp_path, content),
        "Row 1 has more than 100 columns; a cohort file has at most 100 (it names 24).",
    )


def test_a_header_of_200000_columns_gives_a_short_upload_page(client, site, data_manager):
    client.force_login(data_manager)
    content = (",".join(f"c{i}" for i in range(200_000)) + "\n").encode()

    response = client.post(UPLOAD, {"file": SimpleUploadedFile("wide.csv", content)})

    page = response.content.decode()
    assert "Row 1 has more than 100 columns" in page
    assert len(page) < 50_000


def test_a_huge_csv_cell_is_refused_by_row_and_column(tmp_path, site):
    content = csv_bytes([ALIVE_CAR_T | {"product": "x" * (3 * MB)}])

    refused(
        run_command(tmp_path, content),
        "Row 2, column 8 holds more than 1,000 characters, the most a cell may hold.",
    )


def test_a_quoted_cell_of_endless_short_lines_is_refused(tmp_path, site):
    content = ",".join(HEADER).encode() + b'\n"' + b"a\n" * (2 * MB)

    refused(run_command(tmp_path, content), "Row 2 is longer than 100,302 characters")


def test_a_line_of_endless_blank_cells_is_refused(tmp_path, site):
    content = ",".join(HEADER).encode() + b"\n" + b"," * (5 * MB)

    refused(run_command(tmp_path, content), "Row 2 has more than 100 columns")


def test_bytes_that_are_not_utf8_deep_in_a_csv_are_refused_naming_the_row(tmp_path, site):
    rows = [ALIVE_CAR_T | {"study_id": f"P{n}"} for n in range(300)]
    content = csv_bytes(rows) + "P300,AHP,Ä\n".encode("latin-1")

    refused(run_command(tmp_path, content), "The file is not UTF-8 text (row 302)")


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path, site):
    content = csv_bytes([ALIVE_CAR_T])

    with override_settings(IMMUNOREG_MAX_UPLOAD_BYTES=100):
        refused(run_command(tmp_path, content), "larger than the limit of 100")

    assert ImportRun.objects.get().file_sha256 == ""


# --- time --------------------------------------------------------------------------------------
class Clock:
    """A clock that moves only when told (Deadline's injectable clock)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_reading_past_the_deadline_is_refused(site, data_manager):
    clock = Clock()
    deadline = cohort_file.Deadline(10, clock=clock)
    clock.now = 11

    with pytest.raises(cohort_file.LimitExceeded, match="longer than 10 seconds"):
        cohort_file.import_cohort(
            csv_bytes([ALIVE_CAR_T]), name="c.csv", user=data_manager, deadline=deadline
        )

    assert ImportRun.objects.get().outcome == ImportRun.Outcome.UNREADABLE


def test_a_slow_import_stops_and_rolls_back_instead_of_holding_its_transaction(
    site, data_manager, monkeypatch
):
    clock = Clock()
    deadline = cohort_file.Deadline(100, clock=clock)
    run = RowImport.run

    def slow_run(self, site):
        clock.now += 60  # each row takes a minute
        return run(self, site)

    monkeypatch.setattr(RowImport, "run", slow_run)
    rows = [ALIVE_CAR_T | {"study_id": f"P{n}"} for n in range(5)]

    result = cohort_file.import_cohort(
        csv_bytes(rows), name="c.csv", user=data_manager, deadline=deadline
    )

    assert [str(problem) for problem in result.problems] == [
        "row 4, column -: The import took longer than 100 seconds and was stopped; nothing "
        "was saved. Split the file into smaller ones."
    ]
    assert clock.now == 120, "no row after the deadline"
    assert not Patient.objects.exists()
    assert result.run.outcome == ImportRun.Outcome.REJECTED


def test_the_deadline_comes_from_the_settings(site, data_manager):
    with (
        override_settings(IMMUNOREG_IMPORT_MAX_SECONDS=-1),
        pytest.raises(cohort_file.LimitExceeded, match="longer than -1 seconds"),
    ):
        cohort_file.import_cohort(csv_bytes([ALIVE_CAR_T]), name="c.csv", user=data_manager)


# --- the upload page ---------------------------------------------------------------------------
@override_settings(IMMUNOREG_IMPORT_MAX_PROBLEMS_SHOWN=3)
def test_the_upload_page_lists_the_first_problems_then_how_many_more(client, site, data_manager):
    client.force_login(data_manager)
    rows = [ALIVE_CAR_T | {"study_id": f"P{n}", "arm": "cart"} for n in range(8)]

    response = client.post(UPLOAD, {"file": SimpleUploadedFile("c.csv", csv_bytes(rows))})

    page = response.content.decode()
    assert page.count("is not one of: blinatumomab, car_t") == 3
    assert "and 5 more problems" in page
    assert ImportRun.objects.get().problem_count == 8


def test_the_upload_page_refuses_a_file_beyond_a_bound_with_its_message(client, site, data_manager):
    client.force_login(data_manager)
    content = csv_bytes([ALIVE_CAR_T | {"product": "x" * 2000}])

    response = client.post(
        UPLOAD, {"file": SimpleUploadedFile("c.csv", content)}, HTTP_ACCEPT_LANGUAGE="zh-hans"
    )

    assert "第 2 行第 8 列超过 1,000 个字符" in response.content.decode()
    assert "Row 2, column 8 holds more than 1,000 characters" in ImportRun.objects.get().problems


def test_a_large_upload_kept_in_a_temporary_file_is_read_as_a_stream(
    client, site, data_manager, settings
):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024  # the upload goes to a temporary file
    client.force_login(data_manager)
    rows = [ALIVE_CAR_T | {"study_id": f"P{n}"} for n in range(20)] + [ALIVE_CAR_T]
    content = csv_bytes(rows)

    response = client.post(UPLOAD, {"file": SimpleUploadedFile("c.csv", content), "dry_run": "on"})

    assert "Dry run: 21 patients would be imported; nothing was saved." in response.content.decode()
    assert ImportRun.objects.get().file_sha256 == hashlib.sha256(content).hexdigest()


def test_reading_an_xlsx_checks_the_deadline_between_rows_too(site, data_manager):
    clock = Clock()
    deadline = cohort_file.Deadline(2, clock=clock)
    real_check = deadline.check

    def check() -> None:
        clock.now += 1  # each check, a second later
        real_check()

    deadline.check = check
    junk = "<foo>" + "<x/>" * 10_000 + "</foo>"  # elements, but no row: 20,000 parser events
    sheet = [SHEET_HEAD.replace("<sheetData>", junk + "<sheetData>"), SHEET_TAIL]

    with pytest.raises(cohort_file.LimitExceeded, match="longer than 2 seconds"):
        cohort_file.import_cohort(
            xlsx_with_sheet(sheet), name="c.xlsx", user=data_manager, deadline=deadline
        )


def test_the_streamed_xlsx_reader_reads_back_what_the_export_writes(tmp_path, site, administrator):
    cohort_file.import_cohort(
        csv_bytes([ALIVE_CAR_T, DIED_OF_DISEASE]), name="c.csv", user=administrator
    )
    path = tmp_path / "cohort.xlsx"
    cohort_file.export_cohort(path, user=administrator, fmt="xlsx")

    table = read_table(path.read_bytes())

    assert table.header == HEADER
    rows = {cells[0]: dict(zip(HEADER, cells, strict=False)) for _, cells in table.rows}
    assert rows["AHP-C001"]["treatment_start"].date() == date(2022, 3, 1)
    assert rows["AHP-C001"]["bm_blast_pct"] == 40.5
    assert rows["AHP-B001"]["death_date"].date() == date(2023, 1, 15)
    again = cohort_file.import_cohort(path.read_bytes(), name="again.xlsx", user=administrator)
    assert {(p.row, p.column) for p in again.problems} == {(2, "study_id"), (3, "study_id")}
