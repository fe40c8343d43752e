"""DOMAIN.md "Rules: what bad input gets", enforced for every write path.

`record_errors` returns, for one unsaved record, the broken rules as {field: [message]}: each
message says what is wrong and what would be valid, on a field of the record being written.
registry.services calls it before every write, so the admin, the forms, the API and the import
show the same messages.

A rule that relates two records is checked from both sides: editing either record against the
other's saved state (CROSS_RECORD_RULES lists them, and tests/registry/test_cross_record_rules.py
walks that list). `patient_errors` checks grade 5 and the cause of death once more across the
patient's records after a write, inside its transaction: it is what the cohort import, which
writes a patient's records one after the other, relies on.

Every CheckConstraint and UniqueConstraint of the models has its rule here or in the model
field's validators, so that the database's own refusal ("Constraint ... is violated", in
English) never reaches a user (CONSTRAINT_RULES, and its test).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal
from functools import cache
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import connection
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from registry.domain.identifiers import identifier_key
from registry.domain.ranges import RANGES, in_range
from registry.domain.vocabulary import (
    Arm,
    DeathCause,
    DiseaseBurden,
    GradingSystem,
    Oxygen,
    Response,
    YesNoUnknown,
)
from registry.models import (
    CarPersistence,
    CrsEpisode,
    Death,
    FollowUpContact,
    IcansEpisode,
    IecHsEpisode,
    Infection,
    IvigCourse,
    LabValue,
    Patient,
    Relapse,
    ResponseAssessment,
    SecondCancer,
    Transplant,
    Treatment,
)
from registry.models.base import validate_identifier
from registry.models.labs import LAB_FIELDS

Errors = dict[str, list[str]]
MAX_AGE_YEARS = 110
MORPHOLOGIC_BLASTS_PCT = Decimal(5)

# The dated records that hang off a treatment, with the field that dates them and how a
# message names that date.
TREATMENT_CHILDREN: list[tuple[type, str, Any]] = [
    (CrsEpisode, "onset", gettext_lazy("the onset of a CRS episode")),
    (IcansEpisode, "onset", gettext_lazy("the onset of an ICANS episode")),
    (ResponseAssessment, "date", gettext_lazy("a response assessment")),
    (Transplant, "date", gettext_lazy("a transplant")),
    (FollowUpContact, "date", gettext_lazy("a follow-up contact")),
    (Relapse, "date", gettext_lazy("a relapse")),
    (LabValue, "date", gettext_lazy("a laboratory value")),
    (Infection, "onset", gettext_lazy("the onset of an infection")),
    (IecHsEpisode, "onset", gettext_lazy("the onset of an IEC-HS episode")),
    (IvigCourse, "start", gettext_lazy("the start of immunoglobulin replacement")),
    (CarPersistence, "date", gettext_lazy("a CAR persistence assessment")),
    (SecondCancer, "date", gettext_lazy("a second cancer")),
]
RESOLUTIONS: list[tuple[type, str, Any]] = [
    (CrsEpisode, "resolution", gettext_lazy("the resolution of a CRS episode")),
    (IcansEpisode, "resolution", gettext_lazy("the resolution of an ICANS episode")),
    (IvigCourse, "stop", gettext_lazy("the stop of immunoglobulin replacement")),
]
DATED_RECORDS = TREATMENT_CHILDREN + RESOLUTIONS
COMPLETE_REMISSION = (Response.CR, Response.CRI)

# DOMAIN.md's rules that relate two records: (record, field) on one side, (record, field) on
# the other. Each is checked when either side is written, on the written record's field
# (tests/registry/test_cross_record_rules.py breaks each from both sides, on every path).
CROSS_RECORD_RULES: list[tuple[str, tuple[type, str], tuple[type, str]]] = [
    ("day 0 is not before the diagnosis", (Patient, "diagnosis_date"), (Treatment, "day0")),
    *[
        (f"{model.__name__}.{field} is on or after day 0", (Treatment, "day0"), (model, field))
        for model, field, _label in TREATMENT_CHILDREN
    ],
    ("day 0 is not before the year of birth", (Patient, "year_of_birth"), (Treatment, "day0")),
    ("the death is not before the year of birth", (Patient, "year_of_birth"), (Death, "date")),
    ("the diagnosis is not after the death", (Patient, "diagnosis_date"), (Death, "date")),
    ("the consent is not after the death", (Patient, "consent_date"), (Death, "date")),
    ("day 0 is not after the death", (Treatment, "day0"), (Death, "date")),
    *[
        (f"{model.__name__}.{field} is not after the death", (model, field), (Death, "date"))
        for model, field, _label in DATED_RECORDS
    ],
    ("a relapse is not before the first CR/CRi", (ResponseAssessment, "date"), (Relapse, "date")),
    ("grade 5 CRS if and only if death from CRS", (CrsEpisode, "died_of_crs"), (Death, "cause")),
    (
        "grade 5 ICANS if and only if death from ICANS",
        (IcansEpisode, "died_of_icans"),
        (Death, "cause"),
    ),
    ("CRS episodes mean CRS occurred", (Treatment, "crs_status"), (CrsEpisode, "treatment")),
    (
        "ICANS episodes mean ICANS occurred",
        (Treatment, "icans_status"),
        (IcansEpisode, "treatment"),
    ),
    (
        "an IEC-HS onset as CRS resolves means CRS occurred",
        (Treatment, "crs_status"),
        (IecHsEpisode, "onset_after_crs"),
    ),
    ("one death per patient", (Death, "patient"), (Death, "patient")),
    ("study IDs are unique within a site", (Patient, "study_id"), (Patient, "study_id")),
]


# Each CheckConstraint and UniqueConstraint of the clinical models, and the field whose rule
# (here, or the model field's validators, run by services.full_validate) refuses its violation
# first, with a field message in the user's language. Derived fields are never typed.
CONSTRAINT_RULES: dict[str, str] = {
    "patient_study_id_unique_in_site": "study_id",
    "patient_study_id_key_unique_in_site": "study_id",
    "patient_year_of_birth_plausible": "year_of_birth",
    "treatment_bm_blast_pct_range": "bm_blast_pct",
    "crs_recorded_grade_range": "recorded_grade",
    "crs_derived_grade_range": "derived_grade",
    "crs_resolution_after_onset": "resolution",
    "crs_temperature_range": "max_temperature_c",
    "crs_vasopressors_range": "vasopressors",
    "crs_o2_flow_range": "o2_flow_l_min",
    "icans_recorded_grade_range": "recorded_grade",
    "icans_derived_grade_range": "derived_grade",
    "icans_resolution_after_onset": "resolution",
    "icans_ice_score_range": "ice_score",
    "response_bm_blast_pct_range": "bm_blast_pct",
    "response_mrd_result_range": "mrd_result_pct",
    "response_mrd_sensitivity_range": "mrd_sensitivity_pct",
    "infection_ctcae_grade_range": "ctcae_grade",
    "iechs_recorded_grade_range": "recorded_grade",
    "ivig_stop_after_start": "stop",
}
MIN_YEAR_OF_BIRTH = 1900  # the database's patient_year_of_birth_plausible


def _death_of(patient: Patient | None) -> Death | None:
    """The patient's death, through Django's reverse one-to-one cache: one query per patient
    object, and a Death built for this patient object is seen at once."""
    if patient is None or patient.pk is None:
        return None
    try:
        return patient.death
    except Death.DoesNotExist:
        return None


def _check_date(
    errors: Errors,
    field: str,
    value: date | None,
    *,
    today: date,
    patient: Patient | None,
    day0: date | None = None,
    check_death: bool = True,
    label: str = "",
) -> None:
    """The rules every clinical date obeys."""
    if value is None:
        return
    label = label or field.replace("_", " ")
    if value > today:
        errors[field].append(
            _("The %(label)s cannot be in the future (today is %(today)s).")
            % {"label": label, "today": today.isoformat()}
        )
    if patient is not None and patient.year_of_birth and value.year < patient.year_of_birth:
        errors[field].append(
            _("The %(label)s cannot be before the patient's year of birth (%(year)s).")
            % {"label": label, "year": patient.year_of_birth}
        )
    if day0 is not None and value < day0:
        errors[field].append(
            _("The %(label)s must be on or after day 0 (%(day0)s).")
            % {"label": label, "day0": day0.isoformat()}
        )
    if check_death:
        death = _death_of(patient)
        if death is not None and value > death.date:
            errors[field].append(
                _("The %(label)s cannot be after the patient's death (%(death)s).")
                % {"label": label, "death": death.date.isoformat()}
            )


def _patient_rules(patient: Patient, errors: Errors, today: date) -> None:
    low = max(MIN_YEAR_OF_BIRTH, today.year - MAX_AGE_YEARS)
    year_ok = patient.year_of_birth is not None and low <= patient.year_of_birth <= today.year
    if patient.year_of_birth is not None and not year_ok:
        errors["year_of_birth"].append(
            _("The year of birth must be between %(low)s and %(high)s.")
            % {"low": low, "high": today.year}
        )
    for field in ("diagnosis_date", "consent_date"):
        _check_date(errors, field, getattr(patient, field), today=today, patient=patient)
    if patient.pk:
        # The other side of the treatments' rules: day 0 is not before the diagnosis, and no
        # clinical date (day 0, a record, the death) is before the year of birth.
        treatments = _treatments_of(patient)
        first_day0 = min((day0 for _pk, day0 in treatments), default=None)
        if patient.diagnosis_date and first_day0 and patient.diagnosis_date > first_day0:
            errors["diagnosis_date"].append(
                _(
                    "The date of diagnosis cannot be after day 0 of an index treatment "
                    "(%(day0)s): enter a diagnosis on or before %(day0)s, or correct day 0."
                )
                % {"day0": first_day0.isoformat()}
            )
        if year_ok:
            first = earliest_clinical_date(patient, treatments=treatments)
            if first is not None and first.year < patient.year_of_birth:
                errors["year_of_birth"].append(
                    _("The year of birth cannot be after the first clinical date (%(first)s).")
                    % {"first": first.isoformat()}
                )
    if patient.study_id:
        try:
            validate_identifier(patient.study_id)
        except ValidationError as error:
            errors["study_id"] += error.messages
    if patient.site_id and patient.study_id:
        # Look-alikes (another case, full-width digits, Cyrillic letters, a zero-width space)
        # share the key (registry.domain.identifiers), and are duplicates.
        key = identifier_key(patient.study_id)
        duplicate = _rows(_duplicate_sql(), [patient.site_id, key, patient.pk or 0])
        if duplicate:
            pk, existing = duplicate[0]
            errors["study_id"].append(
                _(
                    "Study ID %(study_id)s already exists at this site (record %(pk)s); "
                    "study IDs must be unique within a site."
                )
                % {"study_id": existing, "pk": pk}
            )


def _treatment_rules(treatment: Treatment, errors: Errors, today: date) -> None:
    patient = treatment.patient
    _check_date(errors, "day0", treatment.day0, today=today, patient=patient, label=_("day 0"))
    if treatment.day0 and patient.diagnosis_date and treatment.day0 < patient.diagnosis_date:
        errors["day0"].append(
            _(
                "Day 0 cannot be before the patient's date of diagnosis (%(diagnosis)s): "
                "correct day 0, or the date of diagnosis on the patient's record."
            )
            % {"diagnosis": patient.diagnosis_date.isoformat()}
        )
    dated = _child_dates([treatment.pk], DATED_RECORDS) if treatment.pk else []
    starts = [(d, kind) for d, kind in dated if kind < len(TREATMENT_CHILDREN)]
    if treatment.day0 and starts:
        first, kind = min(starts)
        if first < treatment.day0:
            errors["day0"].append(
                _("Day 0 cannot be after %(record)s, already recorded on %(first)s.")
                % {"record": DATED_RECORDS[kind][2], "first": first.isoformat()}
            )
    if dated:
        # The records go with the treatment to its patient (the admin and the API can move a
        # treatment to another patient): none may be dated after that patient's death or
        # before their year of birth.
        latest, kind = max(dated)
        death = _death_of(patient)
        if death is not None and latest > death.date:
            errors["patient"].append(
                _(
                    "This treatment has %(record)s dated %(date)s, after this patient's death "
                    "(%(death)s)."
                )
                % {"record": DATED_RECORDS[kind][2], "date": latest, "death": death.date}
            )
        earliest, kind = min(dated)
        if patient.year_of_birth and earliest.year < patient.year_of_birth:
            errors["patient"].append(
                _(
                    "This treatment has %(record)s dated %(date)s, before this patient's year of "
                    "birth (%(year)s)."
                )
                % {
                    "record": DATED_RECORDS[kind][2],
                    "date": earliest,
                    "year": patient.year_of_birth,
                }
            )
    blasts = treatment.bm_blast_pct
    if (
        treatment.disease_burden == DiseaseBurden.MRD_ONLY
        and blasts is not None
        and blasts >= MORPHOLOGIC_BLASTS_PCT
    ):
        errors["bm_blast_pct"].append(
            # xgettext:no-python-format
            _(
                "MRD-only disease means morphological remission: marrow blasts below 5% "
                "(or choose 'not in remission')."
            )
        )
    if (
        treatment.disease_burden == DiseaseBurden.MORPHOLOGIC
        and blasts is not None
        and blasts < MORPHOLOGIC_BLASTS_PCT
        and treatment.extramedullary is False
    ):
        errors["disease_burden"].append(
            _(
                "Not in remission means marrow blasts of 5%% or more, or extramedullary disease; "
                "with %(blasts)s%% blasts and no extramedullary disease choose 'MRD-positive only'."
            )
            % {"blasts": blasts}
        )
    recorded_kinds = {DATED_RECORDS[kind][0] for _d, kind in dated}
    for status_field, model, label in (
        ("crs_status", CrsEpisode, _("CRS")),
        ("icans_status", IcansEpisode, _("ICANS")),
    ):
        if getattr(treatment, status_field) != YesNoUnknown.YES and model in recorded_kinds:
            errors[status_field].append(
                _(
                    "%(label)s episodes are recorded for this treatment, so %(label)s occurred: "
                    "choose 'yes' or remove the episodes."
                )
                % {"label": label}
            )
    if (
        treatment.crs_status == YesNoUnknown.NO
        and treatment.pk
        and IecHsEpisode.objects.filter(treatment=treatment, onset_after_crs=True).exists()
    ):
        errors["crs_status"].append(
            _(
                "An IEC-HS episode of this treatment began as CRS resolved, so CRS occurred: "
                "choose 'yes', or correct the IEC-HS episode's timing first."
            )
        )


def _fatal_field(episode: CrsEpisode | IcansEpisode) -> str:
    """The field that makes an episode grade 5: the death from it, when the ASTCT grade is
    derived (a recorded grade then does not count), else the recorded grade."""
    if episode.derived_grade is None:
        return "recorded_grade"
    return "died_of_crs" if isinstance(episode, CrsEpisode) else "died_of_icans"


def _episode_death_rules(
    episode: CrsEpisode | IcansEpisode, errors: Errors, together: tuple
) -> None:
    """Grade 5 CRS (ICANS) if and only if death from CRS (ICANS), from the episode's side."""
    patient = episode.treatment.patient
    cause, label = (
        (DeathCause.CRS, _("CRS"))
        if isinstance(episode, CrsEpisode)
        else (DeathCause.ICANS, _("ICANS"))
    )
    death = next((r for r in together if isinstance(r, Death)), None) or _death_of(patient)
    died_of_it = death is not None and death.cause == cause
    if episode.grade == 5 and not died_of_it:
        errors[_fatal_field(episode)].append(
            _(
                "A grade 5 %(label)s episode means death from %(label)s: record the death with "
                "cause %(label)s, or correct the grade."
            )
            % {"label": label}
        )
    elif episode.grade != 5 and died_of_it and episode.pk is not None:
        others = _fatal_episode_causes(patient, exclude=episode)
        if cause not in others:
            errors[_fatal_field(episode)].append(
                _(
                    "The patient died of %(label)s (%(death)s) and this is their grade 5 "
                    "%(label)s episode: it stays grade 5 unless the cause of death is corrected "
                    "first."
                )
                % {"label": label, "death": death.date.isoformat()}
            )


