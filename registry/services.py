"""Writes: the one path by which every form, admin page, API call, import and task changes data.

Each write checks the permission matrix, applies every DOMAIN.md rule (registry.validation),
derives what is derived (grades, MRD status), saves atomically with its audit row (who, when,
why; the history keeps from what to what), and refreshes the patient's data-quality queries.
A broken rule raises ValidationError with messages by field, and nothing is saved.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar

from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.db import IntegrityError, models, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _
from simple_history.utils import bulk_update_with_history

from registry import audit, outbox, quality
from registry.clock import today
from registry.domain import crs, icaht, icans, mrd
from registry.domain.vocabulary import DeathCause, YesNoUnknown
from registry.models import (
    CrsEpisode,
    Death,
    IcansEpisode,
    LabValue,
    Patient,
    Relapse,
    ResponseAssessment,
    Site,
    Transplant,
    Treatment,
)
from registry.models.labs import LAB_FIELDS
from registry.models.people import WorklistChange, new_data_token
from registry.permissions import Action, can
from registry.selectors import site_id_of
from registry.validation import (
    CONSTRAINT_RULES,
    patient_errors,
    record_errors,
    relapses_and_remissions,
)

Record = TypeVar("Record", bound=models.Model)


class StaleVersion(Exception):
    """The record changed since the caller read it (optimistic concurrency)."""

    def __init__(self, *, current: int, given: int) -> None:
        super().__init__(
            _(
                "This record was changed by someone else (version %(current)s, yours was "
                "%(given)s); reload it and apply your change again."
            )
            % {"current": current, "given": given}
        )
        self.current = current


def derive(record: models.Model) -> None:
    """Fill the fields derived by the pure rules (never typed by a person)."""
    if isinstance(record, CrsEpisode):
        record.derived_grade = crs.crs_grade(record.findings())
    elif isinstance(record, IcansEpisode):
        record.derived_grade = icans.icans_grade(record.findings())
    elif isinstance(record, ResponseAssessment):
        record.mrd_status = (
            mrd.mrd_status(
                result_pct=None if record.mrd_result_pct is None else float(record.mrd_result_pct),
                undetectable=record.mrd_undetectable,
                sensitivity_pct=(
                    None
                    if record.mrd_sensitivity_pct is None
                    else float(record.mrd_sensitivity_pct)
                ),
            )
            or record.mrd_reported
            or ""
        )


# --- ICAHT: derived on the treatment from its lab series ------------------------------------
ICAHT_FIELDS = (
    "icaht_early_grade",
    "icaht_early_rule",
    "icaht_early_params",
    "icaht_late_grade",
    "icaht_late_rule",
    "icaht_late_params",
)


def icaht_of(treatment: Treatment) -> tuple[icaht.IcahtResult, icaht.IcahtResult]:
    """Early and late ICAHT of a treatment, from its saved ANC series (days from its day 0 as
    the object holds it). The days are counted to the day before the first relapse, transplant
    or next index treatment of the patient, or to the day of the patient's death
    (docs/DOMAIN_DECISIONS.md "ICAHT")."""
    if treatment.pk is None or treatment.day0 is None:
        return icaht.results_from_dates(None, [], [])
    series = LabValue.objects.filter(treatment=treatment, anc_per_ul__isnull=False)
    # No ORDER BY in the parts (the models' default orderings): SQLite refuses one in a
    # compound statement.
    ends = (
        Relapse.objects.filter(treatment=treatment)
        .order_by()
        .values_list("date")
        .union(
            Transplant.objects.filter(treatment=treatment).order_by().values_list("date"),
            Treatment.objects.filter(patient_id=treatment.patient_id, day0__gt=treatment.day0)
            .exclude(pk=treatment.pk)
            .order_by()
            .values_list("day0"),
            all=True,
        )
    )
    death = Death.objects.filter(patient_id=treatment.patient_id).values_list("date", flat=True)
    return icaht.results_from_dates(
        treatment.day0,
        series.values_list("date", "anc_per_ul"),
        [when for (when,) in ends],
        death.first(),
    )


ICAHT_CHUNK = 2000


def icaht_derive_all(*, user, reason: str, chunk: int = ICAHT_CHUNK) -> tuple[int, int]:
    """Derive every treatment's ICAHT again from its series (after a change of the grading
    rules, or a load that wrote laboratory values in bulk): `chunk` treatments a transaction,
    each locked and read again, the changed ones saved with their audit rows and their sites'
    data versions moved on (the analytics see new data; the worklist does not depend on ICAHT).
    Returns (treatments read, treatments whose ICAHT changed)."""
    ids = list(Treatment.objects.order_by("pk").values_list("pk", flat=True))
    changed_total = 0
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        with transaction.atomic():
            treatments = list(
                Treatment.objects.select_for_update(of=("self",))
                .filter(pk__in=part)
                .select_related("patient")
                .order_by("pk")
            )
            series: dict[int, list[tuple[date, Any]]] = defaultdict(list)
            for treatment_id, when, anc in (
                LabValue.objects.filter(treatment_id__in=part, anc_per_ul__isnull=False)
                .order_by()
                .values_list("treatment_id", "date", "anc_per_ul")
            ):
                series[treatment_id].append((when, anc))
            ends: dict[int, list[date]] = defaultdict(list)
            for model in (Relapse, Transplant):
                for treatment_id, when in (
                    model.objects.filter(treatment_id__in=part)
                    .order_by()
                    .values_list("treatment_id", "date")
                ):
                    ends[treatment_id].append(when)
            patients = {t.patient_id for t in treatments}
            day0s: dict[int, list[tuple[int, date]]] = defaultdict(list)
            for patient_id, pk, day0 in (
                Treatment.objects.filter(patient_id__in=patients)
                .order_by()
                .values_list("patient_id", "pk", "day0")
            ):
                day0s[patient_id].append((pk, day0))
            deaths = dict(
                Death.objects.filter(patient_id__in=patients)
                .order_by()
                .values_list("patient_id", "date")
            )
            changed = []
            for treatment in treatments:
                later = [
                    day0
                    for pk, day0 in day0s[treatment.patient_id]
                    if pk != treatment.pk and day0 > treatment.day0
                ]
                values = icaht.stored_fields(
                    *icaht.results_from_dates(
                        treatment.day0,
                        series[treatment.pk],
                        [*ends[treatment.pk], *later],
                        deaths.get(treatment.patient_id),
                    )
                )
                if any(getattr(treatment, name) != value for name, value in values.items()):
                    for name, value in values.items():
                        setattr(treatment, name, value)
                    changed.append(treatment)
            if changed:
                bulk_update_with_history(
                    changed,
                    Treatment,
                    list(ICAHT_FIELDS),
                    default_user=user,
                    default_change_reason=reason,
                )
                patients_changed((t.patient.site_id, t.patient_id) for t in changed)
            changed_total += len(changed)
    return len(ids), changed_total


def _icaht_derived(treatment: Treatment) -> bool:
    """Set the treatment's ICAHT fields; whether they changed."""
    values = icaht.stored_fields(*icaht_of(treatment))
    changed = any(getattr(treatment, name) != value for name, value in values.items())
    for name, value in values.items():
        setattr(treatment, name, value)
    return changed


