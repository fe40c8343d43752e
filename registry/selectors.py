"""Reads: every queryset a user sees is filtered to their sites here, not in each view."""

from __future__ import annotations

import hashlib
import itertools
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from operator import itemgetter

from django.core.cache import cache
from django.db import connection
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
    Relapse,
    ResponseAssessment,
    SecondCancer,
    Site,
    Transplant,
    Treatment,
    User,
    WorklistChange,
)
from registry.permissions import remember_sites, sites_to_read, user_site_ids
from registry.rows import each_result, instances, read_cursor, select_sql

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
    LabValue: "treatment__patient__site",
    Infection: "treatment__patient__site",
    IecHsEpisode: "treatment__patient__site",
    IvigCourse: "treatment__patient__site",
    CarPersistence: "treatment__patient__site",
    SecondCancer: "treatment__patient__site",
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


class LazyLines(Sequence):
    """Lines kept as the cache's tuples and made WorklistLines when read: the patients lost to
    follow-up accumulate with the registry (thousands a site) and are shown a page at a time."""

    def __init__(self, fields: list[tuple]) -> None:
        self._fields = fields

    def __len__(self) -> int:
        return len(self._fields)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [_worklist_line(fields) for fields in self._fields[index]]
        return _worklist_line(self._fields[index])


@dataclass
class Worklist:
    """registry.domain.followup.follow_up of every living patient at the user's sites: one line
    per visit due and per visit overdue, and one per patient lost to follow-up."""

    due: list[WorklistLine] = field(default_factory=list)
    overdue: list[WorklistLine] = field(default_factory=list)
    lost: Sequence[WorklistLine] = field(default_factory=list)


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


@dataclass(frozen=True)
class WorklistSite:
    """What a site's worklist is computed from (registry.services.patients_changed)."""

    pk: int
    code: str
    token: str
    version: int
    reset_version: int


def worklist_sites(*, user) -> list[WorklistSite]:
    """The user's sites with their data tokens and versions, in one query."""
    sites = Site.objects.order_by("pk")
    site_ids = user_site_ids(user)
    if site_ids is not None:
        sites = sites.filter(pk__in=site_ids)
    return _sites(sites)


def _sites(sites: QuerySet) -> list[WorklistSite]:
    return [
        WorklistSite(*row)
        for row in sites.values_list(
            "pk", "code", "data_token", "data_version", "worklist_reset_version"
        )
    ]


def worklist_cache_key(
    *, user, today: date, variant: str = "", sites: list[WorklistSite] | None = None
) -> str:
    """What the user's worklist is computed from, in one query: their sites and each site's
    data token (registry.services.patients_changed gives a site a new one with every write of
    its data), and the day. A page cached under this key is current as long as the key is."""
    sites = worklist_sites(user=user) if sites is None else sites
    tokens = ",".join(f"{site.pk}:{site.code}:{site.token}" for site in sites)
    digest = hashlib.sha256(f"{tokens}|{today.isoformat()}|{variant}".encode()).hexdigest()
    return f"worklist:{digest}"


# A patient's part of the worklist: the study ID (their order within the site), the lines of
# the visits due, of the visits overdue, and the line if lost to follow-up (None if not); each
# line the fields of a WorklistLine as a tuple, its dates as ordinals (pickled for the cache
# ten times faster than date objects: tens of thousands of lines at 100,000 patients).
PatientLines = tuple[str, tuple[tuple, ...], tuple[tuple, ...], tuple | None]
# A site's worklist for a day, as cached: its code, data token and version, and the lines of
# each of its patients who have any.
SiteLines = tuple[str, str, int, dict[int, PatientLines]]
WORKLIST_SITE_CACHE_SECONDS = 24 * 60 * 60
# How long a request waits for a site another one is computing afresh, and how often it looks.
WORKLIST_WAIT_SECONDS = 60
WORKLIST_WAIT_STEP_SECONDS = 0.2


def _line_fields(row: dict, status: VisitStatus | None, last_seen: date | None = None) -> tuple:
    return (
        row["patient_id"],
        row["patient__study_id"],
        row["patient__site__code"],
        row["pk"],
        row["arm"],
        row["day0"].toordinal(),
        status.visit.name if status else "",
        status.opens.toordinal() if status else None,
        status.closes.toordinal() if status else None,
        status.state if status else "lost",
        last_seen.toordinal() if last_seen else None,
    )


