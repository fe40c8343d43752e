"""Importing the flat cohort file: all or nothing, every problem as `row R, column C: message`."""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path

import pytest
from django.contrib import admin
from django.core.management import CommandError, call_command
from django.urls import include, path

from registry import admin_exchange, cohort_file
from registry.models import (
    CrsEpisode,
    Death,
    FollowUpContact,
    IcansEpisode,
    ImportRun,
    Patient,
    Relapse,
    ResponseAssessment,
    Site,
    Transplant,
    Treatment,
)

pytestmark = pytest.mark.django_db

HEADER = [column.name for column in cohort_file.COLUMNS]
ALIVE_CAR_T = {
    "study_id": "AHP-C001",
    "site": "AHP",
    "sex": "F",
    "year_of_birth": "1990",
    "ph_status": "negative",
    "arm": "car_t",
    "treatment_start": "2022-03-01",
    "product": "Anti-CD19 CAR-T (4-1BB)",
    "disease_burden": "morphologic",
    "bm_blast_pct": "40.5",
    "relapse_status": "first_relapse",
    "prior_hsct": "no",
    "crs_grade": "2",
    "crs_grading_system": "",
    "icans_grade": "0",
    "response": "cr",
    "response_date": "2022-03-29",
    "mrd_negative": "yes",
    "hsct_type": "ucbt",
    "hsct_date": "2022-05-10",
    "relapse_date": "",
    "death_date": "",
    "death_cause": "",
    "last_contact_date": "2023-03-01",
}
DIED_OF_DISEASE = ALIVE_CAR_T | {
    "study_id": "AHP-B001",
    "sex": "m",
    "arm": "Blinatumomab",
    "product": "Blinatumomab",
    "disease_burden": "mrd_only",
    "bm_blast_pct": "1.2",
    "relapse_status": "mrd_persistent_cr1",
    "crs_grade": "0",
    "icans_grade": "",
    "mrd_negative": "no",
    "hsct_type": "",
    "hsct_date": "",
    "relapse_date": "2022-08-01",
    "death_date": "2023-01-15",
    "death_cause": "disease",
    "last_contact_date": "2022-12-20",
}
DIED_OF_CRS = ALIVE_CAR_T | {
    "study_id": "AHP-C002",
    "crs_grade": "5",
    "crs_grading_system": "lee2014",
    "icans_grade": "3",
    "response": "",
    "response_date": "",
    "mrd_negative": "",
    "hsct_type": "",
    "hsct_date": "",
    "death_date": "2022-03-09",
    "death_cause": "crs",
    "last_contact_date": "2022-03-09",
}


def csv_bytes(rows: list[dict[str, str]], header: list[str] = HEADER) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def run_command(tmp_path: Path, content: bytes, *args: str, name: str = "cohort.csv"):
    """(exit status, stdout) of import_cohort on a file holding `content`."""
    path = tmp_path / name
    path.write_bytes(content)
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("import_cohort", str(path), *args, stdout=out, stderr=err)
    except SystemExit as exit_:
        return exit_.code, out.getvalue() + err.getvalue()
    return 0, out.getvalue() + err.getvalue()


def test_a_good_file_is_imported_with_every_record(tmp_path, site, data_manager):
    content = csv_bytes([ALIVE_CAR_T, DIED_OF_DISEASE, DIED_OF_CRS])

    status, output = run_command(tmp_path, content, "--user", "data_manager")

    assert status == 0, output
    assert "imported 3 patient(s)" in output
    assert Patient.objects.filter(site=site).count() == 3
    assert Treatment.objects.count() == 3
    alive = Treatment.objects.get(patient__study_id="AHP-C001")
    assert (alive.crs_status, alive.icans_status, alive.prior_hsct) == ("yes", "no", False)
    assert alive.bm_blast_pct == pytest.approx(40.5)
    assert alive.responses.get().mrd_status == "negative"
    assert alive.transplants.get().type == "ucbt"
    assert alive.contacts.get().date == date(2023, 3, 1)
    blinatumomab = Treatment.objects.get(patient__study_id="AHP-B001")
    assert (blinatumomab.arm, blinatumomab.patient.sex) == ("blinatumomab", "M")
    assert (blinatumomab.crs_status, blinatumomab.icans_status) == ("no", "unknown")
    assert blinatumomab.relapses.get().date == date(2022, 8, 1)
    assert blinatumomab.contacts.get().disease_status == "relapsed"
    fatal = CrsEpisode.objects.get(treatment__patient__study_id="AHP-C002")
    assert (fatal.grade, fatal.died_of_crs, fatal.grading_system) == (5, True, "lee2014")
    assert Death.objects.get(patient__study_id="AHP-C002").cause == "crs"
    assert IcansEpisode.objects.get().recorded_grade == 3
    assert not FollowUpContact.objects.filter(treatment__patient__study_id="AHP-C002").exists()