def _icaht_refreshed(
    treatments: Iterable[Treatment], *, user, reason: str = "", series_written: bool = False
) -> None:
    """Derive ICAHT again on treatments whose series, day 0 or end of follow-up a write changed:
    a second record of the write, locked and read again (the patient's row is locked already),
    and saved with its audit row only when a grade, rule or number changed. Its version is not
    raised: no one types these fields, and every save of the treatment derives them again, so
    that a nurse's form open meanwhile is not refused as stale. (Inside the cohort import's
    batch only when a series was written, `series_written`: its laboratory file is imported
    after every patient's other records, so its other writes have no series to grade yet.)"""
    if _history_batch.get() is not None and not series_written:
        return
    for treatment in treatments:
        if treatment.pk is None:
            continue
        _read_again(treatment)
        if _icaht_derived(treatment):
            _write(
                treatment,
                user=user,
                reason=reason or _("ICAHT derived again from the laboratory values"),
            )


def _icaht_refresh_after(
    record: models.Model, *, user, reason: str = "", left: models.Model | None = None
) -> None:
    """The treatments whose ICAHT a write of `record` may change; their audit rows carry the
    write's reason when one was given."""
    if _history_batch.get() is not None:
        return  # the cohort import carries no lab values (_icaht_refreshed)
    if isinstance(record, LabValue | Relapse | Transplant):
        treatments = [record.treatment]
        if isinstance(left, Treatment):
            treatments.append(left)
    elif isinstance(record, Treatment):
        # the next index treatment ends the late window of the ones before it
        treatments = list(
            Treatment.objects.filter(patient_id=record.patient_id).exclude(pk=record.pk)
        )
    elif isinstance(record, Death):
        # a death ends the days counted of every treatment of the patient
        treatments = list(Treatment.objects.filter(patient_id=record.patient_id))
    else:
        return
    if isinstance(left, Patient):
        # a treatment or death moved away: the patient it left has one index treatment or its
        # death fewer
        treatments += Treatment.objects.filter(patient_id=left.pk).exclude(pk=record.pk)
    _icaht_refreshed(treatments, user=user, reason=reason)