def _episode_rules(
    episode: CrsEpisode | IcansEpisode, errors: Errors, today: date, together: tuple, deferred: bool
) -> None:
    treatment = episode.treatment
    _check_date(
        errors,
        "onset",
        episode.onset,
        today=today,
        patient=treatment.patient,
        day0=treatment.day0,
        label=_("onset"),
    )
    _check_date(
        errors,
        "resolution",
        episode.resolution,
        today=today,
        patient=treatment.patient,
        label=_("resolution"),
    )
    if episode.onset and episode.resolution and episode.resolution < episode.onset:
        errors["resolution"].append(
            _("The resolution must be on or after the onset (%(onset)s).")
            % {"onset": episode.onset.isoformat()}
        )
    status_field = "crs_status" if isinstance(episode, CrsEpisode) else "icans_status"
    if getattr(treatment, status_field) == YesNoUnknown.NO:
        errors["treatment"].append(
            _("This treatment is recorded as having no %(kind)s; change that to 'yes' first.")
            % {"kind": _("CRS") if isinstance(episode, CrsEpisode) else _("ICANS")}
        )
    if episode.derived_grade is None and episode.recorded_grade is None:
        errors["recorded_grade"].append(
            _("Enter the grade, or the findings from which the ASTCT 2019 grade is derived.")
        )
    if (
        episode.grading_system == GradingSystem.ASTCT2019
        and episode.derived_grade is not None
        and episode.recorded_grade is not None
        and episode.recorded_grade != episode.derived_grade
    ):
        errors["recorded_grade"].append(
            _(
                "The ASTCT 2019 grade is derived from the findings (grade %(grade)s) and cannot be "
                "typed over: leave it blank, enter %(grade)s, or record the grade under its own "
                "grading system."
            )
            % {"grade": episode.derived_grade}
        )
    if not deferred and treatment.patient.pk is not None:
        _episode_death_rules(episode, errors, together)