def test_each_imported_record_history_names_the_import_and_the_user(tmp_path, site, data_manager):
    run_command(tmp_path, csv_bytes([ALIVE_CAR_T]), "--user", "data_manager")

    run = ImportRun.objects.get()
    reason = f"import of cohort.csv (run {run.pk}) by data_manager"
    for model in (Patient, Treatment, CrsEpisode, ResponseAssessment, Transplant, FollowUpContact):
        entry = model.history.get()
        assert (entry.history_change_reason, entry.history_user) == (reason, data_manager)
    assert (run.outcome, run.rows, run.patients_created, run.user) == (
        "imported",
        1,
        1,
        data_manager,
    )


def test_imported_records_history_holds_the_values_a_form_save_would(tmp_path, site):
    """The import writes its audit rows together at the end (registry.services.batched_writes);
    each holds the record's values as it was saved, as django-simple-history's own row does."""
    run_command(tmp_path, csv_bytes([DIED_OF_CRS]))

    for model in (Patient, Treatment, CrsEpisode, IcansEpisode, Death):
        record = model.objects.get()
        entry = model.history.get()
        assert entry.history_type == "+"
        for field in model.history.model.tracked_fields:
            assert getattr(entry, field.attname) == getattr(record, field.attname), field.name
    # The fatal episode was saved once and marked with the death: its row has the final state.
    assert CrsEpisode.history.get().died_of_crs is True


def test_the_import_costs_a_fixed_number_of_statements_per_row(
    tmp_path, site, django_assert_max_num_queries
):
    """No savepoint per record and the audit rows in batches: a few statements per record,
    whatever the number of rows (a row of ALIVE_CAR_T writes 6 records)."""
    rows = [ALIVE_CAR_T | {"study_id": f"AHP-C{n:03}"} for n in range(20)]
    with django_assert_max_num_queries(20 * 10 + 30) as captured:
        status, output = run_command(tmp_path, csv_bytes(rows))

    assert status == 0, output
    savepoints = [q for q in captured.captured_queries if q["sql"].startswith("SAVEPOINT")]
    assert len(savepoints) <= 3  # the import's, the queries' refresh and the run's log: not per row


def test_without_a_user_the_import_runs_as_the_system_administrator(tmp_path, site):
    status, _ = run_command(tmp_path, csv_bytes([ALIVE_CAR_T]))

    assert status == 0
    assert Patient.history.get().history_user.username == "import"