def _day(ordinal: int | None) -> date | None:
    return None if ordinal is None else date.fromordinal(ordinal)


def _worklist_line(fields: tuple) -> WorklistLine:
    patient, study_id, site, treatment, arm, day0, visit, opens, closes, state, seen = fields
    return WorklistLine(
        patient, study_id, site, treatment, arm, _day(day0), visit, _day(opens), _day(closes),
        state, _day(seen),
    )  # fmt: skip


def _patient_lines(treatments: QuerySet, *, today: date) -> dict[int, tuple[int, PatientLines]]:
    """registry.domain.followup.follow_up of the living patients of these treatments (every
    treatment of each, two queries): each patient's site and lines, for those who have any."""
    rows = list(
        treatments.filter(patient__death__isnull=True)
        .values(
            "pk",
            "arm",
            "day0",
            "patient_id",
            "patient__study_id",
            "patient__site_id",
            "patient__site__code",
        )
        .order_by("patient_id", "day0", "pk")
    )
    patient_of = {row["pk"]: row["patient_id"] for row in rows}
    contacts: dict[int, list[date]] = defaultdict(list)
    for treatment_id, contact_date in FollowUpContact.objects.filter(
        treatment_id__in=list(patient_of)
    ).values_list("treatment_id", "date"):
        contacts[patient_of[treatment_id]].append(contact_date)
    found_lines: dict[int, tuple[int, PatientLines]] = {}
    for patient_id, treatments_of in itertools.groupby(rows, key=lambda row: row["patient_id"]):
        row_of = {row["pk"]: row for row in treatments_of}
        found = follow_up(
            treatments=[(pk, row["day0"]) for pk, row in row_of.items()],
            contacts=contacts[patient_id],
            today=today,
        )
        lost = None
        if found.lost:
            missed = found.last_missed.status if found.last_missed else None
            lost = _line_fields(row_of[found.latest_treatment], missed, found.last_seen)
        if found.due or found.overdue or lost:
            first = next(iter(row_of.values()))
            found_lines[patient_id] = (
                first["patient__site_id"],
                (
                    first["patient__study_id"],
                    tuple(_line_fields(row_of[v.treatment], v.status) for v in found.due),
                    tuple(_line_fields(row_of[v.treatment], v.status) for v in found.overdue),
                    lost,
                ),
            )
    return found_lines


def _site_lines_afresh(site_ids: list[int], *, today: date) -> dict[int, dict[int, PatientLines]]:
    """The lines of every patient of these sites, in four queries whatever the number of
    patients, and Python only for the patients who can have a line (`worklist_candidates`):
    the oldest day 0 and the latest contact (indexed), every treatment of the candidate living
    patients, and their contact dates."""
    lines: dict[int, dict[int, PatientLines]] = {pk: {} for pk in site_ids}
    bounds = Treatment.objects.aggregate(oldest=Min("day0")) | FollowUpContact.objects.aggregate(
        latest=Max("date")
    )
    if bounds["oldest"] is None:
        return lines
    candidates = worklist_candidates(
        today=today,
        oldest_day0=min(bounds["oldest"], today),
        contacts_after_today=bounds["latest"] is not None and bounds["latest"] > today,
    )
    at_sites = Treatment.objects.filter(patient__site_id__in=site_ids, patient__death__isnull=True)
    found = _patient_lines(
        at_sites.filter(patient_id__in=at_sites.filter(candidates).values("patient_id")),
        today=today,
    )
    for patient_id, (site_id, patient_lines) in found.items():
        lines[site_id][patient_id] = patient_lines
    return lines


def _site_lines_since(
    cached: dict[int, SiteLines], *, today: date
) -> dict[int, dict[int, PatientLines]]:
    """Cached sites' lines brought up to date: only the patients written since each site's
    cached version (their WorklistChange rows) are computed again, in three queries; those
    now dead, deleted or moved to another site lose their lines."""
    since = Q()
    for pk, (_code, _token, version, _lines) in cached.items():
        since |= Q(site_id=pk, version__gt=version)
    changed: dict[int, set[int]] = defaultdict(set)
    for site_id, patient_id in WorklistChange.objects.filter(since).values_list(
        "site_id", "patient_id"
    ):
        changed[site_id].add(patient_id)
    written = set().union(*changed.values())
    found = (
        _patient_lines(Treatment.objects.filter(patient_id__in=written), today=today)
        if written
        else {}
    )
    result = {}
    for pk, (_code, _token, _version, lines) in cached.items():
        for patient_id in changed[pk]:
            lines.pop(patient_id, None)
            site_id, patient_lines = found.get(patient_id, (None, None))
            if site_id == pk:
                lines[patient_id] = patient_lines
        result[pk] = lines
    return result