def _crs_rules(
    episode: CrsEpisode, errors: Errors, today: date, together: tuple, deferred: bool
) -> None:
    _episode_rules(episode, errors, today, together, deferred)
    if episode.vasopressors and episode.hypotension is False:
        errors["vasopressors"].append(
            _(
                "Vasopressors were given only if there was hypotension: tick hypotension or "
                "enter 0 vasopressors."
            )
        )
    if episode.oxygen == Oxygen.NONE and episode.o2_flow_l_min:
        errors["o2_flow_l_min"].append(
            _("No oxygen support was recorded: leave the flow blank or choose the oxygen support.")
        )


def _response_rules(
    response: ResponseAssessment, errors: Errors, today: date, deferred: bool
) -> None:
    treatment = response.treatment
    _check_date(
        errors,
        "date",
        response.date,
        today=today,
        patient=treatment.patient,
        day0=treatment.day0,
        label=_("response date"),
    )
    if response.mrd_undetectable and response.mrd_result_pct:
        errors["mrd_result_pct"].append(
            _("MRD was marked undetectable: leave the result blank or untick 'undetectable'.")
        )
    has_raw = response.mrd_undetectable or response.mrd_result_pct is not None
    if has_raw and response.mrd_sensitivity_pct is None:
        errors["mrd_sensitivity_pct"].append(
            _(
                "Enter the assay sensitivity (for example 0.01 for 10⁻⁴): without it an "
                "MRD result cannot be judged negative."
            )
        )
    # The other side of the relapse rule: the first complete remission, with this assessment
    # as written, is not after a relapse. (The cohort import writes a response before the
    # relapses of its new treatment, which check it.)
    is_cr = response.response in COMPLETE_REMISSION and response.date is not None
    if deferred or treatment.pk is None or not (is_cr or response.pk is not None):
        return
    relapses, other_crs = relapses_and_remissions(treatment.pk, exclude=response.pk)
    first_cr = min([*other_crs, *([response.date] if is_cr else [])], default=None)
    early = [relapse for relapse in relapses if first_cr is not None and relapse < first_cr]
    if early:
        errors["date" if is_cr and response.date == first_cr else "response"].append(
            _(
                "The first complete remission would then be dated %(cr)s, after the relapse "
                "recorded on %(relapse)s: a relapse cannot come before the first complete "
                "remission."
            )
            % {"cr": first_cr.isoformat(), "relapse": min(early).isoformat()}
        )