def test_a_file_with_one_error_of_each_kind_gets_every_message_and_saves_nothing(
    tmp_path, site, other_site, data_manager, patient
):
    def bad(number: int, **values: str) -> dict[str, str]:
        return ALIVE_CAR_T | {"study_id": f"AHP-X{number:02d}", "notes": ""} | values

    rows = [
        bad(2, arm="cart"),  # an enumeration with a typo
        bad(3, treatment_start="2023-02-30"),  # a date that does not exist
        bad(4, bm_blast_pct="forty"),  # not a number
        bad(5, sex=""),  # a required value left blank
        bad(6, response_date=""),  # a response without its date
        bad(7, response_date="2022-02-20"),  # DOMAIN.md: response on or after day 0
        bad(8, last_contact_date="2099-01-01"),  # DOMAIN.md: no date in the future
        bad(9, disease_burden="mrd_only", bm_blast_pct="20"),  # MRD-only means blasts < 5%
        bad(10, crs_grade="5"),  # grade 5 CRS needs a death from CRS
        bad(11, death_date="2022-06-01", death_cause="crs", last_contact_date="2022-06-01"),
        bad(12, relapse_date="2022-03-15"),  # DOMAIN.md: no relapse before the first CR
        bad(13, site="ZZZ"),  # a site the registry does not know
        bad(14, study_id="AHP-X02"),  # the same patient twice in the file
        bad(15, study_id="P001"),  # a patient already in the registry
        bad(16, death_date="2022-06-01", death_cause="disease"),  # last contact after death
        bad(17, year_of_birth="1800"),  # DOMAIN.md: year of birth in the last 110 years
        bad(18, crs_grade="7"),  # not a grade
        bad(19, site="XHC"),  # not one of the data manager's sites
        bad(20),  # a good row among them
    ]
    content = csv_bytes(rows, header=[*HEADER, "notes"])

    status, output = run_command(tmp_path, content, "--user", "data_manager")

    assert status == 1
    problems = [line for line in output.splitlines() if line.startswith("row ")]
    where = [line.split(":")[0] for line in problems]
    assert where == [
        "row 1, column notes",
        "row 2, column arm",
        "row 3, column treatment_start",
        "row 4, column bm_blast_pct",
        "row 5, column sex",
        "row 6, column response_date",
        "row 7, column response_date",
        "row 8, column last_contact_date",
        "row 9, column bm_blast_pct",
        "row 10, column crs_grade",
        "row 11, column death_cause",
        "row 12, column relapse_date",
        "row 13, column site",
        "row 14, column study_id",
        "row 15, column study_id",
        "row 16, column last_contact_date",
        "row 17, column year_of_birth",
        "row 18, column crs_grade",
        "row 19, column site",
    ], output
    text = "\n".join(problems)
    for expected in (
        'row 2, column arm: "cart" is not one of: blinatumomab, car_t',
        "row 3, column treatment_start: 2023-02-30 is not a real date",
        'row 4, column bm_blast_pct: "forty" is not a number',
        "row 5, column sex: a value is required",
        "row 6, column response_date: required with response",
        "row 7, column response_date: The response date must be on or after day 0 (2022-03-01)",
        "row 8, column last_contact_date: The contact date cannot be in the future",
        "row 9, column bm_blast_pct: MRD-only disease means morphological remission",
        "row 10, column crs_grade: A grade 5 CRS episode means death from CRS",
        "row 11, column death_cause: Death from CRS requires a grade 5 CRS episode",
        "row 12, column relapse_date: A relapse cannot be dated before the first complete remission",
        "row 13, column site: no site has the code ZZZ",
        "row 14, column study_id: study ID AHP-X02 appears twice in the file (first on row 2)",
        f"row 15, column study_id: Study ID P001 already exists at this site (record {patient.pk})",
        "row 16, column last_contact_date: for a patient who died this is the date of death",
        "row 17, column year_of_birth: The year of birth must be between",
        "row 18, column crs_grade: 7 is not a grade",
        "row 19, column site: you may not import patients at site XHC",
    ):
        assert expected in text, expected
    assert list(Patient.objects.values_list("study_id", flat=True)) == ["P001"]
    assert not Treatment.objects.exclude(patient=patient).exists()
    run = ImportRun.objects.get()
    assert (run.outcome, run.problem_count, run.patients_created) == ("rejected", 19, 0)


def test_a_missing_required_column_is_reported_once_against_the_header(tmp_path, site):
    header = [name for name in HEADER if name not in ("sex", "last_contact_date")]

    status, output = run_command(tmp_path, csv_bytes([ALIVE_CAR_T, DIED_OF_DISEASE], header))

    assert status == 1
    assert [line for line in output.splitlines() if line.startswith("row ")] == [
        "row 1, column sex: required column missing from the header",
        "row 1, column last_contact_date: required column missing from the header",
    ]