def _floats_as_typed(record: models.Model) -> None:
    """A float given for a decimal field means the number as typed (0.1, not 0.1000000000000000055)."""
    for field in record._meta.concrete_fields:
        value = getattr(record, field.attname)
        if isinstance(field, models.DecimalField) and isinstance(value, float):
            setattr(record, field.attname, Decimal(repr(value)))


def _attached_parents(record: models.Model) -> list[str]:
    """Foreign keys whose saved parent object is attached: Django would query again that it
    exists (the parent came from a scoped read or was just saved; the database checks too).
    A one-to-one key's uniqueness (one death per patient) is a rule of registry.validation."""
    return [
        field.name
        for field in record._meta.concrete_fields
        if (field.many_to_one or field.one_to_one)
        and field.is_cached(record)
        and getattr(record, field.name) is not None
        and getattr(record, field.name).pk is not None
    ]


def full_validate(record: models.Model, *, together: tuple = ()) -> None:
    """Derive, then apply Django's field checks and every DOMAIN.md rule; raise on any, with
    every broken rule of the record at once.

    `together`: the other records of the same write (registry.validation.record_errors). The
    models' constraints and unique fields are not checked the Django way here: each has its
    rule with a field message (registry.validation.CONSTRAINT_RULES, one death per patient),
    and the database refuses what slips past (`_database_refusals`).
    """
    _floats_as_typed(record)
    derive(record)
    errors: dict[str, list] = {}
    try:
        record.full_clean(
            exclude=_attached_parents(record), validate_unique=False, validate_constraints=False
        )
    except ValidationError as error:
        errors = error.message_dict
    if isinstance(record, Treatment) and "day0" not in errors:
        _icaht_derived(record)  # from day 0 as parsed by its field
    rules = record_errors(
        record, today=today(), together=together, deferred=_deferred.get() is not None
    )
    for field, messages in rules.items():
        errors.setdefault(field, [])
        errors[field] += [m for m in messages if m not in errors[field]]
    if errors:
        raise ValidationError(errors)


def _require(user, action: Action, site_id: int) -> None:
    if not can(user, action, site_id):
        raise PermissionDenied(_("You may not change data at this site."))


def _require_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError(
            {"reason": [_("Give a reason for the change; it goes into the audit trail.")]}
        )
    return reason


def _write(record: Record, *, user, reason: str) -> Record:
    """Save a record already validated, with its audit row (now, or with the batch's)."""
    record._change_reason = reason
    record._history_user = user
    created = record._state.adding
    batch = _history_batch.get()
    if batch is None:
        record.save()
    else:
        record.skip_history_when_saving = True
        try:
            record.save()
        finally:
            del record.skip_history_when_saving
        batch[(type(record), record.pk)] = record
    if created and isinstance(record, Patient):
        record._state.fields_cache.setdefault("death", None)  # a new patient has not died
    return record


# Inside `batched_writes()`: the records written, whose audit rows are created together.
_history_batch: ContextVar[dict[tuple[type, Any], models.Model] | None] = ContextVar(
    "history_batch", default=None
)


@contextmanager
def _write_block() -> Iterator[None]:
    """One write's transaction: a savepoint of its own, or, inside `batched_writes()`, none."""
    if _history_batch.get() is not None:
        yield
        return
    with transaction.atomic():
        yield


@contextmanager
def _database_refusals() -> Iterator[None]:
    """The database's refusal of a write, as a field message: its constraints stand behind the
    rules (registry.validation.CONSTRAINT_RULES), and refuse only what two writes at once let
    past them (the same study ID saved twice in the same instant). Its own English message
    never reaches a user. (The cohort import reports its whole file refused instead.)"""
    try:
        yield
    except IntegrityError as refused:
        if _history_batch.get() is not None:
            raise
        constraint = getattr(getattr(refused.__cause__, "diag", None), "constraint_name", None)
        field = CONSTRAINT_RULES.get(
            constraint or "", UNIQUE_FIELDS.get(constraint or "", NON_FIELD_ERRORS)
        )
        raise ValidationError(
            {
                field: [
                    _(
                        "Someone else saved a record that conflicts with this one meanwhile, "
                        "and nothing of yours was saved: check this value and save again."
                    )
                ]
            }
        ) from refused


# The database's names of the unique fields' constraints (one death per patient).
UNIQUE_FIELDS = {"registry_death_patient_id_key": "patient"}


