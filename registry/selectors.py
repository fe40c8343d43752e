"""Reads: every queryset a user sees is filtered to their sites here, not in each view."""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

from django.db.models import (
    Count,
    DateField,
    Exists,
    ExpressionWrapper,
    F,
    Max,
    Min,
    Model,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
)
from django.db.models.functions import Coalesce

from registry.domain.followup import (
    LOST_TO_FOLLOW_UP_DAYS,
    VisitStatus,
    follow_up,
    next_visit_after,
    schedule,
)
from registry.models import (
    CrsEpisode,
    DataQualityQuery,
    Death,
    FollowUpContact,
    IcansEpisode,
    Patient,
    Relapse,
    ResponseAssessment,
    Site,
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
    visit: str  # "" on a lost patient's line when no visit has been missed since last seen
    opens: date | None
    closes: date | None
    state: str
    last_seen: date | None = None


@dataclass
class Worklist:
    """registry.domain.followup.follow_up of every living patient at the user's sites: one line
    per visit due and per visit overdue, and one per patient lost to follow-up."""

    due: list[WorklistLine] = field(default_factory=list)
    overdue: list[WorklistLine] = field(default_factory=list)
    lost: list[WorklistLine] = field(default_factory=list)


def _line(row: dict, status: VisitStatus | None, last_seen: date | None = None) -> WorklistLine:
    return WorklistLine(
        row["patient_id"],
        row["patient__study_id"],
        row["patient__site__code"],
        row["pk"],
        row["arm"],
        row["day0"],
        status.visit.name if status else "",
        status.opens if status else None,
        status.closes if status else None,
        status.state if status else "lost",
        last_seen,
    )


def worklist_candidates(*, today: date, oldest_day0: date, contacts_after_today: bool) -> Q:
    """The treatments whose patient can have a worklist line today, as a filter: the patients
    of these treatments are a superset, computed in SQL, of those `follow_up` gives a line.

    - Lost to follow-up: no contact and no day 0 of the patient in the last 180 days.
    - Otherwise a visit can only be overdue if it opened after the patient was last seen, at
      most 180 days ago; a visit due now opened at most 91 days ago (the widest window), with
      no contact since, unless one is dated after today. So the latest visit of one of the
      patient's treatments whose window has opened opened within 180 days, and no contact of
      the patient is dated on or after its opening. For each visit the day 0s for which it is
      the latest one opened within 180 days form one range: one range of day 0 and one
      indexed look-up of the contacts per visit.
    - A contact dated after today (only possible when the clock is set back) breaks the
      second rule: with `contacts_after_today`, the patients with one are candidates too.
    """
    horizon = today - timedelta(days=LOST_TO_FOLLOW_UP_DAYS)
    contacts = FollowUpContact.objects.filter(treatment__patient_id=OuterRef("patient_id"))
    treated_since = Treatment.objects.filter(patient_id=OuterRef("patient_id"), day0__gte=horizon)
    candidates = (
        Q(day0__lt=horizon) & ~Exists(treated_since) & ~Exists(contacts.filter(date__gte=horizon))
    )
    if contacts_after_today:
        candidates |= Exists(contacts.filter(date__gt=today))
    visits = schedule((today - oldest_day0).days)
    visits.append(next_visit_after((today - oldest_day0).days))
    for visit, following in itertools.pairwise(visits):
        # `visit` is the latest opened: opens_day <= today - day0 < following.opens_day
        latest = today - timedelta(days=visit.opens_day)
        earliest = max(
            today - timedelta(days=following.opens_day - 1),
            horizon - timedelta(days=visit.opens_day - 1),
        )
        if earliest > latest:
            continue
        opened = ExpressionWrapper(
            OuterRef("day0") + timedelta(days=visit.opens_day), output_field=DateField()
        )
        candidates |= Q(day0__range=(earliest, latest)) & ~Exists(contacts.filter(date__gte=opened))
    return candidates


def worklist_cache_key(*, user, today: date, variant: str = "") -> str:
    """What the user's worklist is computed from, in one query: their sites and each site's
    data token (registry.services.site_data_changed gives a site a new one with every write of
    its data), and the day. A page cached under this key is current as long as the key is."""
    sites = Site.objects.order_by("pk")
    site_ids = user_site_ids(user)
    if site_ids is not None:
        sites = sites.filter(pk__in=site_ids)
    tokens = ",".join(f"{pk}:{token}" for pk, token in sites.values_list("pk", "data_token"))
    digest = hashlib.sha256(f"{tokens}|{today.isoformat()}|{variant}".encode()).hexdigest()
    return f"worklist:{digest}"


def worklist_for(*, user, today: date) -> Worklist:
    """Follow-up visits due now and overdue, and patients lost to follow-up, at the user's sites.

    Four queries whatever the number of patients, and Python only for the patients who can
    have a line (`worklist_candidates`): the oldest day 0 and the latest contact (indexed),
    every treatment of the candidate living patients, and their contact dates.
    """
    worklist = Worklist()
    bounds = Treatment.objects.aggregate(oldest=Min("day0")) | FollowUpContact.objects.aggregate(
        latest=Max("date")
    )
    if bounds["oldest"] is None:
        return worklist
    candidates = worklist_candidates(
        today=today,
        oldest_day0=min(bounds["oldest"], today),
        contacts_after_today=bounds["latest"] is not None and bounds["latest"] > today,
    )
    living = scope_to_user(Treatment.objects.filter(patient__death__isnull=True), user=user)
    rows = list(
        living.filter(patient_id__in=living.filter(candidates).values("patient_id"))
        .values("pk", "arm", "day0", "patient_id", "patient__study_id", "patient__site__code")
        .order_by("patient__site__code", "patient__study_id", "day0", "pk")
    )
    patient_of = {row["pk"]: row["patient_id"] for row in rows}
    contacts: dict[int, list[date]] = defaultdict(list)
    for treatment_id, contact_date in FollowUpContact.objects.filter(
        treatment_id__in=list(patient_of)
    ).values_list("treatment_id", "date"):
        contacts[patient_of[treatment_id]].append(contact_date)
    for patient_id, treatments in itertools.groupby(rows, key=lambda row: row["patient_id"]):
        row_of = {row["pk"]: row for row in treatments}
        found = follow_up(
            treatments=[(pk, row["day0"]) for pk, row in row_of.items()],
            contacts=contacts[patient_id],
            today=today,
        )
        worklist.due += [_line(row_of[v.treatment], v.status) for v in found.due]
        worklist.overdue += [_line(row_of[v.treatment], v.status) for v in found.overdue]
        if found.lost:
            missed = found.last_missed.status if found.last_missed else None
            worklist.lost.append(_line(row_of[found.latest_treatment], missed, found.last_seen))
    worklist.due.sort(key=lambda w: w.closes)
    worklist.overdue.sort(key=lambda w: w.closes)
    return worklist


def patient_list(
    *, user, study_id: str = "", arm: str = "", site: str = "", vital_status: str = ""
) -> QuerySet[Patient]:
    """Patients with their first treatment's arm and day 0, whether they died and their open
    queries: one query for a page, each value a subquery evaluated for that page's rows only
    (no join and GROUP BY over every patient of the sites). The filters use no annotation, so
    that the paginator's count(*) counts the filtered patients without computing them."""
    patients = patients_visible_to(user=user)
    sites = user_site_ids(user)
    # Within one site the order by study ID is that of the (site, study ID) unique index.
    one_site = bool(site) or (sites is not None and len(sites) == 1)
    if study_id:
        patients = patients.filter(study_id__icontains=study_id.strip())
    if arm:
        patients = patients.filter(
            Exists(Treatment.objects.filter(patient=OuterRef("pk"), arm=arm))
        )
    if site:
        patients = patients.filter(site__code=site)
    if vital_status == "alive":
        patients = patients.filter(death__isnull=True)
    elif vital_status == "dead":
        patients = patients.filter(death__isnull=False)
    first = Treatment.objects.filter(patient=OuterRef("pk")).order_by("day0")
    open_count = (
        DataQualityQuery.objects.filter(patient=OuterRef("pk"), is_open=True)
        .order_by()
        .values("patient")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return patients.annotate(
        arm=Subquery(first.values("arm")[:1]),
        day0=Subquery(first.values("day0")[:1]),
        is_dead=Exists(Death.objects.filter(patient=OuterRef("pk"))),
        open_queries=Coalesce(Subquery(open_count), 0),
    ).order_by(*(("site_id", "study_id") if one_site else ("site__code", "study_id")))


@dataclass(frozen=True)
class TimelineEntry:
    date: date
    day: int
    kind: str
    record: Model


def death_of(patient: Patient) -> Death | None:
    """The patient's death, or None: no query when it was loaded with select_related("death")."""
    try:
        return patient.death
    except Death.DoesNotExist:
        return None


def patient_timeline(patient: Patient) -> list[tuple[Treatment, list[TimelineEntry]]]:
    """Each treatment with its records in date order, counted in days from its day 0."""
    treatments = list(
        patient.treatments.prefetch_related(
            "crs_episodes", "icans_episodes", "responses", "transplants", "contacts", "relapses"
        )
    )
    death = death_of(patient)
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