def _dated_child_rules(record, field: str, label: str, errors: Errors, today: date) -> None:
    treatment = record.treatment
    value = getattr(record, field)
    death = _death_of(treatment.patient)
    if isinstance(record, FollowUpContact) and death is not None and value and value > death.date:
        errors[field].append(
            _(
                "A follow-up contact records the patient alive, so it cannot be dated after the "
                "death on %(death)s."
            )
            % {"death": death.date.isoformat()}
        )
        _check_date(
            errors,
            field,
            value,
            today=today,
            patient=treatment.patient,
            day0=treatment.day0,
            check_death=False,
            label=label,
        )
        return
    _check_date(
        errors,
        field,
        value,
        today=today,
        patient=treatment.patient,
        day0=treatment.day0,
        label=label,
    )


def _relapse_rules(relapse: Relapse, errors: Errors, today: date) -> None:
    _dated_child_rules(relapse, "date", _("relapse date"), errors, today)
    first_cr = None
    if relapse.treatment_id is not None:
        crs = _rows(
            _complete_remissions_sql(),
            [relapse.treatment_id, Response.CR.value, Response.CRI.value],
        )
        first_cr = min((_as_date(d) for (d,) in crs), default=None)
    if relapse.date and first_cr and relapse.date < first_cr:
        errors["date"].append(
            _("A relapse cannot be dated before the first complete remission (%(cr)s).")
            % {"cr": first_cr.isoformat()}
        )


