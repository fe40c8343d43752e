"""DOMAIN.md data-quality queries: found from the data, opened and closed by the registry.

`refresh_patient` runs after every write (inside its transaction) and nightly for everyone
(the conditions that depend on today's date). A query a person closed stays closed while its
condition holds; one the registry closed reopens if the condition comes back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone, translation
from django.utils.translation import gettext as _

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


@dataclass(frozen=True)
class Condition:
    kind: QueryKind
    key: str
    message: str


def _treatment_conditions(
    treatment: Treatment, *, today: date, death: Death | None, contacts: list[date]
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
    alive_on = death.date if death else today
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
    if (
        not ResponseAssessment.objects.filter(treatment=treatment).exists()
        and (alive_on - treatment.day0).days > RESPONSE_DUE_DAYS
    ):
        found.append(
            Condition(QueryKind.RESPONSE_NOT_ASSESSED, key, _("Response not assessed by day 60."))
        )
    if death is None:
        for status in visit_statuses(day0=treatment.day0, contacts=contacts, today=today):
            if status.state == VisitState.OVERDUE:
                found.append(
                    Condition(
                        QueryKind.FOLLOW_UP_OVERDUE,
                        f"{key}:{status.visit.name}",
                        _("Follow-up visit %(visit)s overdue: its window closed on %(closes)s.")
                        % {"visit": status.visit.name, "closes": status.closes.isoformat()},
                    )
                )
    for model in (CrsEpisode, IcansEpisode):
        for episode in model.objects.filter(
            treatment=treatment,
            grading_system=GradingSystem.ASTCT2019,
            derived_grade__isnull=False,
            recorded_grade__isnull=False,
        ):
            if episode.derived_grade != episode.recorded_grade:
                found.append(
                    Condition(
                        QueryKind.GRADE_MISMATCH,
                        f"{model.__name__.lower()}{episode.pk}",
                        _(
                            "Recorded ASTCT grade %(recorded)s differs from the grade %(derived)s "
                            "derived from the findings (episode of %(onset)s)."
                        )
                        % {
                            "recorded": episode.recorded_grade,
                            "derived": episode.derived_grade,
                            "onset": episode.onset.isoformat(),
                        },
                    )
                )
    return found


def latest_event_date(patient: Patient) -> date | None:
    """The latest dated clinical event other than a follow-up contact."""
    dates = [
        ResponseAssessment.objects.filter(treatment__patient=patient).aggregate(d=Max("date"))["d"],
        Transplant.objects.filter(treatment__patient=patient).aggregate(d=Max("date"))["d"],
        Relapse.objects.filter(treatment__patient=patient).aggregate(d=Max("date"))["d"],
        CrsEpisode.objects.filter(treatment__patient=patient).aggregate(d=Max("onset"))["d"],
        IcansEpisode.objects.filter(treatment__patient=patient).aggregate(d=Max("onset"))["d"],
    ]
    return max((d for d in dates if d), default=None)


def patient_conditions(patient: Patient, *, today: date) -> list[Condition]:
    death = Death.objects.filter(patient=patient).first()
    found: list[Condition] = []
    all_contacts: list[date] = []
    for treatment in Treatment.objects.filter(patient=patient):
        contacts = list(
            FollowUpContact.objects.filter(treatment=treatment).values_list("date", flat=True)
        )
        all_contacts += contacts
        found += _treatment_conditions(treatment, today=today, death=death, contacts=contacts)
    if death is None:
        last_contact = max(all_contacts, default=None)
        latest_event = latest_event_date(patient)
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
def refresh_patient(patient: Patient, *, today: date) -> None:
    now = timezone.now()
    # Stored messages are in one language (English); pages show the translated kind beside.
    with translation.override("en"):
        wanted = {(c.kind, c.key): c for c in patient_conditions(patient, today=today)}
    existing = {(q.kind, q.key): q for q in DataQualityQuery.objects.filter(patient=patient)}
    for identity, condition in wanted.items():
        query = existing.get(identity)
        if query is None:
            DataQualityQuery.objects.create(
                patient=patient,
                kind=condition.kind,
                key=condition.key,
                message=condition.message,
                opened_at=now,
            )
        elif not query.is_open and query.closed_by_id is None:
            query.is_open, query.closed_at, query.message = True, None, condition.message
            query._change_reason = _("condition found again")
            query.save()
        elif query.is_open and query.message != condition.message:
            query.message = condition.message
            query.save(update_fields=["message"])
    for identity, query in existing.items():
        if query.is_open and identity not in wanted:
            query.is_open, query.closed_at = False, now
            query._change_reason = _("closed automatically: the data no longer shows the problem")
            query.save()


def refresh_all(*, today: date) -> int:
    """Every patient's queries (nightly, for the conditions that depend on the date)."""
    count = 0
    for patient in Patient.objects.iterator(chunk_size=500):
        refresh_patient(patient, today=today)
        count += 1
    return count


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
