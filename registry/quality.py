"""DOMAIN.md data-quality queries: found from the data, opened and closed by the registry.

`refresh_patients` runs after every write (inside its transaction, for that patient), after an
import (for every imported patient at once) and nightly for everyone (the conditions that
depend on today's date). It reads each kind of record once per chunk of patients, whatever
their number. A query a person closed stays closed while its condition holds; one the
registry closed reopens if the condition comes back.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F, Value
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop
from simple_history.utils import bulk_update_with_history

from registry import audit
from registry.domain.followup import follow_up
from registry.domain.icaht import IcahtRule
from registry.domain.vocabulary import Arm, DeathCause, GradingSystem, YesNoUnknown
from registry.models import (
    CarPersistence,
    CrsEpisode,
    DataQualityQuery,
    Death,
    FollowUpContact,
    IcansEpisode,
    IecHsEpisode,
    Infection,
    IvigCourse,
    LabValue,
    Patient,
    QueryKind,
    Relapse,
    ResponseAssessment,
    Transplant,
    Treatment,
)
from registry.models.quality import query_text
from registry.permissions import Action, can

# The registry's own reasons in the queries' history: stored in English whatever the language
# of the request that triggered the refresh (marked for translation, so a page can show them
# in its reader's language with gettext).
OPENED = gettext_noop("opened automatically")
REOPENED = gettext_noop("condition found again")
CHANGED = gettext_noop("condition changed")
CLOSED = gettext_noop("closed automatically: the data no longer shows the problem")

CRS_STATUS_DUE_DAYS = 30
RESPONSE_DUE_DAYS = 60
# DOMAIN.md "Hematotoxicity and late effects": early ICAHT (days 0-30) gradable by day 35, and
# CAR persistence or B-cell aplasia assessed by month 6 (day 183, 6 x 30.4375 days).
ICAHT_DUE_DAYS = 35
PERSISTENCE_DUE_DAYS = 183
# A grade 5 late event is a death from it (CTCAE for infections; Hines et al. 2023 for IEC-HS),
# and the cause of death it implies: the death's vocabulary has no IEC-HS of its own.
FATAL_EVENT_CAUSE = {
    "infection": DeathCause.INFECTION.value,
    "iec_hs": DeathCause.OTHER_TREATMENT_RELATED.value,
}
EARLY_NOT_GRADABLE = {IcahtRule.EARLY_NO_VALUES.value, IcahtRule.EARLY_DAYS_MISSING.value}
CHUNK = 2000


@dataclass(frozen=True)
class Condition:
    kind: QueryKind
    key: str
    # What the message is written from (registry.models.quality.query_text), in the reader's
    # language when it is shown; plain JSON values (dates as ISO strings).
    params: dict = field(default_factory=dict)

    @property
    def message(self) -> str:
        """The stored record of the query, in one language (English): pages show its `text`."""
        with translation.override("en"):
            return query_text(self.kind, self.params) or ""


@dataclass
class TreatmentFacts:
    """What the conditions need to know of one treatment."""

    pk: int
    patient_id: int
    day0: date
    disease_burden: str
    relapse_status: str
    bm_blast_pct: object
    crs_status: str
    arm: str = ""
    icaht_early_grade: int | None = None
    icaht_early_rule: str = ""
    icaht_early_params: dict = field(default_factory=dict)
    contacts: list[date] = field(default_factory=list)
    responses: int = 0
    events: list[date] = field(default_factory=list)  # responses, transplants, relapses, onsets
    mismatches: list[tuple[str, int, int, int, date]] = field(default_factory=list)
    # the late effects: B-cell aplasia (yes/no) at a contact or a CAR persistence assessment;
    # the first start of immunoglobulin replacement; an IgG value among the laboratory values
    persistence_assessed: bool = False
    ivig_start: date | None = None
    igg_measured: bool = False
    # the grade 5 late events: (kind, pk, onset), kind a key of FATAL_EVENT_CAUSE
    fatal_events: list[tuple[str, int, date]] = field(default_factory=list)


@dataclass(frozen=True)
class DeathFacts:
    pk: int
    date: date
    cause: str


def _facts(
    patient_ids: list[int],
) -> tuple[dict[int, list[TreatmentFacts]], dict[int, DeathFacts]]:
    """Every treatment of these patients with the facts the conditions use: twelve queries."""
    treatments: dict[int, TreatmentFacts] = {}
    for row in (
        Treatment.objects.filter(patient_id__in=patient_ids)
        .order_by("day0")
        .values(
            "pk",
            "patient_id",
            "day0",
            "disease_burden",
            "relapse_status",
            "bm_blast_pct",
            "crs_status",
            "arm",
            "icaht_early_grade",
            "icaht_early_rule",
            "icaht_early_params",
        )
    ):
        treatments[row["pk"]] = TreatmentFacts(**row)
    ids = list(treatments)
    assessed = (YesNoUnknown.YES, YesNoUnknown.NO)
    for treatment_id, on, aplasia in FollowUpContact.objects.filter(
        treatment_id__in=ids
    ).values_list("treatment_id", "date", "b_cell_aplasia"):
        treatments[treatment_id].contacts.append(on)
        if aplasia in assessed:
            treatments[treatment_id].persistence_assessed = True
    for treatment_id in (
        CarPersistence.objects.filter(treatment_id__in=ids)
        .order_by()
        .values_list("treatment_id", flat=True)
        .distinct()
    ):
        treatments[treatment_id].persistence_assessed = True
    for treatment_id, start in IvigCourse.objects.filter(treatment_id__in=ids).values_list(
        "treatment_id", "start"
    ):
        facts = treatments[treatment_id]
        facts.ivig_start = start if facts.ivig_start is None else min(facts.ivig_start, start)
    for treatment_id in (
        LabValue.objects.filter(treatment_id__in=ids, igg_g_l__isnull=False)
        .order_by()
        .values_list("treatment_id", flat=True)
        .distinct()
    ):
        treatments[treatment_id].igg_measured = True
    for treatment_id, on in ResponseAssessment.objects.filter(treatment_id__in=ids).values_list(
        "treatment_id", "date"
    ):
        treatments[treatment_id].responses += 1
        treatments[treatment_id].events.append(on)
    for model in (Transplant, Relapse):
        for treatment_id, on in model.objects.filter(treatment_id__in=ids).values_list(
            "treatment_id", "date"
        ):
            treatments[treatment_id].events.append(on)
    fatal = (
        Infection.objects.filter(treatment_id__in=ids, ctcae_grade=5)
        .values_list("treatment_id", "pk", F("onset"), Value("infection"))
        .order_by()
        .union(
            IecHsEpisode.objects.filter(treatment_id__in=ids, recorded_grade=5)
            .values_list("treatment_id", "pk", F("onset"), Value("iec_hs"))
            .order_by(),
            all=True,
        )
    )
    for treatment_id, pk, onset, kind in fatal:
        treatments[treatment_id].fatal_events.append((kind, pk, onset))
    for model in (CrsEpisode, IcansEpisode):
        for treatment_id, pk, onset, system, derived, recorded in model.objects.filter(
            treatment_id__in=ids
        ).values_list(
            "treatment_id", "pk", "onset", "grading_system", "derived_grade", "recorded_grade"
        ):
            treatments[treatment_id].events.append(onset)
            if (
                system == GradingSystem.ASTCT2019
                and derived is not None
                and recorded is not None
                and derived != recorded
            ):
                treatments[treatment_id].mismatches.append(
                    (model.__name__.lower(), pk, recorded, derived, onset)
                )
    by_patient: dict[int, list[TreatmentFacts]] = defaultdict(list)
    for treatment in treatments.values():
        by_patient[treatment.patient_id].append(treatment)
    deaths = {
        patient_id: DeathFacts(pk, on, cause)
        for patient_id, pk, on, cause in Death.objects.filter(
            patient_id__in=patient_ids
        ).values_list("patient_id", "pk", "date", "cause")
    }
    return by_patient, deaths


def _treatment_conditions(
    treatment: TreatmentFacts, *, today: date, death: date | None
) -> list[Condition]:
    found: list[Condition] = []
    key = f"t{treatment.pk}"
    missing = [
        name
        for name, value in (
            ("disease_burden", treatment.disease_burden),
            ("relapse_status", treatment.relapse_status),
            ("bm_blast_pct", treatment.bm_blast_pct),
        )
        if value in (None, "")
    ]
    if missing:
        found.append(Condition(QueryKind.BASELINE_INCOMPLETE, key, {"fields": missing}))
    alive_on = death or today
    if (
        treatment.crs_status == YesNoUnknown.UNKNOWN
        and (alive_on - treatment.day0).days > CRS_STATUS_DUE_DAYS
    ):
        found.append(Condition(QueryKind.CRS_STATUS_UNKNOWN, key))
    if not treatment.responses and (alive_on - treatment.day0).days > RESPONSE_DUE_DAYS:
        found.append(Condition(QueryKind.RESPONSE_NOT_ASSESSED, key))
    found += _late_effect_conditions(treatment, today=today, death=death)
    for name, pk, recorded, derived, onset in treatment.mismatches:
        found.append(
            Condition(
                QueryKind.GRADE_MISMATCH,
                f"{name}{pk}",
                {
                    "episode": name.removesuffix("episode"),
                    "pk": pk,
                    "recorded": recorded,
                    "derived": derived,
                    "onset": onset.isoformat(),
                },
            )
        )
    return found


def _late_effect_conditions(
    treatment: TreatmentFacts, *, today: date, death: date | None
) -> list[Condition]:
    """DOMAIN.md "Hematotoxicity and late effects": early ICAHT not gradable by day 35 (both
    arms), immunoglobulin replacement without an IgG value, and a CAR-T patient alive at month 6
    with neither a CAR persistence assessment nor B-cell aplasia (yes or no) recorded.

    Like the CRS status, the days count to today or to the death: nothing is asked of days
    after it (a patient who died before day 35 is not asked for the ANC of day 35)."""
    found: list[Condition] = []
    key = f"t{treatment.pk}"
    alive_days = ((death or today) - treatment.day0).days
    if (
        treatment.icaht_early_grade is None
        and treatment.icaht_early_rule in EARLY_NOT_GRADABLE
        and alive_days >= ICAHT_DUE_DAYS
    ):
        params = {
            "treatment": treatment.pk,
            "rule": treatment.icaht_early_rule,
            "rule_params": dict(treatment.icaht_early_params or {}),
        }
        found.append(Condition(QueryKind.ICAHT_NOT_GRADABLE, key, params))
    if treatment.ivig_start is not None and not treatment.igg_measured:
        params = {"treatment": treatment.pk, "start": treatment.ivig_start.isoformat()}
        found.append(Condition(QueryKind.IVIG_WITHOUT_IGG, key, params))
    if (
        treatment.arm == Arm.CAR_T
        and alive_days > PERSISTENCE_DUE_DAYS
        and not treatment.persistence_assessed
    ):
        due = treatment.day0 + timedelta(days=PERSISTENCE_DUE_DAYS)
        params = {"treatment": treatment.pk, "due": due.isoformat()}
        found.append(Condition(QueryKind.PERSISTENCE_NOT_ASSESSED, key, params))
    return found


def _fatal_event_conditions(treatment: TreatmentFacts, death: DeathFacts | None) -> list[Condition]:
    """A grade 5 infection or IEC-HS episode is a death from it: the patient's death record
    must exist, with the cause the event implies, and not before the event's onset
    (docs/DOMAIN_DECISIONS.md "Fatal late events")."""
    found: list[Condition] = []
    for kind, pk, onset in treatment.fatal_events:
        expected = FATAL_EVENT_CAUSE[kind]
        if death is not None and death.cause == expected and death.date >= onset:
            continue
        params = {
            "event": kind,
            "pk": pk,
            "treatment": treatment.pk,
            "onset": onset.isoformat(),
            "expected": expected,
            "death": None if death is None else death.date.isoformat(),
            "death_id": None if death is None else death.pk,
            "cause": None if death is None else death.cause,
        }
        found.append(Condition(QueryKind.FATAL_EVENT_WITHOUT_DEATH, f"{kind}{pk}", params))
    return found


def conditions_of(
    treatments: list[TreatmentFacts], *, today: date, death: DeathFacts | None
) -> list[Condition]:
    """Every data-quality condition one patient's records show today."""
    found: list[Condition] = []
    death_date = None if death is None else death.date
    for treatment in treatments:
        found += _treatment_conditions(treatment, today=today, death=death_date)
        found += _fatal_event_conditions(treatment, death)
    # Follow-up overdue and lost to follow-up: the one definition the worklist, the analytics
    # and the report read too (registry.domain.followup.follow_up).
    followed = follow_up(
        treatments=[(t.pk, t.day0) for t in treatments],
        contacts=[d for t in treatments for d in t.contacts],
        today=today,
        alive=death_date is None,
    )
    for missed in followed.overdue:
        found.append(
            Condition(
                QueryKind.FOLLOW_UP_OVERDUE,
                f"t{missed.treatment}:{missed.status.visit.name}",
                {
                    "treatment": missed.treatment,
                    "visit": missed.status.visit.name,
                    "closes": missed.status.closes.isoformat(),
                },
            )
        )
    if followed.lost and followed.last_seen is not None:
        found.append(
            Condition(
                QueryKind.LOST_TO_FOLLOW_UP,
                "",
                {
                    "treatment": followed.latest_treatment,
                    "last_seen": followed.last_seen.isoformat(),
                },
            )
        )
    if death_date is None:
        contacts = [(d, t.pk) for t in treatments for d in t.contacts]
        events = [(d, t.pk) for t in treatments for d in t.events]
        if contacts and events and max(contacts)[0] < max(events)[0]:
            last_contact, event = max(contacts), max(events)
            found.append(
                Condition(
                    QueryKind.CONTACT_BEFORE_EVENT,
                    "",
                    {
                        "treatment": event[1],
                        "last_contact": last_contact[0].isoformat(),
                        "event": event[0].isoformat(),
                    },
                )
            )
    return found


