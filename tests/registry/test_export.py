"""Exporting the analysis set: four formats with their labels, de-identified, logged, scoped."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyreadstat
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import include, path

from registry import (  # noqa: F401 (admin pages)
    admin_exchange,
    cohort_file,
    exchange_views,
    services,
)
from registry.cohort_file import analysis_set
from registry.domain.vocabulary import Role
from registry.models import (
    CarPersistence,
    CrsEpisode,
    Death,
    ExportLog,
    FollowUpContact,
    IcansEpisode,
    Infection,
    IvigCourse,
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
    DIED_OF_CRS,
    DIED_OF_DISEASE,
    csv_bytes,
)

# The export pages, until registry/urls.py routes them (the project's own URLs come first).
urlpatterns = [
    path("", include("config.urls")),
    path("export/", exchange_views.export_page, name="export"),
    path("export/codebook.csv", exchange_views.export_codebook, name="export-codebook"),
]
pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

COHORT = [ALIVE_CAR_T, DIED_OF_DISEASE, DIED_OF_CRS]
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@pytest.fixture
def cohort(site, administrator):
    result = cohort_file.import_cohort(csv_bytes(COHORT), name="cohort.csv", user=administrator)
    assert result.ok, result.problems


def export(tmp_path: Path, *args: str, name: str = "cohort.csv") -> Path:
    target = tmp_path / name
    call_command("export_cohort", str(target), *args, stdout=io.StringIO())
    return target


def read_csv(target: Path) -> list[dict[str, str]]:
    with target.open(encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def test_the_csv_export_is_the_flat_file_it_was_imported_from(tmp_path, cohort):
    rows = read_csv(export(tmp_path))

    assert list(rows[0]) == [column.name for column in cohort_file.COLUMNS]
    by_id = {row["study_id"]: row for row in rows}
    assert by_id["AHP-C001"] == ALIVE_CAR_T | {
        "bm_blast_pct": "40.5",
        "crs_grading_system": "astct2019",
    }
    assert by_id["AHP-B001"] == DIED_OF_DISEASE | {
        "sex": "M",
        "arm": "blinatumomab",
        "bm_blast_pct": "1.2",
        "last_contact_date": "2023-01-15",  # the date of death, for a patient who died
    }
    # A death from CRS marks its episode grade 5, which is an ASTCT grade (Lee 2019).
    assert by_id["AHP-C002"] == DIED_OF_CRS | {"crs_grading_system": "astct2019"}


def test_an_exported_file_imports_into_an_empty_registry_unchanged(tmp_path, cohort, administrator):
    first = export(tmp_path, name="first.csv")
    for model in (
        Death,
        CrsEpisode,
        IcansEpisode,
        ResponseAssessment,
        Transplant,
        Relapse,
        FollowUpContact,
        Treatment,
        Patient,
    ):
        model.objects.all().delete()  # an empty registry (the test's setup, not the app's)

    result = cohort_file.import_cohort(first.read_bytes(), name="first.csv", user=administrator)

    assert result.ok, result.problems
    assert read_csv(export(tmp_path, name="second.csv")) == read_csv(first)


def test_the_codebook_names_each_variable_its_label_type_values_and_units(tmp_path, cohort):
    target = export(tmp_path)

    codebook = {row["variable"]: row for row in read_csv(tmp_path / "cohort_codebook.csv")}

    # The cohort file's columns, then those its laboratory file adds.
    assert list(codebook) == [column.name for column in cohort_file.COLUMNS] + [
        "date",
        *LAB_FIELDS,
    ]
    assert codebook["arm"]["allowed values"] == "blinatumomab, car_t"
    assert codebook["arm"]["codes (sav/dta)"] == "1=blinatumomab; 2=car_t"
    assert codebook["bm_blast_pct"]["units"] == "%"
    assert codebook["treatment_start"]["type"] == "date (YYYY-MM-DD)"
    assert target.exists()


def test_the_xlsx_export_reads_back_with_pandas_and_carries_the_codebook(tmp_path, cohort):
    target = export(tmp_path, "--format", "xlsx", name="cohort.xlsx")

    frame = pd.read_excel(target, sheet_name="cohort", dtype={"year_of_birth": int})
    codebook = pd.read_excel(target, sheet_name="codebook")

    assert sorted(frame["study_id"]) == ["AHP-B001", "AHP-C001", "AHP-C002"]
    assert str(frame.loc[frame.study_id == "AHP-C001", "treatment_start"].iloc[0].date()) == (
        "2022-03-01"
    )
    assert list(codebook["variable"]) == [*frame.columns, "date", *LAB_FIELDS]


@pytest.mark.parametrize(
    "fmt, reader", [("sav", pyreadstat.read_sav), ("dta", pyreadstat.read_dta)]
)
def test_spss_and_stata_files_carry_variable_and_value_labels(tmp_path, cohort, fmt, reader):
    target = export(tmp_path, "--format", fmt, name=f"cohort.{fmt}")

    frame, meta = reader(str(target))
    labelled, _ = reader(str(target), apply_value_formats=True)

    assert meta.column_names_to_labels["arm"] == "Treatment arm"
    assert meta.column_names_to_labels["bm_blast_pct"] == "Marrow blasts at day 0"
    assert {int(k): v for k, v in meta.variable_value_labels["arm"].items()} == {
        1: "blinatumomab",
        2: "car_t",
    }
    assert sorted(labelled["arm"]) == ["blinatumomab", "car_t", "car_t"]
    assert sorted(labelled["death_cause"].dropna()) == ["crs", "disease"]
    assert set(frame["year_of_birth"]) == {1990}
    assert str(frame.loc[frame.study_id == "AHP-C001", "treatment_start"].iloc[0]) == "2022-03-01"


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "sav", "dta"])
def test_a_deidentified_export_holds_no_study_id_and_no_calendar_date(tmp_path, cohort, fmt):
    target = export(tmp_path, "--deidentify", "--format", fmt, name=f"anonymous.{fmt}")

    if fmt == "csv":
        frame = pd.read_csv(target, dtype=str)
    elif fmt == "xlsx":
        frame = pd.read_excel(target, sheet_name="cohort", dtype=str)
    else:
        frame, _ = (pyreadstat.read_sav if fmt == "sav" else pyreadstat.read_dta)(str(target))
    text = frame.astype(str).to_csv(index=False)

    assert "study_id" not in frame.columns and "year_of_birth" not in frame.columns
    assert not [
        name for name in frame.columns if name.endswith("_date") or name == "treatment_start"
    ]
    for study_id in ("AHP-C001", "AHP-B001", "AHP-C002", "C001", "B001"):
        assert study_id not in text
    assert not DATE.search(text)
    assert "1990" not in text
    assert sorted(frame["age_at_day0"].astype(float)) == [32, 32, 32]
    ages = frame.set_index(frame["death_day"].astype(float).fillna(-1))
    assert ages.loc[8.0, "last_contact_day"] in ("8", 8.0)  # died on day 8
    assert len(set(frame["patient_code"])) == 3


def test_random_codes_differ_between_two_deidentified_exports(tmp_path, cohort):
    first = read_csv(export(tmp_path, "--deidentify", name="one.csv"))
    second = read_csv(export(tmp_path, "--deidentify", name="two.csv"))

    assert {row["patient_code"] for row in first}.isdisjoint(row["patient_code"] for row in second)


def test_every_export_is_logged_with_who_when_what_and_whether_identified(tmp_path, cohort, users):
    pi = users[Role.PI]
    export(tmp_path, "--user", "pi", "--deidentify", "--format", "dta", name="pi.dta")
    export(tmp_path, "--user", "data_manager", name="dm.csv")

    logs = list(ExportLog.objects.order_by("pk"))

    assert [(log.user, log.format, log.identified, log.rows, log.scope) for log in logs] == [
        (pi, "dta", False, 3, "AHP"),
        (users[Role.DATA_MANAGER], "csv", True, 3, "AHP"),
    ]
    assert all(log.created_at is not None for log in logs)


@pytest.mark.parametrize(
    "username, args, allowed",
    [
        ("pi", ["--deidentify"], True),
        ("pi", [], False),
        ("nurse", ["--deidentify"], False),
        ("data_manager", [], True),
    ],
)
def test_who_may_export_follows_the_permission_matrix(tmp_path, users, username, args, allowed):
    if allowed:
        export(tmp_path, "--user", username, *args)
        assert ExportLog.objects.count() == 1
    else:
        with pytest.raises(CommandError, match="may not export"):
            export(tmp_path, "--user", username, *args)
        assert not ExportLog.objects.exists()


def test_an_export_holds_only_the_users_sites(tmp_path, cohort, other_site, nurse):
    elsewhere = factories.patient(user=factories.UserFactory(role="administrator"), site=other_site)
    factories.treatment(user=factories.UserFactory(role="administrator"), patient=elsewhere)

    mine = read_csv(export(tmp_path, "--user", "data_manager", name="mine.csv"))
    everything = read_csv(export(tmp_path, name="all.csv"))

    assert {row["site"] for row in mine} == {"AHP"}
    assert {row["site"] for row in everything} == {"AHP", "XHC"}


def _count_queries(user) -> tuple[int, list[dict]]:
    with CaptureQueriesContext(connection) as context:
        produced = list(analysis_set.analysis_rows(user=user))
    return len(context.captured_queries), produced


def _add(user, numbers: range, site: str = "AHP") -> None:
    rows = [ALIVE_CAR_T | {"site": site, "study_id": f"{site}-{n:03d}"} for n in numbers]
    result = cohort_file.import_cohort(csv_bytes(rows), name="c.csv", user=user)
    assert result.ok, result.problems


def test_an_export_reads_each_chunk_of_patients_with_a_fixed_number_of_queries(site, administrator):
    _add(administrator, range(5))
    few, _ = _count_queries(administrator)
    _add(administrator, range(5, 30))

    assert _count_queries(administrator)[0] == few
    assert analysis_set.EXPORT_CHUNK >= 100


def test_the_queries_grow_by_page_of_patients_not_by_patient(site, administrator, monkeypatch):
    monkeypatch.setattr(analysis_set, "EXPORT_CHUNK", 10)
    _add(administrator, range(5))
    one_page, _ = _count_queries(administrator)
    _add(administrator, range(5, 25))

    many, rows = _count_queries(administrator)

    # One query for the sites, then the same number for each page (of 10, 10 and 5 patients).
    assert many == 1 + 3 * (one_page - 1)
    assert [row["study_id"] for row in rows] == [f"AHP-{n:03d}" for n in range(25)]


def test_pages_of_patients_give_the_rows_of_one_read(site, other_site, administrator, monkeypatch):
    _add(administrator, range(12))
    _add(administrator, range(7), site="XHC")
    cohort_file.import_cohort(csv_bytes(COHORT), name="cohort.csv", user=administrator)
    _, whole = _count_queries(administrator)

    monkeypatch.setattr(analysis_set, "EXPORT_CHUNK", 3)
    _, paged = _count_queries(administrator)

    assert paged == whole
    assert len(whole) == 22
    assert [(row["site"], row["study_id"]) for row in whole] == sorted(
        (row["site"], row["study_id"]) for row in whole
    )


def test_the_first_treatment_by_day0_counts_and_every_treatments_last_contact(
    tmp_path, cohort, administrator
):
    patient = Patient.objects.get(study_id="AHP-C001")
    earlier = factories.treatment(
        user=administrator,
        patient=patient,
        arm="blinatumomab",
        product="Blinatumomab",
        day0=date(2021, 6, 1),
    )
    services.record_create(
        FollowUpContact,
        user=administrator,
        treatment=earlier,
        date=date(2022, 1, 10),
        disease_status="remission",
    )

    row = {row["study_id"]: row for row in read_csv(export(tmp_path))}["AHP-C001"]

    # The later CAR-T's toxicity, response and transplant are not the earlier treatment's ...
    assert (row["arm"], row["treatment_start"], row["product"]) == (
        "blinatumomab",
        "2021-06-01",
        "Blinatumomab",
    )
    assert row["crs_grade"] == row["response"] == row["hsct_type"] == ""
    # ... but the last contact is the patient's, under either treatment.
    assert row["last_contact_date"] == ALIVE_CAR_T["last_contact_date"]


# --- the rules of the flat file's derived columns ----------------------------------------------
def episode(pk: int, *, derived: int | None = None, recorded: int | None = None, system="lee2014"):
    return analysis_set.Episode(pk, derived, recorded, system)


def test_the_worst_grade_uses_the_derived_grade_first_and_the_first_episode_on_a_tie():
    episodes = [
        episode(1, recorded=2),
        episode(2, derived=3, recorded=1),
        episode(3, recorded=3, system="penn"),
        episode(4),
    ]

    assert episodes[1].grade == 3 and episodes[0].grade == 2 and episodes[3].grade is None
    assert analysis_set.worst_grade("yes", episodes) == (3, "astct2019")
    assert analysis_set.worst_grade("yes", episodes[2:]) == (3, "penn")
    assert analysis_set.worst_grade("no", episodes) == (0, None)
    assert analysis_set.worst_grade("unknown", episodes) == (None, None)
    assert analysis_set.worst_grade("yes", [episode(5)]) == (None, None)


DAY0 = date(2022, 3, 1)


def assessment(pk: int, day: int, response: str, mrd_status: str = ""):
    return analysis_set.Assessment(pk, DAY0 + timedelta(days=day), response, mrd_status)


def test_the_best_response_is_an_mrd_negative_cr_first_within_day_90():
    cr_positive = assessment(1, 28, "cr", "positive")
    cri_negative = assessment(2, 60, "cri", "negative")
    late_cr = assessment(3, 91, "cr", "negative")
    early_pr = assessment(4, 14, "pr")

    assert analysis_set.best_response([cr_positive, cri_negative, late_cr], day0=DAY0) == (
        cri_negative
    )
    assert analysis_set.best_response([early_pr, cr_positive], day0=DAY0) == cr_positive
    assert analysis_set.best_response([early_pr, assessment(5, 14, "pr")], day0=DAY0) == early_pr
    # None in the window: the first assessment.
    assert analysis_set.best_response([late_cr, assessment(6, -3, "nr")], day0=DAY0).pk == 6
    assert analysis_set.best_response([], day0=DAY0) is None
    assert analysis_set.mrd_negative(cri_negative) == "yes"
    assert analysis_set.mrd_negative(cr_positive) == "no"
    assert analysis_set.mrd_negative(early_pr) is None
    assert analysis_set.mrd_negative(None) is None


# --- the download page -------------------------------------------------------------------------
def test_a_pi_downloads_a_deidentified_csv_streamed_and_logged(client, cohort, users):
    client.force_login(users[Role.PI])

    page = client.get("/export/")
    response = client.post("/export/", {"format": "csv", "deidentify": ""})

    assert page.status_code == 200
    assert response.status_code == 200 and response.streaming
    body = b"".join(response.streaming_content).decode()
    assert body.startswith("patient_code,site,")
    assert not DATE.search(body)
    log = ExportLog.objects.get()
    assert (log.user, log.identified, log.via) == (users[Role.PI], False, "web")


def test_a_data_manager_downloads_an_identified_workbook(client, cohort, data_manager):
    client.force_login(data_manager)

    response = client.post("/export/", {"format": "xlsx"})

    assert response.status_code == 200
    frame = pd.read_excel(io.BytesIO(b"".join(response.streaming_content)), sheet_name="cohort")
    assert len(frame) == 3
    assert ExportLog.objects.get().identified is True


def test_a_nurse_may_not_open_the_export_page(client, nurse):
    client.force_login(nurse)

    assert client.get("/export/").status_code == 403
    assert client.post("/export/", {"format": "csv", "deidentify": "on"}).status_code == 403
    assert client.get("/export/codebook.csv").status_code == 403


def test_the_codebook_downloads_as_csv(client, users):
    client.force_login(users[Role.PI])

    response = client.get("/export/codebook.csv?deidentify=1")

    assert response.status_code == 200
    assert response.content.decode().splitlines()[1].startswith("patient_code,")


# --- the round trip (INTERFACES.md section 3) -------------------------------------------------
# SAP.md section 9: what describes the computation rather than the data's meaning.
PROVENANCE = ("generated_at", "data_fingerprint", "code_version", "row_counts")
# What the flat file cannot carry, by its definition in INTERFACES.md section 3: it holds each
# toxicity's grade but not the worst-day findings it was derived from (so every grade comes
# back "recorded", not "derived"), and one last contact per patient rather than the visit
# history (so follow-up visits in between come back overdue) nor extramedullary disease.
NOT_IN_THE_FLAT_FILE = (
    ("crs", "grade_source"),
    ("icans", "grade_source"),
    ("completeness",),
    # the late events (infections, IVIG courses, persistence) are not in the cohort file
    ("competing_risks", "infection_by_day100"),
    ("hematotoxicity", "ivig"),
    ("hematotoxicity", "car_persistence"),
)


def _analytics() -> dict:
    """The whole registry's analytics output (SAP.md section 10), as the nightly run computes
    it (its figures, drawn from the same output, are not compared)."""
    from analytics import services as analytics
    from analytics.models import Trigger

    output = analytics.snapshot_compute(site=None, trigger=Trigger.COMMAND).output
    for key in PROVENANCE:
        output.pop(key)
    for *parents, key in NOT_IN_THE_FLAT_FILE:
        block = output
        for parent in parents:
            block = block[parent]
        block.pop(key)
    return output


def _icaht_by_patient() -> dict[tuple[str, str], tuple]:
    """Each analysis-set treatment's derived ICAHT (grades, rules and their numbers)."""
    rows = Treatment.objects.order_by("patient_id", "day0", "pk").values_list(
        "patient__site__code", "patient__study_id", *services.ICAHT_FIELDS
    )
    first: dict[tuple[str, str], tuple] = {}
    for site, study_id, *icaht in rows:
        first.setdefault((site, study_id), tuple(icaht))
    return first