def _lab_rules(lab: LabValue, errors: Errors, today: date) -> None:
    _dated_child_rules(lab, "date", _("date of the laboratory values"), errors, today)
    if all(getattr(lab, field) is None for field in LAB_FIELDS):
        errors[NON_FIELD_ERRORS].append(
            _("Enter at least one laboratory value for this date, or leave the row out.")
        )


def _iec_hs_rules(episode: IecHsEpisode, errors: Errors, today: date) -> None:
    _dated_child_rules(episode, "onset", _("onset of the IEC-HS episode"), errors, today)
    # Hines et al. 2023 (ASTCT): the timing criterion is an onset as CRS resolves, or an
    # inflammatory response worsening after CRS-directed therapy; both need a CRS.
    if episode.onset_after_crs and episode.treatment.crs_status == YesNoUnknown.NO:
        errors["onset_after_crs"].append(
            _(
                "This treatment is recorded as having no CRS, so IEC-HS cannot have begun as CRS "
                "resolved: untick this, or record the CRS on the treatment first."
            )
        )


def _ivig_rules(course: IvigCourse, errors: Errors, today: date) -> None:
    _dated_child_rules(course, "start", _("start of immunoglobulin replacement"), errors, today)
    _check_date(
        errors,
        "stop",
        course.stop,
        today=today,
        patient=course.treatment.patient,
        label=_("stop of immunoglobulin replacement"),
    )
    if course.start and course.stop and course.stop < course.start:
        errors["stop"].append(
            _("The stop must be on or after the start (%(start)s); leave it blank while ongoing.")
            % {"start": course.start.isoformat()}
        )


