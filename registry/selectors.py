"""Reads: every queryset a user sees is filtered to their sites here, not in each view."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date

from django.db.models import Count, Exists, F, Model, OuterRef, Q, QuerySet, Subquery

from registry.domain.followup import VisitState, lost_to_follow_up, visit_statuses
from registry.models import (
    CrsEpisode,
    DataQualityQuery,
    Death,
    FollowUpContact,
    IcansEpisode,
    Patient,
    Relapse,
    ResponseAssessment,
    Transplant,
    Treatment,
)
from registry.permissions import user_site_ids

# How each kind of record reaches the site it belongs to.
SITE_PATH: dict[type[Model], str] = {
    Patient: "site",
    Treatment: "patient__site",
    Death: "patient__site",
    DataQualityQuery: "patient__site",
    CrsEpisode: "treatment__patient__site",
    IcansEpisode: "treatment__patient__site",
    ResponseAssessment: "treatment__patient__site",
    Transplant: "treatment__patient__site",
    FollowUpContact: "treatment__patient__site",
    Relapse: "treatment__patient__site",
}


def scope_to_user(queryset: QuerySet, *, user) -> QuerySet:
    """The rows of this queryset that belong to the user's sites (all of them for admins)."""
    sites = user_site_ids(user)
    if sites is None:
        return queryset
    return queryset.filter(**{f"{SITE_PATH[queryset.model]}__in": sites})


def records_visible_to(model: type[Model], *, user) -> QuerySet:
    return scope_to_user(model.objects.all(), user=user)


def patients_visible_to(*, user) -> QuerySet[Patient]:
    return records_visible_to(Patient, user=user).select_related("site")


def site_id_of(record: Model) -> int:
    """The site a record belongs to, by the same paths the querysets use."""
    if isinstance(record, Patient):
        return record.site_id
    if isinstance(record, Death | DataQualityQuery | Treatment):
        return record.patient.site_id
    return record.treatment.patient.site_id


def open_queries(*, user) -> QuerySet[DataQualityQuery]:
    return (
        records_visible_to(DataQualityQuery, user=user)
        .filter(is_open=True)
        .select_related("patient", "patient__site")
    )


# --- The research nurses' pages ------------------------------------------------------------
@dataclass(frozen=True)
class WorklistLine:
    patient_pk: int
    study_id: str
    site: str
    treatment_pk: int
    arm: str
    day0: date
    visit: str
    opens: date
    closes: date
    state: str


@dataclass
class Worklist:
    due: list[WorklistLine] = field(default_factory=list)
    overdue: list[WorklistLine] = field(default_factory=list)
    lost: list[WorklistLine] = field(default_factory=list)


def worklist_for(*, user, today: date) -> Worklist:
    """Follow-up visits due now and overdue, and patients lost to follow-up, at the user's sites.

    Two queries whatever the number of patients: the treatments of living patients, and their
    contact dates.
    """
    treatments = list(
        scope_to_user(Treatment.objects.filter(patient__death__isnull=True), user=user)
        .values("pk", "arm", "day0", "patient_id", "patient__study_id", "patient__site__code")
        .order_by("patient__site__code", "patient__study_id", "day0")
    )
    contacts: dict[int, list[date]] = defaultdict(list)
    for treatment_id, contact_date in FollowUpContact.objects.filter(
        treatment_id__in=[t["pk"] for t in treatments]
    ).values_list("treatment_id", "date"):
        contacts[treatment_id].append(contact_date)
    worklist = Worklist()
    for row in treatments:
        seen = contacts[row["pk"]]
        statuses = visit_statuses(day0=row["day0"], contacts=seen, today=today)
        last_seen = max(seen, default=row["day0"])

        def line(status, *, row=row) -> WorklistLine:
            return WorklistLine(
                row["patient_id"],
                row["patient__study_id"],
                row["patient__site__code"],
                row["pk"],
                row["arm"],
                row["day0"],
                status.visit.name,
                status.opens,
                status.closes,
                status.state,
            )

        if lost_to_follow_up(last_contact=last_seen, today=today, alive=True):
            missed = [s for s in statuses if s.state == VisitState.OVERDUE]
            if missed:
                worklist.lost.append(line(missed[-1]))
            continue
        for status in statuses:
            if status.state == VisitState.DUE:
                worklist.due.append(line(status))
        missed = [s for s in statuses if s.state == VisitState.OVERDUE and last_seen < s.opens]
        if missed:
            worklist.overdue.append(line(missed[-1]))
    worklist.due.sort(key=lambda w: w.closes)
    worklist.overdue.sort(key=lambda w: w.closes)
    return worklist


