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
from datetime import date

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from simple_history.utils import bulk_update_with_history

from registry import audit
from registry.domain.followup import LOST_TO_FOLLOW_UP_DAYS, VisitState, visit_statuses
from registry.domain.vocabulary import GradingSystem, YesNoUnknown
from registry.models import (
    CrsEpisode,
    DataQualityQuery,
    Death,
    FollowUpContact,
    IcansEpisode,
    Patient,
    QueryKind,
    Relapse,
    ResponseAssessment,
    Transplant,
    Treatment,
)
from registry.permissions import Action, can

CRS_STATUS_DUE_DAYS = 30
RESPONSE_DUE_DAYS = 60
CHUNK = 2000


@dataclass(frozen=True)
class Condition:
    kind: QueryKind
    key: str
    message: str


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
    contacts: list[date] = field(default_factory=list)
    responses: int = 0
    events: list[date] = field(default_factory=list)  # responses, transplants, relapses, onsets
    mismatches: list[tuple[str, int, int, int, date]] = field(default_factory=list)


def _facts(patient_ids: list[int]) -> tuple[dict[int, list[TreatmentFacts]], dict[int, date]]:
    """Every treatment of these patients with the facts the conditions use: eight queries."""
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
        )
    ):
        treatments[row["pk"]] = TreatmentFacts(**row)
    ids = list(treatments)
    for treatment_id, on in FollowUpContact.objects.filter(treatment_id__in=ids).values_list(
        "treatment_id", "date"
    ):
        treatments[treatment_id].contacts.append(on)
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
    deaths = dict(
        Death.objects.filter(patient_id__in=patient_ids).values_list("patient_id", "date")
    )
    return by_patient, deaths


def _treatment_conditions(
    treatment: TreatmentFacts, *, today: date, death: date | None
) -> list[Condition]:
    found: list[Condition] = []
    key = f"t{treatment.pk}"
    missing = [
        label
        for label, value in (
            (_("disease burden"), treatment.disease_burden),
            (_("relapse status"), treatment.relapse_status),
            (_("marrow blasts"), treatment.bm_blast_pct),
        )
        if value in (None, "")
    ]
    if missing:
        found.append(
            Condition(
                QueryKind.BASELINE_INCOMPLETE,
                key,
                _("Baseline incomplete: %(fields)s missing.")
                % {"fields": ", ".join(str(m) for m in missing)},
            )
        )
    alive_on = death or today
    if (
        treatment.crs_status == YesNoUnknown.UNKNOWN
        and (alive_on - treatment.day0).days > CRS_STATUS_DUE_DAYS
    ):
        found.append(
            Condition(
                QueryKind.CRS_STATUS_UNKNOWN,
                key,
                _("CRS status still unknown more than 30 days after day 0."),
            )
        )
    if not treatment.responses and (alive_on - treatment.day0).days > RESPONSE_DUE_DAYS:
        found.append(
            Condition(QueryKind.RESPONSE_NOT_ASSESSED, key, _("Response not assessed by day 60."))
        )
    if death is None:
        for status in visit_statuses(day0=treatment.day0, contacts=treatment.contacts, today=today):
            if status.state == VisitState.OVERDUE:
                found.append(
                    Condition(
                        QueryKind.FOLLOW_UP_OVERDUE,
                        f"{key}:{status.visit.name}",
                        _("Follow-up visit %(visit)s overdue: its window closed on %(closes)s.")
                        % {"visit": status.visit.name, "closes": status.closes.isoformat()},
                    )
                )
    for name, pk, recorded, derived, onset in treatment.mismatches:
        found.append(
            Condition(
                QueryKind.GRADE_MISMATCH,
                f"{name}{pk}",
                _(
                    "Recorded ASTCT grade %(recorded)s differs from the grade %(derived)s derived "
                    "from the findings (episode of %(onset)s)."
                )
                % {"recorded": recorded, "derived": derived, "onset": onset.isoformat()},
            )
        )
    return found


def conditions_of(
    treatments: list[TreatmentFacts], *, today: date, death: date | None
) -> list[Condition]:
    """Every data-quality condition one patient's records show today."""
    found: list[Condition] = []
    for treatment in treatments:
        found += _treatment_conditions(treatment, today=today, death=death)
    if death is None:
        last_contact = max((d for t in treatments for d in t.contacts), default=None)
        latest_event = max((d for t in treatments for d in t.events), default=None)
        if last_contact and (today - last_contact).days > LOST_TO_FOLLOW_UP_DAYS:
            found.append(
                Condition(
                    QueryKind.LOST_TO_FOLLOW_UP,
                    "",
                    _("Lost to follow-up: last contact %(last)s, more than 180 days ago.")
                    % {"last": last_contact.isoformat()},
                )
            )
        if last_contact and latest_event and last_contact < latest_event:
            found.append(
                Condition(
                    QueryKind.CONTACT_BEFORE_EVENT,
                    "",
                    _(
                        "Last contact (%(last)s) is earlier than the latest recorded "
                        "event (%(event)s)."
                    )
                    % {"last": last_contact.isoformat(), "event": latest_event.isoformat()},
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
    now = timezone.now()
    treatments, deaths = _facts(ids)
    existing = {
        (q.patient_id, q.kind, q.key): q
        for q in DataQualityQuery.objects.filter(patient_id__in=ids)
    }
    wanted: dict[tuple[int, str, str], Condition] = {}
    # Stored messages are in one language (English); pages show the translated kind beside.
    with translation.override("en"):
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
                    opened_at=now,
                )
            )
        elif not query.is_open and query.closed_by_id is None:
            query.is_open, query.closed_at, query.message = True, None, condition.message
            query._change_reason = _("condition found again")
            changed.append(query)
        elif query.is_open and query.message != condition.message:
            query.message = condition.message
            query._change_reason = _("condition changed")
            changed.append(query)
    for identity, query in existing.items():
        if query.is_open and identity not in wanted:
            query.is_open, query.closed_at = False, now
            query._change_reason = _("closed automatically: the data no longer shows the problem")
            changed.append(query)
    if new:
        DataQualityQuery.objects.bulk_create(new, batch_size=500)
        audit.created_rows(
            DataQualityQuery,
            [query.pk for query in new],
            user_id=None,
            reason=_("opened automatically"),
            when=now,
        )
    if changed:
        bulk_update_with_history(
            changed, DataQualityQuery, ["is_open", "closed_at", "message"], batch_size=500
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
    query.is_open, query.closed_at, query.closed_by = False, timezone.now(), user
    query.close_reason = reason.strip()
    query._change_reason = reason.strip()
    query._history_user = user
    query.save()
    return query