def _second_cancer_rules(cancer: SecondCancer, errors: Errors, today: date) -> None:
    _dated_child_rules(cancer, "date", _("date of the second cancer"), errors, today)
    car_t = cancer.treatment.arm == Arm.CAR_T
    if car_t and cancer.t_cell_malignancy and cancer.car_transgene_tested == YesNoUnknown.UNKNOWN:
        errors["car_transgene_tested"].append(
            _(
                "A T-cell malignancy after CAR-T must say whether the tumour was tested for the "
                "CAR transgene: choose 'yes' or 'no'."
            )
        )
    if (
        cancer.car_transgene_detected != YesNoUnknown.UNKNOWN
        and cancer.car_transgene_tested != YesNoUnknown.YES
    ):
        errors["car_transgene_detected"].append(
            _(
                "Whether the CAR transgene was detected is known only if the tumour was tested: "
                "choose 'yes' for tested, or 'unknown' here."
            )
        )


def _death_rules(
    death: Death, errors: Errors, today: date, together: tuple, deferred: bool
) -> None:
    patient = death.patient
    if patient.pk is not None:
        recorded = _rows(_other_death_sql(), [patient.pk, death.pk or 0])
        if recorded:
            errors["patient"].append(
                _("This patient's death is already recorded (%(date)s).")
                % {"date": _as_date(recorded[0][0]).isoformat()}
            )
    _check_date(
        errors,
        "date",
        death.date,
        today=today,
        patient=patient,
        check_death=False,
        label=_("date of death"),
    )
    latest = latest_clinical_date(patient)
    if death.date and latest is not None and death.date < latest:
        errors["date"].append(
            _(
                "The date of death cannot be before a record already dated %(latest)s: nothing is "
                "dated after a death."
            )
            % {"latest": latest.isoformat()}
        )
    if deferred or patient.pk is None:
        return  # the cohort import writes the death last; patient_errors checks it then
    fatal_causes = _fatal_episode_causes(patient)
    fatal_causes |= {
        DeathCause.CRS if isinstance(r, CrsEpisode) else DeathCause.ICANS
        for r in together
        if isinstance(r, CrsEpisode | IcansEpisode) and r.grade == 5
    }
    errors["cause"] += [message for _side, message in _cause_errors(death, fatal_causes)]


def _cause_errors(death: Death | None, fatal_causes: set[str]) -> list[tuple[str, str]]:
    """Grade 5 CRS (ICANS) if and only if death from CRS (ICANS), across the patient's records:
    (side, message), the side being "grade" (an episode's) or "cause" (the death's)."""
    messages = []
    for cause, label in ((DeathCause.CRS, _("CRS")), (DeathCause.ICANS, _("ICANS"))):
        died_of_it = death is not None and death.cause == cause
        if cause in fatal_causes and not died_of_it:
            messages.append(
                (
                    "grade",
                    _(
                        "A grade 5 %(label)s episode means death from %(label)s: record the death "
                        "with cause %(label)s, or correct the grade."
                    )
                    % {"label": label},
                )
            )
        if died_of_it and cause not in fatal_causes:
            messages.append(
                (
                    "cause",
                    _(
                        "Death from %(label)s requires a grade 5 %(label)s episode: mark the fatal "
                        "episode, or choose another cause."
                    )
                    % {"label": label},
                )
            )
    return messages


def _range_rules(record, errors: Errors) -> None:
    """The plausible range of every number that has no range on its model field
    (registry.domain.ranges): a finite number between the ends."""
    model = type(record).__name__
    for (model_name, field), rng in RANGES.items():
        value = getattr(record, field, None) if model_name == model else None
        if value is None or isinstance(value, bool):
            continue
        try:
            plausible = in_range(value, rng)
        except (TypeError, ValueError):
            continue  # not a number: the field's own check says so
        if not plausible:
            errors[field].append(
                _("Enter a number from %(low)s to %(high)s (%(unit)s): %(value)s is not plausible.")
                % {
                    "low": f"{rng.low:g}",
                    "high": f"{rng.high:g}",
                    "unit": _(rng.unit),
                    "value": f"{float(value):g}",
                }
            )