@transaction.atomic
def refresh_patients(patient_ids: Iterable[int], *, today: date) -> None:
    """Open, reopen and close the queries of these patients to match their data."""
    ids = list(patient_ids)
    for start in range(0, len(ids), CHUNK):
        _refresh_chunk(ids[start : start + CHUNK], today=today)


def _refresh_chunk(ids: list[int], *, today: date) -> None:
    # The patients' rows locked first, in the order of their keys (as registry.services does):
    # a write to their records meanwhile (which refreshes them too) is not undone by this
    # refresh's older reading of the data, nor a query closed by hand meanwhile reopened.
    list(Patient.objects.select_for_update().filter(pk__in=ids).order_by("pk").values("pk"))
    now = timezone.now()
    treatments, deaths = _facts(ids)
    existing = {
        (q.patient_id, q.kind, q.key): q
        for q in DataQualityQuery.objects.filter(patient_id__in=ids)
    }
    wanted: dict[tuple[int, str, str], Condition] = {}
    for patient_id in ids:
        for condition in conditions_of(
            treatments.get(patient_id, []), today=today, death=deaths.get(patient_id)
        ):
            wanted[(patient_id, condition.kind, condition.key)] = condition
    new, changed = [], []
    for identity, condition in wanted.items():
        query = existing.get(identity)
        if query is None:
            new.append(
                DataQualityQuery(
                    patient_id=identity[0],
                    kind=condition.kind,
                    key=condition.key,
                    message=condition.message,
                    params=condition.params,
                    opened_at=now,
                )
            )
        elif not query.is_open and query.closed_by_id is None:
            query.is_open, query.closed_at = True, None
            query.message, query.params = condition.message, condition.params
            query._change_reason = REOPENED
            changed.append(query)
        elif query.is_open and (query.message, query.params) != (
            condition.message,
            condition.params,
        ):
            query.message, query.params = condition.message, condition.params
            query._change_reason = CHANGED
            changed.append(query)
    for identity, query in existing.items():
        if query.is_open and identity not in wanted:
            query.is_open, query.closed_at = False, now
            query._change_reason = CLOSED
            changed.append(query)
    if new:
        DataQualityQuery.objects.bulk_create(new, batch_size=500)
        audit.created_rows(
            DataQualityQuery,
            [query.pk for query in new],
            user_id=None,
            reason=OPENED,
            when=now,
        )
    if changed:
        bulk_update_with_history(
            changed, DataQualityQuery, ["is_open", "closed_at", "message", "params"], batch_size=500
        )


