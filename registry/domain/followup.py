"""Follow-up schedule, visit states and loss to follow-up (DOMAIN.md "Follow-up schedule").

Visits count from day 0 (first day of blinatumomab cycle 1, or the CAR-T infusion): day 28
(21-35), day 100 (80-120), month 6 (150-210), month 12 (330-400), then every year k >= 2 at
365*k +- 45 days. Windows are inclusive at both ends and do not overlap.

`follow_up` is the one definition of due, overdue and lost that the worklist, the data-quality
queries, the analytics and the monthly report read (docs/DOMAIN_DECISIONS.md).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from functools import cache
from itertools import count

DAYS_PER_MONTH = 30.4375  # DOMAIN.md: times shown in months use 365.25 / 12 days
DAYS_PER_YEAR = 365
YEARLY_WINDOW_HALF_WIDTH_DAYS = 45
FIRST_YEARLY_VISIT = 2

# DOMAIN.md: a patient alive and not seen (no contact, no day 0) for more than 180 days is lost
# to follow-up.
LOST_TO_FOLLOW_UP_DAYS = 180


@dataclass(frozen=True)
class Visit:
    name: str  # "day28", "day100", "month6", "month12", "year2", "year3", ...
    target_day: int
    opens_day: int
    closes_day: int


# DOMAIN.md: the fixed visits of the first year.
FIRST_YEAR_VISITS: tuple[Visit, ...] = (
    Visit("day28", 28, 21, 35),
    Visit("day100", 100, 80, 120),
    Visit("month6", 182, 150, 210),
    Visit("month12", 365, 330, 400),
)


class VisitState(StrEnum):
    DONE = "done"  # a contact fell inside the window
    DUE = "due"  # the window is open today, with no contact yet
    # The window closed with no contact, and the patient has not been seen since it opened:
    # follow-up is overdue (a nurse has someone to call).
    OVERDUE = "overdue"
    # The window closed with no contact, but the patient was seen after it: a gap in the
    # schedule that no call can fill, so neither a worklist line nor a query.
    MISSED = "missed"
    UPCOMING = "upcoming"
    # The patient died, or began the next index treatment, before the window closed.
    NOT_APPLICABLE = "not_applicable"


@dataclass(frozen=True)
class VisitStatus:
    visit: Visit
    opens: date
    closes: date
    state: VisitState
    contact: date | None  # the contact that fulfilled the visit


@cache
def yearly_visit(year: int) -> Visit:
    target = DAYS_PER_YEAR * year
    return Visit(
        name=f"year{year}",
        target_day=target,
        opens_day=target - YEARLY_WINDOW_HALF_WIDTH_DAYS,
        closes_day=target + YEARLY_WINDOW_HALF_WIDTH_DAYS,
    )


def all_visits() -> Iterator[Visit]:
    """The endless schedule, in order."""
    yield from FIRST_YEAR_VISITS
    for year in count(FIRST_YEARLY_VISIT):
        yield yearly_visit(year)


# The schedule as far as it has been needed, and the day each of its windows opens: the visits
# are computed once per process, and a visit is found by bisection (the windows are in order).
_KNOWN_VISITS: list[Visit] = []
_KNOWN_OPENS: list[int] = []
_KNOWN_CLOSES: list[int] = []
_MORE_VISITS = all_visits()


def _known_up_to(until_day: int) -> int:
    """How many visits open on or before `until_day`, with at least one more known after them."""
    while not _KNOWN_OPENS or _KNOWN_OPENS[-1] <= until_day:
        visit = next(_MORE_VISITS)
        _KNOWN_VISITS.append(visit)
        _KNOWN_OPENS.append(visit.opens_day)
        _KNOWN_CLOSES.append(visit.closes_day)
    return bisect_right(_KNOWN_OPENS, until_day)


def schedule(until_day: int) -> list[Visit]:
    """All visits whose window opens on or before `until_day` (days after day 0)."""
    return _KNOWN_VISITS[: _known_up_to(until_day)]


def next_visit_after(until_day: int) -> Visit:
    """The first visit whose window opens after `until_day`."""
    return _KNOWN_VISITS[_known_up_to(until_day)]


def visit_state(
    *,
    opens: date,
    closes: date,
    contact: date | None,
    today: date,
    death: date | None,
    last_seen: date | None = None,
    ends: date | None = None,
) -> VisitState:
    """The state of one visit. `last_seen` is the patient's last contact or day 0 (None: only
    `contact` is known); `ends` the day 0 of the patient's next index treatment, if any."""
    if contact is not None:
        return VisitState.DONE
    # A visit whose window had not closed by the patient's death was never missed; nor was one
    # whose window had not closed when the next index treatment began (its schedule then runs).
    if death is not None and death <= closes:
        return VisitState.NOT_APPLICABLE
    if ends is not None and ends <= closes:
        return VisitState.NOT_APPLICABLE
    if today < opens:
        return VisitState.UPCOMING
    if today <= closes:
        return VisitState.DUE
    if last_seen is not None and last_seen >= opens:
        return VisitState.MISSED
    return VisitState.OVERDUE