def test_a_blank_cell_means_unknown_where_the_registry_allows_it(
    tmp_path, site, django_capture_on_commit_callbacks
):
    row = ALIVE_CAR_T | {"disease_burden": "", "relapse_status": "", "last_contact_date": ""}

    with django_capture_on_commit_callbacks(execute=True):
        status, output = run_command(tmp_path, csv_bytes([row]))

    assert status == 0, output
    treatment = Treatment.objects.get()
    assert (treatment.disease_burden, treatment.relapse_status) == ("", "")
    assert not FollowUpContact.objects.exists()
    assert treatment.patient.queries.filter(kind="baseline_incomplete", is_open=True).exists()


def test_optional_columns_may_be_left_out_of_the_header(tmp_path, site):
    required = [column.name for column in cohort_file.COLUMNS if column.required]

    status, output = run_command(tmp_path, csv_bytes([ALIVE_CAR_T], required))

    assert status == 0, output
    treatment = Treatment.objects.get()
    assert (treatment.crs_status, treatment.patient.ph_status) == ("unknown", "unknown")
    assert not ResponseAssessment.objects.exists()


def test_a_dry_run_checks_everything_and_saves_nothing(tmp_path, site):
    status, output = run_command(tmp_path, csv_bytes([ALIVE_CAR_T, DIED_OF_CRS]), "--dry-run")

    assert status == 0
    assert "dry run, 2 patient(s) would be imported; nothing saved" in output
    assert not Patient.objects.exists()
    assert not Patient.history.exists()
    assert ImportRun.objects.get().outcome == "validated"


def test_a_dry_run_reports_the_same_problems_as_an_import(tmp_path, site):
    content = csv_bytes([ALIVE_CAR_T | {"crs_grade": "5"}])

    dry = run_command(tmp_path, content, "--dry-run")
    real = run_command(tmp_path, content)

    assert dry[0] == real[0] == 1
    assert dry[1].splitlines()[0] == real[1].splitlines()[0]


def test_importing_the_same_file_again_is_refused_row_by_row(tmp_path, site):
    content = csv_bytes([ALIVE_CAR_T, DIED_OF_DISEASE])
    assert run_command(tmp_path, content)[0] == 0

    status, output = run_command(tmp_path, content)

    assert status == 1
    first, second = Patient.objects.order_by("pk")
    assert output.splitlines()[:2] == [
        f"row 2, column study_id: Study ID AHP-C001 already exists at this site (record "
        f"{first.pk}); study IDs must be unique within a site.",
        f"row 3, column study_id: Study ID AHP-B001 already exists at this site (record "
        f"{second.pk}); study IDs must be unique within a site.",
    ]
    assert Patient.objects.count() == 2


def test_an_xlsx_workbook_is_imported_from_its_first_sheet(tmp_path, site):
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.append(HEADER)
    values = ALIVE_CAR_T | {"year_of_birth": 1990, "bm_blast_pct": 40.5, "crs_grade": 2}
    values |= {"treatment_start": date(2022, 3, 1), "last_contact_date": date(2023, 3, 1)}
    sheet.append([values[name] or None for name in HEADER])
    workbook.create_sheet("notes").append(["ignored"])
    path = tmp_path / "cohort.xlsx"
    workbook.save(path)

    status, output = run_command(tmp_path, path.read_bytes(), name="cohort.xlsx")

    assert status == 0, output
    treatment = Treatment.objects.get()
    assert (treatment.day0, treatment.patient.year_of_birth) == (date(2022, 3, 1), 1990)
    assert treatment.crs_episodes.get().recorded_grade == 2


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"\x00\x01\x02binary\x00", "not a CSV"),
        ("study_id,site\nÄ,AHP\n".encode("latin-1"), "not UTF-8"),
        (",".join(HEADER).encode() + b"\n", "no patient rows"),
        (b"PK\x03\x04 not really a workbook", ".xlsx file cannot be read"),
    ],
)
def test_an_unreadable_file_exits_with_status_2(tmp_path, site, content, message):
    status, output = run_command(tmp_path, content)

    assert status == 2
    assert message in output
    assert ImportRun.objects.get().outcome == "unreadable"