def _still_usable(cached: SiteLines | None, site: WorklistSite) -> bool:
    """A site's cached lines can be brought up to date from its change rows: the same site
    (code, and a version not ahead of the database's: the cache may outlive a database),
    not started afresh since, and, at the same version, the same write (data token)."""
    if cached is None:
        return False
    code, token, version, _lines = cached
    return (
        code == site.code
        and site.reset_version <= version <= site.version
        and (version < site.version or token == site.token)
    )


def _current_site_lines(
    sites: list[WorklistSite], *, today: date
) -> dict[int, dict[int, PatientLines]]:
    """Each site's lines for the day, cached by patient with the site's data version (the cache
    that every process shares in production, CACHES in config/settings/base.py): after a write
    only the patients it changed are computed again (`_site_lines_since`, three queries); a site
    not cached, or whose data were changed as a whole, is computed afresh (`_site_lines_afresh`,
    four queries) and cached.

    A site is computed afresh by one request at a time: the others wait for its lines to be
    cached (seconds at 200,000 patients; a dozen requests computing the same site at once on
    a cold cache would each take as long as all of them), and compute it themselves if it has
    not appeared after WORKLIST_WAIT_SECONDS."""
    key_of = {site.pk: f"worklist-site:{site.pk}:{today.isoformat()}" for site in sites}
    lines: dict[int, dict[int, PatientLines]] = {}
    pending, deadline = list(sites), time.monotonic() + WORKLIST_WAIT_SECONDS
    while pending:
        cached = cache.get_many([key_of[site.pk] for site in pending])
        usable: dict[int, SiteLines] = {}
        missing: list[WorklistSite] = []
        for site in pending:
            entry = cached.get(key_of[site.pk])
            if not _still_usable(entry, site):
                missing.append(site)
            elif entry[2] == site.version:
                lines[site.pk] = entry[3]
            else:
                usable[site.pk] = entry
        mine = [
            site
            for site in missing
            if time.monotonic() > deadline
            or cache.add(f"{key_of[site.pk]}:computing", True, WORKLIST_WAIT_SECONDS)
        ]
        try:
            computed = _site_lines_afresh([site.pk for site in mine], today=today) if mine else {}
            if usable:
                computed |= _site_lines_since(usable, today=today)
            if computed:
                cache.set_many(
                    {
                        key_of[site.pk]: (site.code, site.token, site.version, computed[site.pk])
                        for site in pending
                        if site.pk in computed
                    },
                    WORKLIST_SITE_CACHE_SECONDS,
                )
        finally:
            if mine:
                cache.delete_many([f"{key_of[site.pk]}:computing" for site in mine])
        lines |= computed
        pending = [site for site in missing if site not in mine]
        if pending:  # computed by another request: its lines are cached when it is done
            time.sleep(WORKLIST_WAIT_STEP_SECONDS)
    return lines


def warm_worklists(*, today: date) -> int:
    """Every site's worklist lines for the day computed into the cache, a site at a time (Celery
    beat, after midnight): the first nurse of the day does not wait for her site's computation,
    seconds at 200,000 patients. Sites already current are left as they are. Returns the number
    of sites."""
    sites = _sites(Site.objects.order_by("pk"))
    for site in sites:
        _current_site_lines([site], today=today)
    return len(sites)


def worklist_for(*, user, today: date, sites: list[WorklistSite] | None = None) -> Worklist:
    """Follow-up visits due now and overdue, and patients lost to follow-up, at the user's sites.

    Each site's lines for the day come from the cache (`_current_site_lines`); the sites are
    merged by site code, study ID, and the visits due and overdue by the day their window
    closes.
    """
    sites = worklist_sites(user=user) if sites is None else sites
    lines = _current_site_lines(sites, today=today)
    worklist, lost_lines = Worklist(), []
    for site in sorted(sites, key=lambda site: site.code):
        for _study_id, due, overdue, lost in sorted(lines[site.pk].values(), key=itemgetter(0)):
            worklist.due += [_worklist_line(fields) for fields in due]
            worklist.overdue += [_worklist_line(fields) for fields in overdue]
            if lost is not None:
                lost_lines.append(lost)
    worklist.lost = LazyLines(lost_lines)
    worklist.due.sort(key=lambda w: w.closes)
    worklist.overdue.sort(key=lambda w: w.closes)
    return worklist