def visit_statuses(
    *,
    day0: date,
    contacts: Iterable[date],
    today: date,
    death: date | None = None,
    ends: date | None = None,
    last_seen: date | None = None,
) -> list[VisitStatus]:
    """Every visit whose window has opened by `today`, and the next one, with its state.

    A visit is done when any contact falls inside its window (the earliest such contact is
    reported); otherwise it is not applicable when the patient died or began the next index
    treatment (`ends`) before the window closed, else upcoming before it opens, due while it is
    open, and once it has closed overdue, or missed when the patient has been seen since it
    opened. `last_seen` defaults to the latest of day 0 and the contacts. The full listing:
    `follow_up` reads the same states without listing every visit.
    """
    contact_dates = sorted(set(contacts))
    if last_seen is None:
        last_seen = max([day0, *contact_dates])
    days_so_far = (today - day0).days
    listed = _known_up_to(days_so_far) + 1  # the visits opened so far, and the next one
    statuses = []
    for visit in _KNOWN_VISITS[:listed]:
        statuses.append(
            _visit_status(
                visit,
                day0=day0,
                contact_dates=contact_dates,
                today=today,
                death=death,
                last_seen=last_seen,
                ends=ends,
            )
        )
    return statuses


def _visit_status(
    visit: Visit,
    *,
    day0: date,
    contact_dates: list[date],
    today: date,
    death: date | None,
    last_seen: date,
    ends: date | None,
) -> VisitStatus:
    """One visit of a treatment, its window in dates, the contact that fulfilled it, its state."""
    opens = day0 + timedelta(days=visit.opens_day)
    closes = day0 + timedelta(days=visit.closes_day)
    contact = _contact_in(contact_dates, opens, closes)
    state = visit_state(
        opens=opens,
        closes=closes,
        contact=contact,
        today=today,
        death=death,
        last_seen=last_seen,
        ends=ends,
    )
    return VisitStatus(visit, opens, closes, state, contact)


def _contact_in(contact_dates: list[date], opens: date, closes: date) -> date | None:
    """The earliest of these sorted contacts inside [opens, closes], if any."""
    first = bisect_left(contact_dates, opens)
    if first < len(contact_dates) and contact_dates[first] <= closes:
        return contact_dates[first]
    return None


def lost_to_follow_up(*, last_seen: date | None, today: date, alive: bool = True) -> bool:
    """Alive, and last seen more than 180 days before today (DOMAIN.md).

    `last_seen` is the latest of the patient's contacts and day 0s (a day 0 is a day the
    patient was seen: one never seen since their treatment is lost 180 days after it); None,
    for a patient without any treatment, leaves nothing to measure from.
    """
    if not alive or last_seen is None:
        return False
    return (today - last_seen).days > LOST_TO_FOLLOW_UP_DAYS


def last_seen_of(*, day0s: Iterable[date], contacts: Iterable[date]) -> date | None:
    """The last day a patient was seen: their latest contact or day 0 (None without either)."""
    return max([*day0s, *contacts], default=None)


@dataclass(frozen=True)
class TreatmentVisit:
    """A visit of one of the patient's treatments (`treatment`: the caller's key, its pk)."""

    treatment: int
    status: VisitStatus