@contextmanager
def batched_writes() -> Iterator[None]:
    """Writes for the all-or-nothing cohort import, inside its transaction.atomic().

    No savepoint per write: a write that is refused (a broken rule, a permission) raises before
    it writes anything, so the transaction stays usable and the import goes on checking the rest
    of the file; an error of the database itself still rolls the whole import back. The audit
    rows (who, when, why, the record's values) are written together at the end, in batches,
    with the import's user and reason. Use with `patient_checks_deferred()`, whose cross-record
    rules are checked after a row's writes.
    """
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise RuntimeError("batched_writes() needs an enclosing transaction.atomic()")
    batch: dict[tuple[type, Any], models.Model] = {}
    token = _history_batch.set(batch)
    try:
        yield
    finally:
        _history_batch.reset(token)
    if connection.needs_rollback:
        return  # the import is rolled back: no audit rows for it
    written: dict[tuple[type, int | None, str], list[Any]] = defaultdict(list)
    for (model, pk), record in batch.items():
        user = record._history_user
        written[(model, user.pk if user else None, record._change_reason)].append(pk)
    now = timezone.now()
    for (model, user_id, reason), pks in written.items():
        audit.created_rows(model, pks, user_id=user_id, reason=reason, when=now)


# The patients written inside `patient_checks_deferred()`, checked once each at its end.
_deferred: ContextVar[dict[int, Patient] | None] = ContextVar("deferred_checks", default=None)


@contextmanager
def patient_checks_deferred() -> Iterator[None]:
    """Check the rules across a patient's records (grade 5 and the cause of death), and refresh
    the data-quality queries, once per patient when the block ends instead of after each write.

    For the cohort import, which writes each patient's records one after the other. A broken
    rule raises ValidationError when the block ends, as a single write would: use the block
    inside transaction.atomic(), so that nothing of it stays saved.
    """
    pending: dict[int, Patient] = {}
    token = _deferred.set(pending)
    try:
        yield
    finally:
        _deferred.reset(token)
    for patient in pending.values():
        _after_write(patient)


# The patients whose data-quality queries `queries_refreshed_together()` refreshes at its end.
_refresh_later: ContextVar[dict[int, int] | None] = ContextVar("refresh_later", default=None)


@contextmanager
def queries_refreshed_together() -> Iterator[None]:
    """Refresh the data-quality queries of every patient written inside the block at its end,
    in one set-based pass (the cohort import) instead of after each write."""
    pending: dict[int, int] = {}  # patient: site
    token = _refresh_later.set(pending)
    try:
        yield
    finally:
        _refresh_later.reset(token)
    if not transaction.get_connection().needs_rollback:  # nothing to refresh in a failed import
        quality.refresh_patients(sorted(pending), today=today())
        patients_changed((site, patient) for patient, site in pending.items())


def _after_write(patient: Patient, written: models.Model | None = None) -> None:
    pending = _deferred.get()
    if pending is not None:
        pending[patient.pk] = patient
        return
    errors = patient_errors(patient, written=written)
    if errors:
        raise ValidationError(errors)
    later = _refresh_later.get()
    if later is not None:  # a cohort import: refreshed together at its end
        later[patient.pk] = patient.site_id
        return
    quality.refresh_patient(patient, today=today())
    outbox.patient_changed(patient)
    patients_changed([(patient.site_id, patient.pk)])


def patients_changed(changes: Iterable[tuple[int, int]]) -> None:
    """(site, patient) pairs whose data a write changed, recorded in the write's transaction:
    a new data token and the next data version for each site (the pages cached under the old
    token, registry.selectors.worklist_cache_key, are not used again), and that version on each
    patient's WorklistChange row, so that the worklist recomputes only these patients' lines.

    The UPDATE of the site locks its row until the write commits: the writes of one site get
    their versions one after the other, in the order they commit, and a reader who sees a
    version sees every change row up to it (registry.selectors.worklist_for)."""
    patients_of: dict[int, set[int]] = defaultdict(set)
    for site_id, patient_id in changes:
        patients_of[site_id].add(patient_id)
    if not patients_of:
        return
    Site.objects.filter(pk__in=patients_of).update(
        data_token=new_data_token(), data_version=F("data_version") + 1
    )
    version_of = dict(Site.objects.filter(pk__in=patients_of).values_list("pk", "data_version"))
    WorklistChange.objects.bulk_create(
        [
            WorklistChange(site_id=site_id, patient_id=patient_id, version=version_of[site_id])
            for site_id in sorted(patients_of)
            for patient_id in sorted(patients_of[site_id])
        ],
        update_conflicts=True,
        unique_fields=["site", "patient_id"],
        update_fields=["version"],
        batch_size=5000,
    )