# --- Labs due: CAR-T treatments in days 0-30 with a gap in their ANC series -----------------
LABS_DUE_LAST_DAY = 30  # days 0-30, the early ICAHT window (registry.domain.icaht)
LABS_DUE_GAP_DAYS = 3  # labs are due when more days than this passed since the last ANC


@dataclass(frozen=True)
class LabsDueLine:
    patient_pk: int
    study_id: str
    site: str
    treatment_pk: int
    day0: date
    day: int  # today, counted from day 0
    last_anc: date | None  # the latest ANC from day 0 to today; None: none since day 0
    gap: int  # days since that ANC, or since day 0 when there is none


def labs_due_for(
    *, user, today: date, sites: list[WorklistSite] | None = None
) -> list[LabsDueLine]:
    """The living patients' CAR-T treatments in days 0-30 today whose ANC series has a gap of
    more than 3 days (since the latest ANC from day 0 on, or since day 0 when none), at the
    user's sites: one query, by the (arm, day 0) index and the lab values' (treatment, date)
    index. Not kept with the visits' lines: the worklist page that shows them is cached under
    the sites' data tokens and the day (registry.views.worklist), which a lab save changes."""
    site_ids = [site.pk for site in (worklist_sites(user=user) if sites is None else sites)]
    last_anc = (
        LabValue.objects.filter(
            treatment=OuterRef("pk"),
            anc_per_ul__isnull=False,
            date__gte=OuterRef("day0"),
            date__lte=today,
        )
        .order_by("-date")
        .values("date")[:1]
    )
    due_before = today - timedelta(days=LABS_DUE_GAP_DAYS)  # a gap of more than 3 days
    rows = (
        Treatment.objects.filter(
            arm="car_t",
            day0__range=(today - timedelta(days=LABS_DUE_LAST_DAY), today),
            patient__site_id__in=site_ids,
            patient__death__isnull=True,
        )
        .annotate(last_anc=Subquery(last_anc))
        .filter(Q(last_anc__lt=due_before) | Q(last_anc__isnull=True, day0__lt=due_before))
        .order_by("patient__site__code", "patient__study_id", "day0", "pk")
        .values_list(
            "patient_id", "patient__study_id", "patient__site__code", "pk", "day0", "last_anc"
        )
    )
    return [
        LabsDueLine(
            patient_pk=patient_pk,
            study_id=study_id,
            site=site,
            treatment_pk=pk,
            day0=day0,
            day=(today - day0).days,
            last_anc=last,
            gap=(today - (last or day0)).days,
        )
        for patient_pk, study_id, site, pk, day0, last in rows
    ]


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


# The records on a treatment's timeline, in the order they are listed on one day:
# (kind, model, the field that dates it).
TIMELINE_RECORDS: tuple[tuple[str, type[Model], str], ...] = (
    ("crs", CrsEpisode, "onset"),
    ("icans", IcansEpisode, "onset"),
    ("response", ResponseAssessment, "date"),
    ("transplant", Transplant, "date"),
    ("relapse", Relapse, "date"),
    ("contact", FollowUpContact, "date"),
    # The late events; CAR persistence beside the B-cell aplasia of the contacts.
    ("infection", Infection, "onset"),
    ("iec_hs", IecHsEpisode, "onset"),
    ("ivig", IvigCourse, "start"),
    ("persistence", CarPersistence, "date"),
    ("second_cancer", SecondCancer, "date"),
)


@dataclass(frozen=True)
class PatientPage:
    patient: Patient  # its site and death read with it, as select_related would
    death: Death | None
    timeline: list[tuple[Treatment, list[TimelineEntry]]]
    open_queries: list[DataQualityQuery]


