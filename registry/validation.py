"""DOMAIN.md "Rules: what bad input gets", enforced for every write path.

`record_errors` returns, for one unsaved record, the broken rules as {field: [message]}: each
message says what is wrong and what would be valid. Models call it from clean(), so the admin,
the forms, the API and the import (all through registry.services) show the same messages.
`patient_errors` holds the rules that span records (grade 5 and the cause of death), checked
after a write, inside its transaction.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal
from functools import cache

from django.db import connection
from django.utils.translation import gettext as _

from registry.domain.vocabulary import (
    DeathCause,
    DiseaseBurden,
    GradingSystem,
    Oxygen,
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
    Transplant,
    Treatment,
)

Errors = dict[str, list[str]]
MAX_AGE_YEARS = 110
MORPHOLOGIC_BLASTS_PCT = Decimal(5)

# The dated records that hang off a treatment, with the field that dates them.
TREATMENT_CHILDREN: list[tuple[type, str]] = [
    (CrsEpisode, "onset"),
    (IcansEpisode, "onset"),
    (ResponseAssessment, "date"),
    (Transplant, "date"),
    (FollowUpContact, "date"),
    (Relapse, "date"),
]
RESOLUTIONS: list[tuple[type, str]] = [(CrsEpisode, "resolution"), (IcansEpisode, "resolution")]


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
    if patient.year_of_birth is not None:
        if not today.year - MAX_AGE_YEARS <= patient.year_of_birth <= today.year:
            errors["year_of_birth"].append(
                _("The year of birth must be between %(low)s and %(high)s.")
                % {"low": today.year - MAX_AGE_YEARS, "high": today.year}
            )
        elif patient.pk:
            first = earliest_clinical_date(patient)
            if first is not None and first.year < patient.year_of_birth:
                errors["year_of_birth"].append(
                    _("The year of birth cannot be after the first clinical date (%(first)s).")
                    % {"first": first.isoformat()}
                )
    for field in ("diagnosis_date", "consent_date"):
        _check_date(errors, field, getattr(patient, field), today=today, patient=patient)
    if patient.site_id and patient.study_id:
        duplicate = _rows(_duplicate_sql(), [patient.site_id, patient.study_id, patient.pk or 0])
        if duplicate:
            errors["study_id"].append(
                _(
                    "Study ID %(study_id)s already exists at this site (record %(pk)s); "
                    "study IDs must be unique within a site."
                )
                % {"study_id": patient.study_id, "pk": duplicate[0][0]}
            )


def _treatment_rules(treatment: Treatment, errors: Errors, today: date) -> None:
    patient = treatment.patient
    _check_date(errors, "day0", treatment.day0, today=today, patient=patient, label=_("day 0"))
    if treatment.day0 and patient.diagnosis_date and treatment.day0 < patient.diagnosis_date:
        errors["day0"].append(
            _("Day 0 cannot be before the date of diagnosis (%(diagnosis)s).")
            % {"diagnosis": patient.diagnosis_date.isoformat()}
        )
    if treatment.pk and treatment.day0:
        first = earliest_treatment_child_date(treatment)
        if first is not None and first < treatment.day0:
            errors["day0"].append(
                _("Day 0 cannot be after a record already dated %(first)s for this treatment.")
                % {"first": first.isoformat()}
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
    if treatment.pk:
        for status_field, model, label in (
            ("crs_status", CrsEpisode, _("CRS")),
            ("icans_status", IcansEpisode, _("ICANS")),
        ):
            if (
                getattr(treatment, status_field) != YesNoUnknown.YES
                and model.objects.filter(treatment=treatment).exists()
            ):
                errors[status_field].append(
                    _(
                        "%(label)s episodes are recorded for this treatment, so %(label)s occurred: "
                        "choose 'yes' or remove the episodes."
                    )
                    % {"label": label}
                )


def _episode_rules(episode: CrsEpisode | IcansEpisode, errors: Errors, today: date) -> None:
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
        errors["__all__"].append(
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


def _crs_rules(episode: CrsEpisode, errors: Errors, today: date) -> None:
    _episode_rules(episode, errors, today)
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


def _response_rules(response: ResponseAssessment, errors: Errors, today: date) -> None:
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


def _death_rules(death: Death, errors: Errors, today: date) -> None:
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


def record_errors(record, *, today: date) -> Errors:
    """The DOMAIN.md rules that this one record breaks, as {field: [messages]}."""
    errors: Errors = defaultdict(list)
    match record:
        case Patient():
            _patient_rules(record, errors, today)
        case Treatment():
            _treatment_rules(record, errors, today)
        case CrsEpisode():
            _crs_rules(record, errors, today)
        case IcansEpisode():
            _episode_rules(record, errors, today)
        case ResponseAssessment():
            _response_rules(record, errors, today)
        case Relapse():
            _relapse_rules(record, errors, today)
        case Transplant():
            _dated_child_rules(record, "date", _("transplant date"), errors, today)
        case FollowUpContact():
            _dated_child_rules(record, "date", _("contact date"), errors, today)
        case Death():
            _death_rules(record, errors, today)
    return {field: messages for field, messages in errors.items() if messages}


def patient_errors(patient: Patient) -> Errors:
    """Rules across a patient's records: grade 5 CRS/ICANS if and only if death from it."""
    errors: Errors = defaultdict(list)
    death = _death_of(patient)
    fatal_causes = _fatal_episode_causes(patient)
    for cause, label in ((DeathCause.CRS, _("CRS")), (DeathCause.ICANS, _("ICANS"))):
        fatal = cause in fatal_causes
        died_of_it = death is not None and death.cause == cause
        if fatal and not died_of_it:
            errors["grade"].append(
                _(
                    "A grade 5 %(label)s episode means death from %(label)s: record the death with "
                    "cause %(label)s, or correct the grade."
                )
                % {"label": label}
            )
        if died_of_it and not fatal:
            errors["cause"].append(
                _(
                    "Death from %(label)s requires a grade 5 %(label)s episode: mark the fatal "
                    "episode, or choose another cause."
                )
                % {"label": label}
            )
    return {field: messages for field, messages in errors.items() if messages}