def site_data_changed(site_ids: Iterable[int]) -> None:
    """A write of whole sites' data that cannot name the patients it changed (the demo
    seeder's bulk load), in the write's transaction: a new data token and the next data
    version, from which the sites' worklists are computed afresh."""
    Site.objects.filter(pk__in=set(site_ids)).update(
        data_token=new_data_token(),
        data_version=F("data_version") + 1,
        worklist_reset_version=F("data_version") + 1,
    )


def _marked_status_yes(record: models.Model) -> Treatment | None:
    """Recording an episode says the toxicity occurred: an unknown status becomes 'yes'. The
    treatment so changed (not saved yet, its version bumped), or None. The treatment is a second
    record of the write, read again under the patient's lock (`_parents_read_again`), so that a
    change made to it meanwhile is kept, and a status set back to unknown meanwhile is seen."""
    if not isinstance(record, CrsEpisode | IcansEpisode):
        return None
    field = "crs_status" if isinstance(record, CrsEpisode) else "icans_status"
    treatment = record.treatment
    if getattr(treatment, field) != YesNoUnknown.UNKNOWN or treatment.pk is None:
        return None
    setattr(treatment, field, YesNoUnknown.YES)
    treatment.version += 1
    return treatment


def _read_again(record: models.Model) -> None:
    """Lock a record's row and read its values again into the object the caller holds."""
    locked = type(record).objects.select_for_update().get(pk=record.pk)
    for field in record._meta.concrete_fields:
        setattr(record, field.attname, getattr(locked, field.attname))


def _parents_read_again(record: models.Model) -> None:
    """A record's treatment and patient, as the caller holds them, were read before the write
    began: read again (the patient's row is locked already), so that the rules see them as they
    are now, and a second record the write changes (a treatment's status) keeps every change
    made to it meanwhile. The cohort import's parents are its own."""
    if _history_batch.get() is not None:
        return
    treatment = getattr(record, "treatment", None) if hasattr(record, "treatment_id") else None
    if treatment is not None and treatment.pk is not None:
        _read_again(treatment)
    patient = record.patient if not isinstance(record, Patient) else None
    if patient is not None and patient.pk is not None:
        _read_again(patient)


def _lock_patient(record: models.Model) -> None:
    """Every write to a patient's records first locks the patient's row: the rules that relate
    two records read the other one, and two writes at once (a diagnosis date and a day 0) must
    not each pass against the other's old value; a second record the write changes (the
    treatment of a new episode, the fatal episode of a death) is changed by nobody else
    meanwhile. A record moved to another patient locks both, in the order of their keys (as
    quality.refresh_patients does), so that two writes never wait for each other. A new patient,
    or one written by the cohort import's own transaction, has nobody else to wait for."""
    if _history_batch.get() is not None:
        return
    if isinstance(record, Patient):
        ids = set() if record.pk is None else {record.pk}
    elif isinstance(record, Treatment | Death):
        ids = {record.patient_id}
    else:
        ids = {record.treatment.patient_id}
    if record.pk is not None and not isinstance(record, Patient):
        path = "patient_id" if isinstance(record, Treatment | Death) else "treatment__patient_id"
        ids |= set(type(record).objects.filter(pk=record.pk).values_list(path, flat=True))
    ids.discard(None)
    if ids:
        list(Patient.objects.select_for_update().filter(pk__in=ids).order_by("pk").values("pk"))


def record_save(record: Record, *, user, reason: str = "", version: int | None = None) -> Record:
    """Save a new or changed record (patient, treatment, episode, response, ...).

    A change to a saved record needs a reason, which goes into the audit trail; with `version`,
    it applies only if the record is still at that version (optimistic concurrency). Every
    check comes before the first write.
    """
    given_reason = reason
    with _database_refusals(), _write_block():
        marked, marked_reason, moved_from, left = None, reason or _("episode recorded"), None, None
        if record.pk is None:
            _require(user, Action.EDIT, _site_or_invalid(record))
            _lock_patient(record)
            _parents_read_again(record)
            _require(user, Action.EDIT, _site_or_invalid(record))  # where the parent is now
            marked = _marked_status_yes(record)
            reason = reason or _("created")
        else:
            reason = _require_reason(reason)
            _lock_patient(record)
            _parents_read_again(record)
            locked = type(record).objects.select_for_update().get(pk=record.pk)
            moved_from = site_id_of(locked)
            _require(user, Action.EDIT, moved_from)  # where it was
            _require(user, Action.EDIT, _site_or_invalid(record))  # and where it goes
            if version is not None and locked.version != version:
                raise StaleVersion(current=locked.version, given=version)
            record.version = locked.version + 1
            left = _parent_left(locked, record)
        full_validate(record)
        if marked is not None:
            full_validate(marked)
            _write(marked, user=user, reason=marked_reason)
        _write(record, user=user, reason=reason)
        _icaht_refresh_after(record, user=user, reason=given_reason, left=left)
        _after_write(record.patient, record)
        if left is not None:
            _after_moving_away(left, record)
        if moved_from is not None and moved_from != record.patient.site_id:
            # a patient moved to another site: its lines leave the worklist of the one it left
            patients_changed([(moved_from, record.patient.pk)])
    return record