def patient_page(patient_id: int, *, user) -> PatientPage | None:
    """What the patient's page shows: the patient, each treatment with its records in date
    order, counted in days from its day 0, and the patient's open data-quality queries, newest
    first. None when there is no such patient at the user's sites. The user's sites are read in
    the same round trip as the patient and remembered for the page header
    (registry.permissions.remember_sites)."""
    reader = sites_to_read(user)
    if reader is None and user_site_ids(user) is not None:  # signed out or deactivated
        return None
    rows = _patient_rows(patient_id, sites_of=reader)
    if reader is not None:
        remember_sites(user, rows.user_sites)
    if rows.patient is None:
        return None
    treatments, death = rows.treatments, rows.death
    timeline = []
    for treatment in treatments:
        entries = [(treatment.day0, "treatment", treatment)]
        for kind, _model, dated_by in TIMELINE_RECORDS:
            entries += [(getattr(r, dated_by), kind, r) for r in rows.records[kind, treatment.pk]]
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
    return PatientPage(rows.patient, death, timeline, rows.open_queries)


@dataclass
class _PatientRows:
    patient: Patient | None = None  # its site and death cached on it, as select_related does
    death: Death | None = None
    treatments: list[Treatment] = field(default_factory=list)
    records: defaultdict[tuple[str, int], list[Model]] = field(
        default_factory=lambda: defaultdict(list)
    )  # by (kind, treatment id)
    open_queries: list[DataQualityQuery] = field(default_factory=list)
    user_sites: list[Site] = field(default_factory=list)  # only those, by code


def _patient_rows(patient_id: int, *, sites_of: int | None) -> _PatientRows:
    """The patient, at any site, or with `sites_of` (a user's id) only at one of that user's
    sites, whose sites are then read too; its site and death, its treatments, their records and
    its open queries. One round trip: a plain SELECT per table, sent together on PostgreSQL,
    each prepared once per connection (registry.rows; one after the other elsewhere). Thirteen
    querysets compiled and sent one by one by the ORM were most of the patient page's time
    (docs/PERFORMANCE.md). What belongs to a patient who is not at the user's sites is read in
    the same round trip and dropped here, never returned. Each row becomes its model instance as
    the ORM builds it, through the fields' database converters."""
    one, patients, treatments = [patient_id], Patient._meta.db_table, Treatment._meta.db_table
    membership = User.sites.through._meta
    of_the_user = (
        f"SELECT {membership.get_field('site').column} FROM {membership.db_table} "
        f"WHERE {membership.get_field('user').column} = %s"
    )
    scope, scope_params = "", []
    if sites_of is not None:
        scope, scope_params = f" AND site_id IN ({of_the_user})", [sites_of]
    of_the_patient = f"treatment_id IN (SELECT id FROM {treatments} WHERE patient_id = %s)"
    statements = [
        (select_sql(Patient, "id = %s" + scope, "id"), one + scope_params),
        (select_sql(Site, f"id = (SELECT site_id FROM {patients} WHERE id = %s)", "id"), one),
        (select_sql(Death, "patient_id = %s", "id"), one),
        (select_sql(Treatment, "patient_id = %s", "day0, id"), one),
        (select_sql(DataQualityQuery, "patient_id = %s AND is_open", "opened_at DESC, id"), one),
        *(
            (
                select_sql(model, of_the_patient, f"{model._meta.get_field(dated_by).column}, id"),
                one,
            )
            for _kind, model, dated_by in TIMELINE_RECORDS
        ),
    ]
    if sites_of is not None:
        site_table = Site._meta.db_table
        statements.append(
            (
                f"SELECT id, code FROM {site_table} WHERE id IN ({of_the_user}) ORDER BY code",
                [sites_of],
            )
        )
    found = _PatientRows()
    with read_cursor() as cursor:
        results = each_result(cursor, statements)
        patient_rows, site_rows, death_rows, treatment_rows, query_rows = (
            next(results) for _ in range(5)
        )
        record_rows = [next(results) for _ in TIMELINE_RECORDS]
        for rows in results:
            found.user_sites = [Site.from_db(connection.alias, ["id", "code"], r) for r in rows]
    if not patient_rows:
        return found
    [found.patient] = instances(Patient, patient_rows)
    [site] = instances(Site, site_rows)
    found.death = next(iter(instances(Death, death_rows)), None)
    Patient._meta.get_field("site").set_cached_value(found.patient, site)
    Patient._meta.get_field("death").set_cached_value(found.patient, found.death)
    if found.death is not None:
        Death._meta.get_field("patient").set_cached_value(found.death, found.patient)
    found.treatments = instances(Treatment, treatment_rows)
    found.open_queries = instances(DataQualityQuery, query_rows)
    for (kind, model, _dated_by), rows in zip(TIMELINE_RECORDS, record_rows, strict=True):
        for record in instances(model, rows):
            found.records[kind, record.treatment_id].append(record)
    return found


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