def refresh_patient(patient: Patient, *, today: date) -> None:
    refresh_patients([patient.pk], today=today)


def refresh_all(*, today: date) -> int:
    """Every patient's queries (nightly, for the conditions that depend on the date)."""
    ids = list(Patient.objects.order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(ids), CHUNK):
        refresh_patients(ids[start : start + CHUNK], today=today)
    return len(ids)


@transaction.atomic
def query_close(query: DataQualityQuery, *, user, reason: str) -> DataQualityQuery:
    """A data manager closes a query that the data cannot fix (e.g. a confirmed unknown)."""
    if not can(user, Action.RESOLVE_QUERIES, query.patient.site_id):
        raise PermissionDenied(_("You may not resolve data-quality queries at this site."))
    if not (reason or "").strip():
        raise ValidationError({"close_reason": [_("Say why the query is closed.")]})
    # Locked and re-read, under the patient's lock first as a refresh takes them in that order:
    # a query closed meanwhile (by another data manager, or the registry) keeps who closed it
    # and why.
    list(Patient.objects.select_for_update().filter(pk=query.patient_id).values("pk"))
    current = DataQualityQuery.objects.select_for_update().get(pk=query.pk)
    if not current.is_open:
        raise ValidationError(_("This query is already closed; who closed it and why stay."))
    current.is_open, current.closed_at, current.closed_by = False, timezone.now(), user
    current.close_reason = reason.strip()
    current._change_reason = reason.strip()
    current._history_user = user
    current.save()
    for name in ("is_open", "closed_at", "closed_by", "close_reason"):
        setattr(query, name, getattr(current, name))
    return query