def _parent_left(saved: models.Model, record: models.Model) -> models.Model | None:
    """The treatment or patient a record is moved away from (the admin and the API can change
    a record's parent), locked: its rules are checked again once the record is gone."""
    for model, field in ((Treatment, "patient"), (Death, "patient")):
        if isinstance(record, model) and getattr(saved, f"{field}_id") != getattr(
            record, f"{field}_id"
        ):
            return Patient.objects.select_for_update().get(pk=getattr(saved, f"{field}_id"))
    if hasattr(record, "treatment_id") and saved.treatment_id != record.treatment_id:
        return (
            Treatment.objects.select_for_update()
            .select_related("patient")
            .get(pk=saved.treatment_id)
        )
    return None


def _after_moving_away(left: models.Model, record: models.Model) -> None:
    """The rules of the treatment or patient a record left: a fatal episode leaves the death
    from it alone; a complete remission leaves a relapse before the first one."""
    if isinstance(left, Treatment):
        if isinstance(record, ResponseAssessment):
            _check_relapses(left, field="treatment")
        left = left.patient
    if left.pk != record.patient.pk:
        _after_write(left, record)


def _check_relapses(treatment: Treatment, *, field: str | None = None) -> None:
    """A relapse is not before the first complete remission, once an assessment is gone."""
    relapses, remissions = relapses_and_remissions(treatment.pk, exclude=None)
    first_cr = min(remissions, default=None)
    early = [relapse for relapse in relapses if first_cr is not None and relapse < first_cr]
    if early:
        message = _(
            "A relapse is recorded on %(relapse)s, before the first complete remission that "
            "would be left (%(cr)s): correct the relapse first."
        ) % {"relapse": min(early).isoformat(), "cr": first_cr.isoformat()}
        raise ValidationError({field: [message]} if field else message)


def record_create(model: type[Record], *, user, reason: str = "", **fields: Any) -> Record:
    """Create any clinical record from its fields."""
    return record_save(model(**fields), user=user, reason=reason)


def record_update(
    record: Record, *, user, reason: str, version: int | None = None, **fields: Any
) -> Record:
    """Change fields of a saved record."""
    for name, value in fields.items():
        setattr(record, name, value)
    return record_save(record, user=user, reason=reason, version=version)


def _site_or_invalid(record: models.Model) -> int:
    try:
        return site_id_of(record)
    except models.ObjectDoesNotExist as missing:
        raise ValidationError(_("The record must belong to a patient or a treatment.")) from missing


@transaction.atomic
def record_delete(record: models.Model, *, user, reason: str) -> None:
    """Delete a record: administrators only, always with a reason."""
    reason = _require_reason(reason)
    if not can(user, Action.DELETE, site_id_of(record)):
        raise PermissionDenied(_("Only administrators may delete clinical data."))
    patient = record.patient
    patient_id = patient.pk  # a deleted record's pk is None
    _lock_patient(record)
    # Read again: the history's last row keeps the values deleted, not those read before.
    current = type(record).objects.select_for_update().filter(pk=record.pk).first()
    if current is None:
        return  # deleted meanwhile: nothing left to delete
    for field in record._meta.concrete_fields:
        setattr(record, field.attname, getattr(current, field.attname))
    record._change_reason = reason
    record._history_user = user
    try:
        record.delete()
    except models.ProtectedError as protected:
        raise ValidationError(
            _("Delete the records that depend on this one first (%(count)s of them).")
            % {"count": len(protected.protected_objects)}
        ) from protected
    if isinstance(record, Death):
        patient._state.fields_cache.pop("death", None)  # the patient is alive again
    if isinstance(record, ResponseAssessment):
        _check_relapses(record.treatment)
    _icaht_refresh_after(record, user=user, reason=reason)  # a deleted treatment: the others
    if isinstance(record, Patient):
        patients_changed([(record.site_id, patient_id)])
    else:
        _after_write(patient)