def test_the_demo_cohort_exported_and_imported_into_an_empty_registry_gives_the_same_analytics(
    tmp_path, settings
):
    from registry import demo
    from registry.models import DataQualityQuery, Site

    settings.IMMUNOREG_TODAY = demo.CUTOFF.isoformat()
    call_command("seed_demo", stdout=io.StringIO())
    before = _analytics()
    icaht_before = _icaht_by_patient()
    lab_values = LabValue.objects.count()
    exported = export(tmp_path, name="demo.csv")
    assert (tmp_path / "demo-labs.csv").exists()
    for model in (
        LabValue,
        Infection,
        IvigCourse,
        CarPersistence,
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
        Site,
    ):
        model.objects.all().delete()  # an empty registry (the test's setup, not the app's)

    # The laboratory file beside it (demo-labs.csv) is picked up and imported with it.
    call_command("import_cohort", str(exported), "--create-sites", stdout=io.StringIO())

    assert Patient.objects.count() == 101
    assert LabValue.objects.count() == lab_values > 0
    # The ICAHT derived from the imported series, treatment by treatment, and the analytics.
    assert _icaht_by_patient() == icaht_before
    after = _analytics()
    assert after["hematotoxicity"] == before["hematotoxicity"]
    assert after == before
    assert before["populations"]["car_t"]["analysis"] == 80