def record_errors(record, *, today: date, together: tuple = (), deferred: bool = False) -> Errors:
    """The DOMAIN.md rules that this one record breaks, as {field: [messages]}, checked against
    the saved state of the records it relates to.

    `together`: other records written in the same transaction (the fatal episode of a death and
    the death), seen as they will be. `deferred`: inside services.patient_checks_deferred() (the
    cohort import), where grade 5 and the cause of death are checked once the patient's records
    are all written.
    """
    errors: Errors = defaultdict(list)
    _range_rules(record, errors)
    match record:
        case Patient():
            _patient_rules(record, errors, today)
        case Treatment():
            _treatment_rules(record, errors, today)
        case CrsEpisode():
            _crs_rules(record, errors, today, together, deferred)
        case IcansEpisode():
            _episode_rules(record, errors, today, together, deferred)
        case ResponseAssessment():
            _response_rules(record, errors, today, deferred)
        case Relapse():
            _relapse_rules(record, errors, today)
        case Transplant():
            _dated_child_rules(record, "date", _("transplant date"), errors, today)
        case FollowUpContact():
            _dated_child_rules(record, "date", _("contact date"), errors, today)
        case Death():
            _death_rules(record, errors, today, together, deferred)
        case LabValue():
            _lab_rules(record, errors, today)
        case Infection():
            _dated_child_rules(record, "onset", _("onset of the infection"), errors, today)
        case IecHsEpisode():
            _iec_hs_rules(record, errors, today)
        case IvigCourse():
            _ivig_rules(record, errors, today)
        case CarPersistence():
            _dated_child_rules(record, "date", _("date of the assessment"), errors, today)
        case SecondCancer():
            _second_cancer_rules(record, errors, today)
    return {field: messages for field, messages in errors.items() if messages}


def patient_errors(patient: Patient, *, written=None) -> Errors:
    """Rules across a patient's records, after a write: grade 5 CRS/ICANS if and only if death
    from it. The messages are on the field of `written`, the record the write saved; without
    it (the cohort import, a deletion), on "grade" or "cause"."""
    errors: Errors = defaultdict(list)
    for side, message in _cause_errors(_death_of(patient), _fatal_episode_causes(patient)):
        match written:
            case CrsEpisode() | IcansEpisode():
                field = _fatal_field(written)
            case Death():
                field = "cause"
            case Treatment():
                field = "patient"
            case _:
                field = side
        errors[field].append(message)
    return dict(errors)


def _fatal_episode_causes(patient: Patient, *, exclude=None) -> set[str]:
    """The causes of death (CRS, ICANS) of which the patient has a grade 5 episode (other than
    `exclude`, an episode being rewritten)."""
    treatment_ids = [pk for pk, _day0 in _treatments_of(patient)]
    if not treatment_ids:
        return set()
    rows = _rows(_fatal_causes_sql(len(treatment_ids)), treatment_ids * 2)  # CRS, ICANS
    return {
        cause
        for (cause, model_name, pk) in rows
        if exclude is None or not (model_name == type(exclude).__name__ and pk == exclude.pk)
    }


def relapses_and_remissions(treatment_id: int, *, exclude: int | None) -> tuple[list, list]:
    """A treatment's relapse dates, and the dates of its complete remissions (CR, CRi) other
    than assessment `exclude`."""
    rows = _rows(
        _relapses_and_remissions_sql(),
        [treatment_id, treatment_id, Response.CR.value, Response.CRI.value, exclude or 0],
    )
    relapses = [_as_date(d) for kind, d in rows if kind == "relapse"]
    remissions = [_as_date(d) for kind, d in rows if kind == "cr"]
    return relapses, remissions


def _patient_child_dates(patient: Patient, treatments: list[tuple[int, date]]) -> list[date]:
    """Day 0 of every treatment of the patient and every date of their records."""
    day0s = [day0 for _pk, day0 in treatments]
    ids = [pk for pk, _day0 in treatments]
    return day0s + [d for d, _kind in _child_dates(ids, DATED_RECORDS)] if ids else day0s


# These checks run on every write (the cohort import runs them for every row), so their SQL is
# built once from the models' tables: the patient's treatments first, then one UNION ALL of a
# SELECT per kind of record by treatment ID. Each part is an index look-up whatever the
# planner knows of the tables (a join let it scan whole tables during a large import), and
# the ORM's compilation of the same query cost more than running it.


def _treatments_of(patient: Patient) -> list[tuple[int, date]]:
    if patient.pk is None:
        return []
    return [(pk, _as_date(day0)) for pk, day0 in _rows(_treatments_sql(), [patient.pk])]