def death_record(
    *,
    patient: Patient,
    user,
    date,
    cause: str,
    reason: str = "",
    fatal_episode: CrsEpisode | IcansEpisode | None = None,
) -> Death:
    """Record a death; with a CRS or ICANS cause, mark the fatal episode (grade 5) with it.
    Every check comes before the first write."""
    with _database_refusals(), _write_block():
        _require(user, Action.EDIT, patient.site_id)
        death = Death(patient=patient, date=date, cause=cause)
        _lock_patient(death)  # the patient's row: no other write to their records meanwhile
        _parents_read_again(death)
        _require(user, Action.EDIT, patient.site_id)  # where the patient is now
        if fatal_episode is not None:
            expected = CrsEpisode if cause == DeathCause.CRS else IcansEpisode
            if isinstance(fatal_episode, expected):
                fatal_episode = _fatal_episode_marked(fatal_episode)  # as it is now
            if not isinstance(fatal_episode, expected) or fatal_episode.patient.pk != patient.pk:
                raise ValidationError(
                    {
                        "cause": [
                            _("The fatal episode must be a %(kind)s episode of this patient.")
                            % {"kind": expected._meta.verbose_name}
                        ]
                    }
                )
            derive(fatal_episode)
        together = () if fatal_episode is None else (fatal_episode,)
        full_validate(death, together=together)
        if fatal_episode is not None:
            full_validate(fatal_episode, together=(death,))
        _write(death, user=user, reason=reason or _("created"))
        if fatal_episode is not None:
            _write(
                fatal_episode, user=user, reason=reason or _("fatal episode of the recorded death")
            )
        _icaht_refresh_after(death, user=user, reason=reason)
        _after_write(patient, death)
    return death


def as_fatal(episode: CrsEpisode | IcansEpisode) -> CrsEpisode | IcansEpisode:
    """A copy of an episode as death_record will save it with a death from it: grade 5. For the
    checks of a death's form before it is saved (registry.validation's `together`)."""
    marked = copy.copy(episode)
    setattr(marked, "died_of_crs" if isinstance(marked, CrsEpisode) else "died_of_icans", True)
    derive(marked)
    return marked


def _fatal_episode_marked(
    episode: CrsEpisode | IcansEpisode,
) -> CrsEpisode | IcansEpisode:
    """The fatal episode of a death, a second record of the write: locked and read again (a
    change made to it meanwhile is kept; the cohort import's new episode is its own), then
    marked as the death from it."""
    if episode.pk is not None:
        _read_again(episode)
    flag = "died_of_crs" if isinstance(episode, CrsEpisode) else "died_of_icans"
    setattr(episode, flag, True)
    episode.version += 1
    return episode


# --- a treatment's lab series, saved as one grid -----------------------------------------------
GRID_COLUMNS = ("id", "version", "delete", "date", *LAB_FIELDS)


class LabSeriesRefused(ValidationError):
    """A grid of laboratory values refused, nothing saved: `rows` is {row index (from 0):
    {column: [messages]}}, every row's every error at once. The messages also come keyed
    "rows.<index>.<column>", as a ValidationError's message_dict."""

    def __init__(self, rows: dict[int, dict[str, list[str]]]) -> None:
        self.rows = rows
        super().__init__(
            {
                f"rows.{index}.{column}": messages
                for index, columns in sorted(rows.items())
                for column, messages in columns.items()
            }
        )


def _deleted_row(
    row: Mapping[str, Any], saved: dict[int, LabValue], user, seen: set[int]
) -> tuple[LabValue | None, dict[str, list[str]]]:
    """A saved row marked "delete": the LabValue to delete, and its errors. Deleting is
    for administrators, with a reason (INTERFACES.md section 5), as every deletion is."""
    try:
        pk = int(row.get("id") or 0)
    except (TypeError, ValueError):
        pk = 0
    if not pk:
        return None, {"delete": [_("Only a saved row can be deleted; leave a new row empty.")]}
    if pk not in saved or pk in seen:
        return None, {
            "id": [
                _(
                    "This row is not a laboratory value of this treatment, or is in the grid "
                    "twice: reload the grid."
                )
            ]
        }
    seen.add(pk)
    lab = saved[pk]
    errors: dict[str, list[str]] = {}
    if not can(user, Action.DELETE, lab.treatment.patient.site_id):
        errors["delete"] = [
            _(
                "Only administrators may delete laboratory values: correct the row's date or "
                "values instead, or ask an administrator to delete it."
            )
        ]
    version = row.get("version")
    if version not in (None, "") and str(version) != str(lab.version):
        errors["version"] = [
            _(
                "This row was changed by someone else (version %(current)s, yours was "
                "%(given)s); reload the grid and apply your change again."
            )
            % {"current": lab.version, "given": version}
        ]
    return lab, errors