@dataclass(frozen=True)
class FollowUp:
    """One patient's follow-up today: THE definition of due, overdue and lost (DOMAIN.md).

    The worklist, the data-quality queries, the analytics and the monthly report all read it
    (docs/DOMAIN_DECISIONS.md, "One definition of due, overdue and lost"):
    - `due`: visits whose window is open today with no contact in it, lost or not;
    - `overdue`: visits whose window closed with no contact, the patient not seen since it
      opened, of a patient who is not lost (once lost, the loss is the one thing to chase);
    - `lost`: alive and last seen (contact or day 0) more than 180 days ago, with
      `last_missed`, the last visit missed since (None when none has closed yet).
    """

    last_seen: date | None = None
    lost: bool = False
    due: tuple[TreatmentVisit, ...] = ()
    overdue: tuple[TreatmentVisit, ...] = ()
    last_missed: TreatmentVisit | None = None
    latest_treatment: int | None = None  # the treatment being followed: the latest day 0


def follow_up(
    *,
    treatments: Iterable[tuple[int, date]],
    contacts: Iterable[date],
    today: date,
    alive: bool = True,
) -> FollowUp:
    """A patient's follow-up today, from their treatments (key, day 0) and all their contacts.

    A contact counts for the patient, whichever treatment it was recorded under; each
    treatment's schedule runs until the next one's day 0 (visits whose window had not closed by
    then are not applicable). The same as reading `visit_statuses` of every treatment
    (tests/registry/domain/test_followup_patient.py checks it on generated patients), without
    listing every visit: windows are in order and do not overlap, so the overdue visits of a
    treatment are one run of the closed ones, found by bisection.
    """
    ordered = sorted(treatments, key=lambda t: (t[1], t[0]))
    contact_dates = sorted(set(contacts))
    last_seen = last_seen_of(day0s=[day0 for _, day0 in ordered], contacts=contact_dates)
    if not alive or last_seen is None:
        return FollowUp(last_seen=last_seen)
    lost = lost_to_follow_up(last_seen=last_seen, today=today)
    due: list[TreatmentVisit] = []
    overdue: list[TreatmentVisit] = []
    for position, (key, day0) in enumerate(ordered):
        ends = ordered[position + 1][1] if position + 1 < len(ordered) else None
        days_so_far = (today - day0).days
        ends_day = (ends - day0).days if ends is not None else None
        known = _known_up_to(max(days_so_far, ends_day or 0))
        opened = bisect_right(_KNOWN_OPENS, days_so_far, 0, known)  # [0, opened) have opened
        closed = bisect_left(_KNOWN_CLOSES, days_so_far, 0, opened)  # [0, closed) have closed
        # [0, applicable) closed before the next treatment began
        applicable = known if ends_day is None else bisect_left(_KNOWN_CLOSES, ends_day, 0, known)

        def status(index: int, day0: date = day0, ends: date | None = ends) -> VisitStatus:
            return _visit_status(
                _KNOWN_VISITS[index],
                day0=day0,
                contact_dates=contact_dates,
                today=today,
                death=None,
                last_seen=last_seen,
                ends=ends,
            )

        if closed < opened <= applicable:  # the last opened visit's window is open today
            current = status(opened - 1)
            if current.state == VisitState.DUE:
                due.append(TreatmentVisit(key, current))
        # Every contact is on or before the last seen day: the visits that opened after it
        # and have closed (before the next treatment began) are the overdue ones.
        first_unseen = bisect_right(_KNOWN_OPENS, (last_seen - day0).days, 0, known)
        overdue += [
            TreatmentVisit(key, status(index))
            for index in range(first_unseen, min(closed, applicable))
        ]
    overdue.sort(key=lambda v: (v.status.closes, v.treatment))
    return FollowUp(
        last_seen=last_seen,
        lost=lost,
        due=tuple(due),
        overdue=() if lost else tuple(overdue),
        last_missed=overdue[-1] if lost and overdue else None,
        latest_treatment=ordered[-1][0] if ordered else None,
    )
