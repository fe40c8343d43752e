"""The laboratory file beside the cohort file (issue #17 point 1): exported with the analysis set
(de-identified the same way), imported after the patients in the same all-or-nothing
transaction through services.lab_series_save, every problem as `labs row R, column C: ...`."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyreadstat
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import include, path

from registry import cohort_file, exchange_views, services
from registry.cohort_file.deidentify import LAB_DEIDENTIFIED_COLUMNS
from registry.domain.ranges import RANGES
from registry.domain.vocabulary import Role
from registry.models import (
    CrsEpisode,
    DataQualityQuery,
    Death,
    FollowUpContact,
    IcansEpisode,
    LabValue,
    Patient,
    Relapse,
    ResponseAssessment,
    Transplant,
    Treatment,
)
from registry.models.labs import LAB_FIELDS
from tests import factories
from tests.registry.test_cohort_file import (
    ALIVE_CAR_T,
    DIED_OF_DISEASE,
    csv_bytes,
    run_command,
)

urlpatterns = [
    path("", include("config.urls")),
    path("export/", exchange_views.export_page, name="export"),
    path("export/codebook.csv", exchange_views.export_codebook, name="export-codebook"),
]
pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

LAB_HEADER = [column.name for column in cohort_file.LAB_COLUMNS]
DAY0 = date(2022, 3, 1)  # ALIVE_CAR_T's and DIED_OF_DISEASE's day 0
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
UPLOAD = "/admin/registry/importrun/upload/"


def lab_row(study_id: str, day: int, **values) -> dict[str, str]:
    return {
        "study_id": study_id,
        "site": "AHP",
        "date": (DAY0 + timedelta(days=day)).isoformat(),
        **{name: str(value) for name, value in values.items()},
    }


def series(study_id: str, neutropenic_days: int, *, last: int = 30) -> list[dict[str, str]]:
    """Daily ANC: 300/uL on days 1..neutropenic_days, else 3000 (tests/registry/test_labs.py)."""
    return [
        lab_row(study_id, n, anc_per_ul=300 if 1 <= n <= neutropenic_days else 3000)
        for n in range(last + 1)
    ]


def labs_bytes(rows: list[dict[str, str]], header: list[str] = LAB_HEADER) -> bytes:
    return csv_bytes(rows, header=header)


def import_both(user, labs: list[dict[str, str]], *, dry_run=False, cohort=None, **kwargs):
    return cohort_file.import_cohort(
        csv_bytes(cohort or [ALIVE_CAR_T, DIED_OF_DISEASE]),
        name="cohort.csv",
        user=user,
        dry_run=dry_run,
        labs=labs_bytes(labs),
        labs_name="cohort-labs.csv",
        **kwargs,
    )


def nothing_saved() -> bool:
    return not Patient.objects.exists() and not LabValue.objects.exists()


def messages(result) -> list[str]:
    return [str(problem) for problem in result.problems]


# --- import ------------------------------------------------------------------------------------
def test_the_series_are_imported_with_the_patients_and_icaht_is_derived(site, data_manager):
    labs = series("AHP-C001", 7) + series("AHP-B001", 0)
    labs[3] |= {"platelets_10e9_l": "45", "haemoglobin_g_dl": "8.9", "crp_mg_l": "120.5"}

    result = import_both(data_manager, labs)

    assert result.ok, result.problems
    assert (result.lab_rows, result.lab_values_created) == (62, 62)
    car_t = Treatment.objects.get(patient__study_id="AHP-C001")
    assert car_t.lab_values.count() == 31
    assert car_t.icaht_early_grade == 2  # 7 days at or below 500/uL (DOMAIN.md)
    third = car_t.lab_values.get(date=DAY0 + timedelta(days=3))
    assert (third.platelets_10e9_l, str(third.haemoglobin_g_dl)) == (45, "8.9")
    assert Treatment.objects.get(patient__study_id="AHP-B001").icaht_early_grade == 0
    # Audited like the other imported records: the run and the user named.
    reasons = set(LabValue.history.values_list("history_change_reason", flat=True))
    assert reasons == {f"import of cohort.csv (run {result.run.pk}) by data_manager"}
    assert LabValue.history.count() == 62


def test_a_dry_run_checks_the_series_and_saves_nothing(site, data_manager):
    result = import_both(data_manager, series("AHP-C001", 7), dry_run=True)

    assert result.ok, result.problems
    assert result.lab_rows == 31
    assert nothing_saved()


def test_a_bad_value_refuses_both_files_naming_the_row_and_the_column(site, data_manager):
    labs = series("AHP-C001", 7)
    labs[2]["haemoglobin_g_dl"] = "95"  # g/L typed where g/dL is asked: labs row 4
    labs[5]["anc_per_ul"] = "many"  # labs row 7

    result = import_both(data_manager, labs)

    assert not result.ok
    found = messages(result)
    assert len(found) == 2, found
    assert found[0].startswith("labs row 4, column haemoglobin_g_dl: ")
    assert found[1] == 'labs row 7, column anc_per_ul: "many" is not a whole number'
    assert nothing_saved()


def test_a_bad_value_is_refused_in_a_dry_run_too(site, data_manager):
    labs = series("AHP-C001", 3, last=5)
    labs[1]["anc_per_ul"] = "-5"

    result = import_both(data_manager, labs, dry_run=True)

    assert {(p.labs, p.row, p.column) for p in result.problems} == {(True, 3, "anc_per_ul")}
    assert nothing_saved()


def test_a_row_of_a_patient_not_in_the_cohort_file_is_refused(site, data_manager):
    labs = [*series("AHP-C001", 3, last=3), lab_row("AHP-C999", 2, anc_per_ul=300)]

    result = import_both(data_manager, labs)

    assert messages(result) == [
        "labs row 6, column study_id: no patient AHP-C999 at site AHP in the cohort file"
    ]
    assert nothing_saved()


def test_a_row_of_a_patient_already_in_the_registry_says_so(site, data_manager):
    assert cohort_file.import_cohort(
        csv_bytes([DIED_OF_DISEASE]), name="first.csv", user=data_manager
    ).ok
    labs = [lab_row("AHP-B001", 2, anc_per_ul=300)]

    result = import_both(data_manager, labs, cohort=[ALIVE_CAR_T])

    assert len(result.problems) == 1
    assert str(result.problems[0]).startswith(
        "labs row 2, column study_id: patient AHP-B001 at site AHP is in the registry but not "
        "in the cohort file"
    )
    assert Patient.objects.count() == 1 and not LabValue.objects.exists()


def test_a_value_on_a_day_before_day_0_is_refused(site, data_manager):
    result = import_both(data_manager, [lab_row("AHP-C001", -3, anc_per_ul=3000)])

    assert [(p.row, p.column) for p in result.problems] == [(2, "date")]
    assert nothing_saved()


def test_a_refused_patient_row_and_a_bad_labs_row_are_both_reported(site, data_manager):
    labs = [lab_row("AHP-C001", 1, anc_per_ul=300), lab_row("AHP-C001", 2, ferritin_ng_ml="x")]

    result = import_both(data_manager, labs, cohort=[ALIVE_CAR_T | {"arm": "cart"}])

    assert (2, "arm") in [(p.row, p.column) for p in result.problems if not p.labs]
    assert [(p.row, p.column) for p in result.problems if p.labs] == [(3, "ferritin_ng_ml")]
    assert nothing_saved()


@pytest.mark.parametrize(
    "header, expected",
    [
        (
            ["study_id", "site", "date", "anc"],
            "labs row 1, column anc: unknown column (a typo would silently drop data)",
        ),
        (["study_id", "date", "anc_per_ul"], "labs row 1, column site: required column missing"),
    ],
)
def test_a_malformed_header_is_refused_and_nothing_saved(site, data_manager, header, expected):
    rows = [
        {"study_id": "AHP-C001", "site": "AHP", "date": "2022-03-02", "anc": "3", "anc_per_ul": "3"}
    ]

    result = cohort_file.import_cohort(
        csv_bytes([ALIVE_CAR_T]),
        name="cohort.csv",
        user=data_manager,
        labs=labs_bytes(rows, header=header),
    )

    assert any(message.startswith(expected) for message in messages(result)), messages(result)
    assert nothing_saved()


def test_an_unreadable_laboratory_file_refuses_the_import(site, data_manager):
    with pytest.raises(cohort_file.UnreadableFile) as refused:
        cohort_file.import_cohort(
            csv_bytes([ALIVE_CAR_T]),
            name="cohort.csv",
            user=data_manager,
            labs=b"\x00\x01binary",
            labs_name="cohort-labs.csv",
        )

    assert str(refused.value).startswith("The laboratory file cohort-labs.csv: This is not a CSV")
    assert nothing_saved()


def test_the_command_picks_up_the_laboratory_file_beside_the_cohort_file(
    tmp_path, site, administrator
):
    (tmp_path / "cohort-labs.csv").write_bytes(labs_bytes(series("AHP-C001", 7)))

    status, output = run_command(tmp_path, csv_bytes([ALIVE_CAR_T]))

    assert status == 0, output
    assert "Laboratory values from cohort-labs.csv, beside cohort.csv." in output
    assert "imported 1 patient(s) and 31 laboratory value row(s)" in output
    assert Treatment.objects.get().icaht_early_grade == 2


def test_the_command_reports_labs_rows_and_takes_an_explicit_file(tmp_path, site, administrator):
    other = tmp_path / "values.csv"
    other.write_bytes(labs_bytes([lab_row("AHP-C001", 1, igg_g_l="500")]))
    (tmp_path / "cohort-labs.csv").write_bytes(b"not, used\n")

    status, output = run_command(tmp_path, csv_bytes([ALIVE_CAR_T]), "--labs", str(other))

    assert status == 1, output
    assert "labs row 2, column igg_g_l: " in output
    assert "nothing saved" in output
    assert nothing_saved()
    status, output = run_command(tmp_path, csv_bytes([ALIVE_CAR_T]), "--no-labs")
    assert status == 0 and not LabValue.objects.exists()


# --- export ------------------------------------------------------------------------------------
@pytest.fixture
def cohort(site, administrator):
    result = import_both(administrator, series("AHP-C001", 7) + series("AHP-B001", 2, last=10))
    assert result.ok, result.problems


def export(tmp_path: Path, *args: str, name: str = "cohort.csv") -> Path:
    target = tmp_path / name
    call_command("export_cohort", str(target), *args, stdout=io.StringIO())
    return target


def read_csv(target: Path) -> list[dict[str, str]]:
    with target.open(encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def test_the_export_writes_the_laboratory_file_beside_the_cohort_file(tmp_path, cohort):
    export(tmp_path)

    rows = read_csv(tmp_path / "cohort-labs.csv")

    assert list(rows[0]) == LAB_HEADER
    assert len(rows) == 31 + 11
    assert rows[0] == lab_row("AHP-B001", 0, anc_per_ul=3000) | {
        name: "" for name in LAB_HEADER[4:]
    }
    assert [row["study_id"] for row in rows] == ["AHP-B001"] * 11 + ["AHP-C001"] * 31


def test_only_the_index_treatments_series_is_exported(tmp_path, cohort, administrator):
    patient = Patient.objects.get(study_id="AHP-C001")
    earlier = factories.treatment(
        user=administrator,
        patient=patient,
        arm="blinatumomab",
        product="Blinatumomab",
        day0=date(2021, 6, 1),
    )
    services.lab_series_save(
        treatment=earlier, rows=[{"date": date(2021, 6, 2), "anc_per_ul": 100}], user=administrator
    )
    export(tmp_path)

    rows = read_csv(tmp_path / "cohort-labs.csv")

    # The first index treatment by day 0 is the exported one (as in the cohort file's row).
    assert [row["date"] for row in rows if row["study_id"] == "AHP-C001"] == ["2021-06-02"]
    assert len(rows) == 11 + 1


def test_the_codebook_lists_the_laboratory_columns_with_units_and_ranges(tmp_path, cohort):
    export(tmp_path)

    codebook = {row["variable"]: row for row in read_csv(tmp_path / "cohort_codebook.csv")}

    assert list(codebook)[-8:] == ["date", *LAB_FIELDS]
    assert codebook["anc_per_ul"]["units"] == RANGES[("LabValue", "anc_per_ul")].unit
    assert codebook["anc_per_ul"]["allowed values"] == "0-100000"
    assert codebook["haemoglobin_g_dl"]["allowed values"] == "2-25"
    assert codebook["haemoglobin_g_dl"]["type"] == "number"
    assert codebook["date"]["label"].startswith("Laboratory file: ")


def test_a_deidentified_laboratory_file_uses_the_cohort_files_codes_and_days(tmp_path, cohort):
    export(tmp_path, "--deidentify")

    main = {row["patient_code"]: row for row in read_csv(tmp_path / "cohort.csv")}
    labs = read_csv(tmp_path / "cohort-labs.csv")
    raw = (tmp_path / "cohort-labs.csv").read_text()

    assert list(labs[0]) == [name for name, _ in LAB_DEIDENTIFIED_COLUMNS]
    assert {row["patient_code"] for row in labs} == set(main)
    car_t = next(code for code, row in main.items() if row["arm"] == "car_t")
    assert [row["day"] for row in labs if row["patient_code"] == car_t] == [
        str(n) for n in range(31)
    ]
    assert not DATE.search(raw) and "AHP-C001" not in raw and "C001" not in raw
    # Ordered by the random code, then the day: not by study ID.
    assert [(r["patient_code"], int(r["day"])) for r in labs] == sorted(
        (r["patient_code"], int(r["day"])) for r in labs
    )
    documented = Path(__file__).parents[2].joinpath("docs", "DEIDENTIFICATION.md").read_text()
    for name, reason in LAB_DEIDENTIFIED_COLUMNS:
        assert reason and f"`{name}`" in documented


@pytest.mark.parametrize("fmt", ["sav", "dta"])
def test_spss_and_stata_exports_get_a_laboratory_file_of_their_own(tmp_path, cohort, fmt):
    export(tmp_path, "--format", fmt, name=f"cohort.{fmt}")

    frame, meta = (pyreadstat.read_sav if fmt == "sav" else pyreadstat.read_dta)(
        str(tmp_path / f"cohort-labs.{fmt}")
    )

    assert list(frame.columns) == LAB_HEADER
    assert len(frame) == 42
    assert meta.column_names_to_labels["anc_per_ul"] == "Laboratory file: Absolute neutrophil count"


def test_an_xlsx_export_carries_the_series_on_a_sheet_and_imports_back(
    tmp_path, cohort, administrator
):
    target = export(tmp_path, "--format", "xlsx", name="cohort.xlsx")
    sheet = pd.read_excel(target, sheet_name="labs")
    grades = dict(Treatment.objects.values_list("patient__study_id", "icaht_early_grade"))
    assert len(sheet) == 42 and list(sheet.columns) == LAB_HEADER
    assert not (tmp_path / "cohort-labs.csv").exists()
    empty_registry()

    result = cohort_file.import_cohort(target.read_bytes(), name=target.name, user=administrator)

    assert result.ok, result.problems
    assert result.lab_values_created == 42
    assert dict(Treatment.objects.values_list("patient__study_id", "icaht_early_grade")) == grades


def empty_registry() -> None:
    """Every patient and record deleted (the test's setup, not the app's)."""
    for model in (
        LabValue,
        Death,
        CrsEpisode,
        IcansEpisode,
        ResponseAssessment,
        Transplant,
        Relapse,
        FollowUpContact,
        DataQualityQuery,
        Treatment,
        Patient,
    ):
        model.objects.all().delete()


# --- the web pages -----------------------------------------------------------------------------
def text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode())).replace(
        "\xa0", " "
    )


def upload(client, labs: list[dict[str, str]], *, dry_run: bool, **headers):
    data = {
        "file": SimpleUploadedFile("cohort.csv", csv_bytes([ALIVE_CAR_T]), "text/csv"),
        "labs": SimpleUploadedFile("cohort-labs.csv", labs_bytes(labs), "text/csv"),
    }
    if dry_run:
        data["dry_run"] = "on"
    return client.post(UPLOAD, data, **headers)


def test_the_upload_page_imports_the_laboratory_file_too(client, site, data_manager):
    client.force_login(data_manager)

    page = text(upload(client, series("AHP-C001", 7), dry_run=True))
    assert "Dry run: 31 laboratory value rows would be imported with them." in page
    assert nothing_saved()
    page = text(upload(client, series("AHP-C001", 7), dry_run=False))

    assert "Imported 31 laboratory value rows with them; ICAHT derived from the series." in page
    assert Treatment.objects.get().icaht_early_grade == 2


@pytest.mark.parametrize(
    "language, expected",
    [("en", "labs row 3, column crp_mg_l: "), ("zh-hans", "实验室文件第 3 行，crp_mg_l 列：")],
)
def test_the_upload_page_lists_labs_problems_in_the_readers_language(
    client, site, data_manager, language, expected
):
    client.force_login(data_manager)
    labs = series("AHP-C001", 0, last=2)
    labs[1]["crp_mg_l"] = "lots"

    page = text(upload(client, labs, dry_run=False, HTTP_ACCEPT_LANGUAGE=language))

    assert expected in page
    assert nothing_saved()


def test_the_export_page_offers_a_zip_with_the_laboratory_file(client, cohort, users):
    client.force_login(users[Role.PI])

    response = client.post("/export/", {"format": "csv", "deidentify": "on", "labs": "on"})

    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as archive:
        names = sorted(archive.namelist())
        cohort_name = next(n for n in names if n.endswith("_deidentified.csv"))
        labs_name = next(n for n in names if n.endswith("-labs.csv"))
        main = list(csv.DictReader(io.StringIO(archive.read(cohort_name).decode())))
        labs = list(csv.DictReader(io.StringIO(archive.read(labs_name).decode())))
    assert len(names) == 3 and any(n.endswith("_codebook.csv") for n in names)
    assert {row["patient_code"] for row in labs} == {row["patient_code"] for row in main}
    assert len(labs) == 42