def _grid_row(
    row: Mapping[str, Any], saved: dict[int, LabValue], treatment: Treatment, seen: set[int]
) -> tuple[LabValue | None, dict[str, list[str]]]:
    """One row of the grid as the LabValue it writes (None: an unchanged saved row), and its
    errors by column."""
    errors: dict[str, list[str]] = defaultdict(list)
    for column in row:
        if column not in GRID_COLUMNS:
            errors[column].append(_("This is not a column of the laboratory values."))
    lab, before = LabValue(treatment=treatment), None
    if row.get("id") not in (None, ""):
        try:
            pk = int(row["id"])
        except (TypeError, ValueError):
            pk = 0
        if pk not in saved or pk in seen:
            errors["id"].append(
                _(
                    "This row is not a laboratory value of this treatment, or is in the grid "
                    "twice: reload the grid."
                )
            )
            return None, dict(errors)
        seen.add(pk)
        lab = saved[pk]
        before = {name: getattr(lab, name) for name in ("date", *LAB_FIELDS)}
        version = row.get("version")
        if version not in (None, "") and str(version) != str(lab.version):
            errors["version"].append(
                _(
                    "This row was changed by someone else (version %(current)s, yours was "
                    "%(given)s); reload the grid and apply your change again."
                )
                % {"current": lab.version, "given": version}
            )
    for name in ("date", *LAB_FIELDS):
        if name in row:
            setattr(lab, name, None if row[name] == "" else row[name])
    try:
        full_validate(lab)
    except ValidationError as refused:
        for column, messages in refused.message_dict.items():
            errors[column] += [m for m in messages if m not in errors[column]]
    if before is not None and not errors:
        if before == {name: getattr(lab, name) for name in before}:
            return None, {}
        lab.version += 1
    return lab, dict(errors)


def lab_series_save(
    *, treatment: Treatment, rows: Sequence[Mapping[str, Any]], user, reason: str = ""
) -> list[LabValue]:
    """Save a grid of a treatment's laboratory values as one audited write: new rows (no "id"),
    changes to saved ones ("id", and the "version" the grid was read at) and saved rows deleted
    ("id", "version", "delete": true; administrators only). Every row is checked before the
    first is saved, and every error comes back at once by row and column (LabSeriesRefused); a
    change to a saved row or a deletion needs a reason for the audit trail. ICAHT is derived
    again on the treatment in the same transaction. Returns the rows written (an unchanged row
    is not written again; a deleted one is not returned)."""
    given_reason = reason
    with _database_refusals(), _write_block():
        _require(user, Action.EDIT, _site_or_invalid(treatment))
        _lock_patient(treatment)
        _read_again(treatment)  # locked: its series and its ICAHT change with this write
        _read_again(treatment.patient)
        _require(user, Action.EDIT, treatment.patient.site_id)  # where it is now
        ids = []
        for row in rows:
            try:
                ids.append(int(row.get("id") or 0))
            except (TypeError, ValueError):
                continue
        saved = LabValue.objects.select_for_update().filter(treatment=treatment).in_bulk(ids)
        for lab in saved.values():
            lab.treatment = treatment  # the treatment read again, with its patient
        written: list[LabValue] = []
        deleted: list[LabValue] = []
        refused: dict[int, dict[str, list[str]]] = {}
        seen: set[int] = set()
        for index, row in enumerate(rows):
            if row.get("delete") not in (None, "", False, "false", "0"):
                lab, errors = _deleted_row(row, saved, user, seen)
                target = deleted
            else:
                lab, errors = _grid_row(row, saved, treatment, seen)
                target = written
            if errors:
                refused[index] = errors
            elif lab is not None:
                target.append(lab)
        if refused:
            raise LabSeriesRefused(refused)
        if deleted or any(lab.pk is not None for lab in written):
            reason = _require_reason(reason)
        for lab in deleted:
            lab._change_reason = reason
            lab._history_user = user
            lab.delete()
        for lab in written:
            _write(lab, user=user, reason=reason if lab.pk is not None else reason or _("created"))
        if written or deleted:
            _icaht_refreshed([treatment], user=user, reason=given_reason, series_written=True)
            _after_write(treatment.patient, written[-1] if written else None)
    return written
