"""One patient row of the file written as the patient's records through registry.services (the
same rules, derivations and audit as the forms), each record's messages put back under the
file's column; and the file's site codes matched to the registry's sites.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models

from registry import services
from registry.cohort_file.parsing import ParsedRow
from registry.domain.identifiers import identifier_key, written_form
from registry.domain.vocabulary import (
    DeathCause,
    DiseaseStatus,
    GradingSystem,
    MrdStatus,
    PhStatus,
    RelapseKind,
    Response,
    YesNoUnknown,
)
from registry.models import (
    CrsEpisode,
    Death,
    FollowUpContact,
    IcansEpisode,
    Patient,
    Relapse,
    ResponseAssessment,
    Site,
    Transplant,
    Treatment,
    User,
)
from registry.models.base import validate_identifier
from registry.permissions import Action, can

# Which file column each model field's messages belong to; "" is the record's own column.
FIELD_COLUMNS: dict[type[models.Model], dict[str, str]] = {
    Patient: {
        "": "study_id",
        "site": "site",
        "sex": "sex",
        "year_of_birth": "year_of_birth",
        "ph_status": "ph_status",
    },
    Treatment: {
        "": "treatment_start",
        "patient": "study_id",
        "day0": "treatment_start",
        "arm": "arm",
        "product": "product",
        "disease_burden": "disease_burden",
        "bm_blast_pct": "bm_blast_pct",
        "relapse_status": "relapse_status",
        "prior_hsct": "prior_hsct",
        "crs_status": "crs_grade",
        "icans_status": "icans_grade",
    },
    CrsEpisode: {
        "": "crs_grade",
        "grade": "crs_grade",
        "grading_system": "crs_grading_system",
        "cause": "death_cause",
    },
    IcansEpisode: {"": "icans_grade", "grade": "icans_grade", "cause": "death_cause"},
    ResponseAssessment: {
        "": "response",
        "date": "response_date",
        "mrd_reported": "mrd_negative",
    },
    Transplant: {"": "hsct_type", "date": "hsct_date"},
    Relapse: {"": "relapse_date"},
    FollowUpContact: {"": "last_contact_date"},
    Death: {"": "death_date", "cause": "death_cause"},
}
# The columns each record is built from: when one of them is already reported, the record is
# checked but not saved.
RECORD_COLUMNS: dict[type[models.Model], tuple[str, ...]] = {
    Patient: ("study_id", "site", "sex", "year_of_birth", "ph_status"),
    Treatment: (
        "arm",
        "treatment_start",
        "product",
        "disease_burden",
        "bm_blast_pct",
        "relapse_status",
        "prior_hsct",
        "crs_grade",
        "icans_grade",
    ),
    CrsEpisode: ("crs_grade", "crs_grading_system"),
    IcansEpisode: ("icans_grade",),
    ResponseAssessment: ("response", "response_date", "mrd_negative"),
    Transplant: ("hsct_type", "hsct_date"),
    Relapse: ("relapse_date",),
    FollowUpContact: ("last_contact_date",),
    Death: ("death_date", "death_cause"),
}
PARENT_FIELDS = {"patient", "treatment", "site"}


class Sites:
    """Site codes of the file, matched case-insensitively; created with --create-sites."""

    def __init__(self, *, user: User, create: bool) -> None:
        self.user, self.create = user, create
        self.by_code = {identifier_key(site.code): site for site in Site.objects.all()}

    def resolve(self, row: ParsedRow) -> Site | None:
        code = row.get("site")
        if code is None:
            return None
        site = self.by_code.get(identifier_key(code))
        if site is None:
            if not self.create:
                row.add(
                    "site", f"no site has the code {code} (import with --create-sites to add it)"
                )
                return None
            if not can(self.user, Action.MANAGE_USERS):
                row.add("site", f"no site has the code {code}; only an administrator may add sites")
                return None
            try:
                validate_identifier(code)
            except ValidationError as error:
                row.add("site", error.messages[0])
                return None
            site = Site.objects.create(code=written_form(code), name=written_form(code))
            self.by_code[identifier_key(code)] = site
        if not can(self.user, Action.IMPORT, site.pk):
            row.add("site", f"you may not import patients at site {site.code}")
            return None
        return site


class RowImport:
    """One file row: its records written through registry.services, each problem kept."""

    def __init__(self, row: ParsedRow, *, user: User, reason: str) -> None:
        self.row, self.user, self.reason = row, user, reason
        # The row's treatment (its laboratory values hang off it), and whether it was saved.
        self.treatment: Treatment | None = None
        self.treatment_saved = False
        # A cell that did not parse has its message; the model's "cannot be blank" would repeat it.
        self.unparsed = {problem.column for problem in row.problems} | row.absent

    def run(self, site: Site | None) -> Patient | None:
        v = self.row.get
        patient = Patient(
            site=site,
            study_id=v("study_id") or "",
            sex=v("sex") or "",
            year_of_birth=v("year_of_birth"),
            ph_status=v("ph_status") or PhStatus.UNKNOWN,
        )
        patient_saved = self._save(patient, parent_saved=site is not None)
        crs_grade, icans_grade = v("crs_grade"), v("icans_grade")
        treatment = Treatment(
            patient=patient,
            arm=v("arm") or "",
            day0=v("treatment_start"),
            product=v("product") or "",
            disease_burden=v("disease_burden") or "",
            bm_blast_pct=v("bm_blast_pct"),
            relapse_status=v("relapse_status") or "",
            prior_hsct=_yes_no(v("prior_hsct")),
            crs_status=_status(crs_grade),
            icans_status=_status(icans_grade),
        )
        saved = self._save(treatment, parent_saved=patient_saved is not None)
        self.treatment, self.treatment_saved = treatment, saved is not None
        fatal = None
        cause = v("death_cause")
        for model, grade in ((CrsEpisode, crs_grade), (IcansEpisode, icans_grade)):
            if not grade:
                continue
            episode = model(
                treatment=treatment,
                onset=treatment.day0,  # the file holds no onset: day 0 is the earliest it can be
                recorded_grade=grade,
                grading_system=(
                    v("crs_grading_system") or GradingSystem.ASTCT2019
                    if model is CrsEpisode
                    else GradingSystem.ASTCT2019
                ),
            )
            if grade == 5 and cause == (
                DeathCause.CRS if model is CrsEpisode else DeathCause.ICANS
            ):
                # DOMAIN.md: grade 5 if and only if death from it. services.death_record saves
                # the fatal episode with the death, in one transaction; version 0 + 1 = 1.
                episode.version = 0
                fatal = episode
                continue
            if saved is not None:  # an episode with no saved treatment says nothing more
                self._save(episode, parent_saved=True)
        if v("response") is not None:
            self._save(
                ResponseAssessment(
                    treatment=treatment,
                    date=v("response_date"),
                    response=v("response"),
                    mrd_reported=_mrd_reported(v("mrd_negative")),
                ),
                parent_saved=saved is not None,
            )
        if v("hsct_type") is not None:
            self._save(
                Transplant(treatment=treatment, date=v("hsct_date"), type=v("hsct_type")),
                parent_saved=saved is not None,
            )
        if v("relapse_date") is not None:
            self._save(
                Relapse(treatment=treatment, date=v("relapse_date"), kind=RelapseKind.MORPHOLOGIC),
                parent_saved=saved is not None,
            )
        death_date, last_contact = v("death_date"), v("last_contact_date")
        if last_contact is not None and (death_date is None or last_contact < death_date):
            self._save(
                FollowUpContact(
                    treatment=treatment, date=last_contact, disease_status=self._disease_status()
                ),
                parent_saved=saved is not None,
            )
        if death_date is not None:
            death = Death(patient=patient, date=death_date, cause=cause or "")
            if patient_saved is None or (fatal is not None and saved is None):
                self._check_unsaved(death)
            else:
                self._death(death, fatal=fatal)
        return patient_saved

    def report_patient_rules(self, error: ValidationError) -> None:
        """Grade 5 and the cause of death, checked once the row's records are written (the
        messages are in English here: see import_cohort)."""
        for field_name, messages in error.message_dict.items():
            for message in messages:
                if field_name == "cause":
                    column = "death_cause"
                elif "ICANS" in message:
                    column = "icans_grade"
                else:
                    column = "crs_grade"
                self.row.add(column, message)

    def _disease_status(self) -> str:
        response = self.row.get("response")
        if self.row.get("relapse_date") is not None or response == Response.NR:
            return DiseaseStatus.RELAPSED
        if response in (None, Response.NOT_EVALUABLE):
            return DiseaseStatus.UNKNOWN
        return DiseaseStatus.REMISSION

    def _save(self, record: models.Model, *, parent_saved: bool) -> Any:
        """Save through the services; with a failed parent or cell, only check the record."""
        model = type(record)
        if not parent_saved or any(self.row.reported(c) for c in RECORD_COLUMNS[model]):
            self._check_unsaved(record)
            return None
        try:
            return services.record_save(record, user=self.user, reason=self.reason)
        except ValidationError as error:
            self._report(model, error)
        except PermissionDenied as error:
            self.row.add("site", str(error))
        return None  # refused before it was written

    def _death(self, death: Death, *, fatal: CrsEpisode | IcansEpisode | None) -> None:
        if any(self.row.reported(column) for column in RECORD_COLUMNS[Death]):
            self._check_unsaved(death)
            return
        try:
            services.death_record(
                patient=death.patient,
                user=self.user,
                date=death.date,
                cause=death.cause,
                reason=self.reason,
                fatal_episode=fatal,
            )
        except ValidationError as error:
            self._report(Death, error)
        except PermissionDenied as error:
            self.row.add("site", str(error))

    def _check_unsaved(self, record: models.Model) -> None:
        """The record's own rules, when it cannot be saved (its parent or a cell failed)."""
        try:
            services.full_validate(record)
        except ValidationError as error:
            self._report(type(record), error, skip=PARENT_FIELDS)
        except (ValueError, models.ObjectDoesNotExist):
            pass  # a rule that needs the saved parent: the parent's problem is reported

    def _report(self, model: type, error: ValidationError, *, skip: Iterable[str] = ()) -> None:
        columns = FIELD_COLUMNS[model]
        messages = error.message_dict if hasattr(error, "error_dict") else {"": error.messages}
        for field_name, field_messages in messages.items():
            if field_name in skip:
                continue
            column = columns.get(field_name)
            if column is None and field_name == "grade":
                column = "crs_grade" if self.row.get("crs_grade") == 5 else "icans_grade"
            column = column or columns[""]
            if column in self.unparsed:
                continue
            for message in field_messages:
                self.row.add(column, message)


def _yes_no(value: str | None) -> bool | None:
    return None if value is None else value == "yes"


def _status(grade: int | None) -> str:
    if grade is None:
        return YesNoUnknown.UNKNOWN
    return YesNoUnknown.YES if grade >= 1 else YesNoUnknown.NO


def _mrd_reported(value: str | None) -> str:
    if value is None:
        return ""
    return MrdStatus.NEGATIVE if value == "yes" else MrdStatus.POSITIVE