def _fatal_episode_causes(patient: Patient) -> set[str]:
    """The causes of death (CRS, ICANS) of which the patient has a grade 5 episode."""
    treatment_ids = [pk for pk, _day0 in _treatments_of(patient)]
    if not treatment_ids:
        return set()
    rows = _rows(_fatal_causes_sql(len(treatment_ids)), treatment_ids * 2)  # CRS, ICANS
    return {cause for (cause,) in rows}


def earliest_treatment_child_date(treatment: Treatment) -> date | None:
    """The earliest date of the treatment's dated records."""
    return min(_child_dates([treatment.pk], TREATMENT_CHILDREN), default=None)


def _patient_child_dates(patient: Patient) -> list[date]:
    """Day 0 of every treatment of the patient and every date of their records."""
    treatments = _treatments_of(patient)
    day0s = [day0 for _pk, day0 in treatments]
    ids = [pk for pk, _day0 in treatments]
    return day0s + _child_dates(ids, TREATMENT_CHILDREN + RESOLUTIONS) if ids else day0s


# These checks run on every write (the cohort import runs them for every row), so their SQL is
# built once from the models' tables: the patient's treatments first, then one UNION ALL of a
# SELECT per kind of record by treatment ID. Each part is an index look-up whatever the
# planner knows of the tables (a join let it scan whole tables during a large import), and
# the ORM's compilation of the same query cost more than running it.


def _treatments_of(patient: Patient) -> list[tuple[int, date]]:
    if patient.pk is None:
        return []
    return [(pk, _as_date(day0)) for pk, day0 in _rows(_treatments_sql(), [patient.pk])]


def _child_dates(treatment_ids: list[int], kinds: list[tuple[type, str]]) -> list[date]:
    sql = _child_dates_sql(len(treatment_ids), tuple(kinds))
    return [_as_date(d) for (d,) in _rows(sql, treatment_ids * len(kinds)) if d is not None]


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
    """Another patient with the site and study ID (an index look-up)."""
    return (
        f"SELECT {_column(Patient, 'id')} FROM {_table(Patient)} "
        f"WHERE {_column(Patient, 'site')} = %s AND {_column(Patient, 'study_id')} = %s "
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
def _treatments_sql() -> str:
    return (
        f"SELECT {_column(Treatment, 'id')}, {_column(Treatment, 'day0')} FROM {_table(Treatment)} "
        f"WHERE {_column(Treatment, 'patient')} = %s"
    )


@cache
def _child_dates_sql(count: int, kinds: tuple[tuple[type, str], ...]) -> str:
    return " UNION ALL ".join(
        _of_treatments(model, _column(model, field), count) for model, field in kinds
    )


@cache
def _fatal_causes_sql(count: int) -> str:
    """The CRS and ICANS episodes of grade 5 (derived, or recorded when none is derived)."""
    branches = []
    for model, cause in ((CrsEpisode, DeathCause.CRS), (IcansEpisode, DeathCause.ICANS)):
        derived, recorded = _column(model, "derived_grade"), _column(model, "recorded_grade")
        branches.append(
            _of_treatments(model, f"'{cause}'", count)
            + f" AND ({derived} = 5 OR ({derived} IS NULL AND {recorded} = 5))"
        )
    return " UNION ALL ".join(branches)


def earliest_clinical_date(patient: Patient) -> date | None:
    dates = _patient_child_dates(patient)
    dates += [d for d in (patient.diagnosis_date, patient.consent_date) if d]
    return min(dates, default=None)


def latest_clinical_date(patient: Patient) -> date | None:
    return max(_patient_child_dates(patient), default=None)