def test_a_nurse_may_not_import(tmp_path, site, nurse):
    with pytest.raises(CommandError, match="Only data managers and administrators"):
        run_command(tmp_path, csv_bytes([ALIVE_CAR_T]), "--user", "nurse")
    assert not Patient.objects.exists()


def test_create_sites_adds_a_new_site_code_for_an_administrator(tmp_path, administrator):
    content = csv_bytes([ALIVE_CAR_T | {"site": "NEW"}])

    refused = run_command(tmp_path, content, "--user", "administrator")
    created = run_command(tmp_path, content, "--user", "administrator", "--create-sites")

    assert refused[0] == 1
    assert "row 2, column site: no site has the code NEW" in refused[1]
    assert created[0] == 0
    assert Patient.objects.get().site == Site.objects.get(code="NEW")


def test_a_data_manager_may_not_create_sites(tmp_path, data_manager):
    content = csv_bytes([ALIVE_CAR_T | {"site": "NEW"}])

    status, output = run_command(tmp_path, content, "--user", "data_manager", "--create-sites")

    assert status == 1
    assert "only an administrator may add sites" in output
    assert not Site.objects.filter(code="NEW").exists()


def test_enumerations_and_site_codes_are_case_insensitive(tmp_path, site):
    row = ALIVE_CAR_T | {"site": "ahp", "arm": "CAR_T", "response": "CR", "hsct_type": "UCBT"}

    status, output = run_command(tmp_path, csv_bytes([row]))

    assert status == 0, output
    assert Relapse.objects.count() == 0
    assert Transplant.objects.get().type == "ucbt"


# --- the upload page in the admin ------------------------------------------------------------
UPLOAD = "/admin/registry/importrun/upload/"
# The admin's URLs as they are once registry.admin_exchange is registered (it is imported
# above), whenever the project's URLconf was first loaded.
urlpatterns = [path("admin/", admin.site.urls), path("", include("config.urls"))]
assert admin_exchange.ImportRunAdmin
admin_urls = pytest.mark.urls(__name__)


def upload(client, content: bytes, *, dry_run: bool, name: str = "cohort.csv"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    data = {"file": SimpleUploadedFile(name, content, content_type="text/csv")}
    if dry_run:
        data["dry_run"] = "on"
    return client.post(UPLOAD, data)


@admin_urls
def test_a_data_manager_imports_a_file_from_the_admin(client, site, data_manager):
    client.force_login(data_manager)

    response = upload(client, csv_bytes([ALIVE_CAR_T, DIED_OF_DISEASE]), dry_run=False)

    assert response.status_code == 200
    assert "Imported 2 patients" in response.content.decode()
    assert Patient.objects.count() == 2
    run = ImportRun.objects.get()
    assert (run.via, run.user, run.outcome) == ("admin", data_manager, "imported")
    assert client.get("/admin/registry/importrun/").status_code == 200


@admin_urls
def test_the_upload_page_lists_every_problem_and_saves_nothing(client, site, data_manager):
    client.force_login(data_manager)
    rows = [ALIVE_CAR_T | {"arm": "cart"}, DIED_OF_DISEASE | {"relapse_date": "2022-03-15"}]

    response = upload(client, csv_bytes(rows), dry_run=True)

    page = response.content.decode()
    assert "row 2, column arm: &quot;cart&quot; is not one of: blinatumomab, car_t" in page
    assert "row 3, column relapse_date: A relapse cannot be dated before" in page
    assert "nothing was saved" in page
    assert not Patient.objects.exists()


@admin_urls
def test_the_upload_page_says_when_a_file_cannot_be_read(client, site, data_manager):
    client.force_login(data_manager)

    response = upload(client, "study_id,site\nÄ,AHP\n".encode("latin-1"), dry_run=True)

    assert 'data-testid="unreadable"' in response.content.decode()


@admin_urls
@pytest.mark.parametrize("username", ["nurse", "pi"])
def test_nurses_and_pis_do_not_reach_the_upload_page(client, users, username):
    from registry.models import User

    client.force_login(User.objects.get(username=username))

    response = client.get(UPLOAD)

    assert response.status_code == 302 and "/admin/login/" in response["Location"]