def _child_dates(treatment_ids: list[int], kinds: list[tuple]) -> list[tuple[date, int]]:
    """The dates of the treatments' records, each with the index of its kind in `kinds`."""
    sql = _child_dates_sql(len(treatment_ids), tuple((model, field) for model, field, *_ in kinds))
    return [
        (_as_date(d), kind) for kind, d in _rows(sql, treatment_ids * len(kinds)) if d is not None
    ]


def _rows(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _as_date(value: date | str) -> date:
    """SQLite returns the dates of a raw query as text."""
    return value if isinstance(value, date) else date.fromisoformat(value)


def _table(model: type) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _column(model: type, field: str) -> str:
    return connection.ops.quote_name(model._meta.get_field(field).column)


def _of_treatments(model: type, select: str, count: int) -> str:
    """SELECT an expression of the model's records of `count` treatments (IDs as parameters)."""
    placeholders = ", ".join(["%s"] * count)
    return (
        f"SELECT {select} FROM {_table(model)} "
        f"WHERE {_column(model, 'treatment')} IN ({placeholders})"
    )


@cache
def _duplicate_sql() -> str:
    """Another patient with the site and study ID key (an index look-up), and its study ID."""
    return (
        f"SELECT {_column(Patient, 'id')}, {_column(Patient, 'study_id')} FROM {_table(Patient)} "
        f"WHERE {_column(Patient, 'site')} = %s AND {_column(Patient, 'study_id_key')} = %s "
        f"AND {_column(Patient, 'id')} <> %s"
    )


@cache
def _other_death_sql() -> str:
    """The date of another death recorded for the patient."""
    return (
        f"SELECT {_column(Death, 'date')} FROM {_table(Death)} "
        f"WHERE {_column(Death, 'patient')} = %s AND {_column(Death, 'id')} <> %s"
    )


@cache
def _complete_remissions_sql() -> str:
    """The dates of a treatment's complete remissions (CR, CRi)."""
    model = ResponseAssessment
    return (
        f"SELECT {_column(model, 'date')} FROM {_table(model)} "
        f"WHERE {_column(model, 'treatment')} = %s AND {_column(model, 'response')} IN (%s, %s)"
    )


@cache
def _relapses_and_remissions_sql() -> str:
    """A treatment's relapse dates, then its CR/CRi dates but one assessment's."""
    model = ResponseAssessment
    return (
        f"SELECT 'relapse', {_column(Relapse, 'date')} FROM {_table(Relapse)} "
        f"WHERE {_column(Relapse, 'treatment')} = %s UNION ALL "
        f"SELECT 'cr', {_column(model, 'date')} FROM {_table(model)} "
        f"WHERE {_column(model, 'treatment')} = %s AND {_column(model, 'response')} IN (%s, %s) "
        f"AND {_column(model, 'id')} <> %s"
    )


@cache
def _treatments_sql() -> str:
    return (
        f"SELECT {_column(Treatment, 'id')}, {_column(Treatment, 'day0')} FROM {_table(Treatment)} "
        f"WHERE {_column(Treatment, 'patient')} = %s"
    )


@cache
def _child_dates_sql(count: int, kinds: tuple[tuple[type, str], ...]) -> str:
    return " UNION ALL ".join(
        _of_treatments(model, f"{index}, {_column(model, field)}", count)
        for index, (model, field) in enumerate(kinds)
    )


@cache
def _fatal_causes_sql(count: int) -> str:
    """The CRS and ICANS episodes of grade 5 (derived, or recorded when none is derived)."""
    branches = []
    for model, cause in ((CrsEpisode, DeathCause.CRS), (IcansEpisode, DeathCause.ICANS)):
        derived, recorded = _column(model, "derived_grade"), _column(model, "recorded_grade")
        branches.append(
            _of_treatments(model, f"'{cause}', '{model.__name__}', {_column(model, 'id')}", count)
            + f" AND ({derived} = 5 OR ({derived} IS NULL AND {recorded} = 5))"
        )
    return " UNION ALL ".join(branches)


def earliest_clinical_date(
    patient: Patient, *, treatments: list[tuple[int, date]] | None = None
) -> date | None:
    """The patient's first date: diagnosis, consent, day 0, a record, the death."""
    treatments = _treatments_of(patient) if treatments is None else treatments
    dates = _patient_child_dates(patient, treatments)
    dates += [d for d in (patient.diagnosis_date, patient.consent_date) if d]
    death = _death_of(patient)
    dates += [death.date] if death is not None and death.date else []
    return min(dates, default=None)


def latest_clinical_date(patient: Patient) -> date | None:
    """The patient's last date but the death: day 0, a record, the diagnosis, the consent."""
    dates = _patient_child_dates(patient, _treatments_of(patient))
    dates += [d for d in (patient.diagnosis_date, patient.consent_date) if d]
    return max(dates, default=None)