def patient_list(
    *, user, study_id: str = "", arm: str = "", site: str = "", vital_status: str = ""
) -> QuerySet[Patient]:
    """Patients with their first treatment's arm and day 0 and whether they died: one query."""
    first = Treatment.objects.filter(patient=OuterRef("pk")).order_by("day0")
    patients = (
        patients_visible_to(user=user)
        .annotate(
            arm=Subquery(first.values("arm")[:1]),
            day0=Subquery(first.values("day0")[:1]),
            is_dead=Exists(Death.objects.filter(patient=OuterRef("pk"))),
            open_queries=Count("queries", filter=Q(queries__is_open=True)),
        )
        .order_by("site__code", "study_id")
    )
    if study_id:
        patients = patients.filter(study_id__icontains=study_id.strip())
    if arm:
        patients = patients.filter(treatments__arm=arm).distinct()
    if site:
        patients = patients.filter(site__code=site)
    if vital_status == "alive":
        patients = patients.filter(is_dead=False)
    elif vital_status == "dead":
        patients = patients.filter(is_dead=True)
    return patients


@dataclass(frozen=True)
class TimelineEntry:
    date: date
    day: int
    kind: str
    record: Model


def patient_timeline(patient: Patient) -> list[tuple[Treatment, list[TimelineEntry]]]:
    """Each treatment with its records in date order, counted in days from its day 0."""
    treatments = list(
        patient.treatments.prefetch_related(
            "crs_episodes", "icans_episodes", "responses", "transplants", "contacts", "relapses"
        )
    )
    death = Death.objects.filter(patient=patient).first()
    timeline = []
    for treatment in treatments:
        entries = [(treatment.day0, "treatment", treatment)]
        entries += [(e.onset, "crs", e) for e in treatment.crs_episodes.all()]
        entries += [(e.onset, "icans", e) for e in treatment.icans_episodes.all()]
        entries += [(r.date, "response", r) for r in treatment.responses.all()]
        entries += [(t.date, "transplant", t) for t in treatment.transplants.all()]
        entries += [(r.date, "relapse", r) for r in treatment.relapses.all()]
        entries += [(c.date, "contact", c) for c in treatment.contacts.all()]
        if death is not None and treatment is treatments[-1]:
            entries.append((death.date, "death", death))
        order = {"treatment": 0, "death": 9}
        entries.sort(key=lambda e: (e[0], order.get(e[1], 5)))
        timeline.append(
            (
                treatment,
                [
                    TimelineEntry(d, (d - treatment.day0).days, kind, record)
                    for d, kind, record in entries
                ],
            )
        )
    return timeline


# --- The monthly report ----------------------------------------------------------------------
def monthly_activity(*, site_ids: set[int] | None, first: date, last: date) -> dict:
    """Enrolment and follow-up of one month at these sites (None: every site)."""

    def scoped(queryset: QuerySet) -> QuerySet:
        if site_ids is None:
            return queryset
        return queryset.filter(**{f"{SITE_PATH[queryset.model]}__in": site_ids})

    first_day0 = Treatment.objects.filter(patient=OuterRef("patient")).order_by("day0")
    index = (
        scoped(Treatment.objects.all())
        .annotate(first_pk=Subquery(first_day0.values("pk")[:1]))
        .filter(pk=F("first_pk"))
    )
    new = Counter(index.filter(day0__range=(first, last)).values_list("arm", flat=True))
    cumulative = Counter(index.filter(day0__lte=last).values_list("arm", flat=True))
    contacts = scoped(FollowUpContact.objects.filter(date__range=(first, last))).count()
    open_queries = (
        scoped(DataQualityQuery.objects.filter(is_open=True))
        .values_list("patient__site__code", "kind")
        .annotate(n=Count("pk"))
    )
    by_site: dict[str, dict[str, int]] = defaultdict(dict)
    for site_code, kind, n in open_queries:
        by_site[site_code][kind] = n
    overdue = sum(kinds.get("follow_up_overdue", 0) for kinds in by_site.values())
    return {
        "new": dict(new),
        "cumulative": dict(cumulative),
        "contacts": contacts,
        "overdue": overdue,
        "open_queries_by_site": dict(sorted(by_site.items())),
    }
